import Foundation
import SSDData
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

final class ImageTests: XCTestCase {
    /// Resize to 300×300 + ImageNet normalisation of the two fixture photos equals the
    /// reference's PIL/torchvision tensor (bit-identical expected; at worst 1/255 per pixel).
    func testResizeNormalizeMatchesFixture() throws {
        guard let caseURL = Fixtures.url("ssd300/case.safetensors"),
              let chelsea = Fixtures.url("ssd300/chelsea.png"), let coffee = Fixtures.url("ssd300/coffee.png")
        else { throw XCTSkip("fixtures missing") }
        let expected = try SafetensorsFile(url: caseURL).tensor("images")
        XCTAssertEqual(expected.shape, [2, 3, 300, 300])
        var worstUnits: Float = 0
        for (n, url) in [chelsea, coffee].enumerated() {
            let image = try ImageCodec.load(url)
            let resized = Resampler.resizeBilinear(image, width: 300, height: 300)
            let ours = Normalization.imagenet.tensor(resized)
            var worst: Float = 0
            for c in 0..<3 {
                for i in 0..<(300 * 300) {
                    let d = abs(ours.data[c * 90000 + i] - expected.data[n * 270000 + c * 90000 + i]) * Normalization.imagenet.std[c] * 255
                    worst = max(worst, d)
                }
            }
            report("resize+normalize \(url.lastPathComponent) max difference (units of 1/255)", worst)
            worstUnits = max(worstUnits, worst)
        }
        XCTAssertLessThan(worstUnits, 0.01, "expected bit-identical resize")
    }
}

final class CodecTests: XCTestCase {
    /// Grey, palette (with and without transparency), RGBA, grey+alpha, 1-bit, 16-bit RGB (with
    /// a gAMA chunk PIL ignores), CMYK, grey, baseline and progressive JPEG decode as PIL does.
    func testDecodeMatchesPillow() throws {
        for golden in PillowGoldens.images {
            guard let data = Data(base64Encoded: golden.base64) else { return XCTFail("bad base64 for \(golden.name)") }
            let image = try ImageCodec.decode(data, path: golden.name)
            XCTAssertEqual(image.pixels.count, golden.rgb.count, golden.name)
            guard image.pixels.count == golden.rgb.count else { continue }
            let worst = zip(image.pixels, golden.rgb).map { abs(Int($0) - Int($1)) }.max() ?? 0
            // 16-bit: PIL keeps the high byte, libpng rounds; JPEG: decoder versions may differ by rounding.
            let tolerance = golden.name.hasSuffix("jpeg") ? 2 : (golden.name.hasPrefix("rgb16") ? 1 : 0)
            XCTAssertLessThanOrEqual(worst, tolerance, "\(golden.name): max difference \(worst)")
            report("decode \(golden.name) max difference vs Pillow", worst)
        }
    }

    /// PNG encoding is lossless; JPEG encoding at quality 95 comes back close.
    func testEncodeRoundTrips() throws {
        var image = RGBImage(width: 37, height: 23)
        for i in 0..<image.pixels.count { image.pixels[i] = UInt8((i * 7 + i / 111) % 256) }
        let png = try ImageCodec.decode(try ImageCodec.encodePNG(image))
        XCTAssertEqual(png, image)
        var smooth = RGBImage(width: 64, height: 48)
        for y in 0..<48 { for x in 0..<64 { for c in 0..<3 { smooth.pixels[(y * 64 + x) * 3 + c] = UInt8(x * 2 + y + c * 30) } } }
        let jpeg = try ImageCodec.decode(try ImageCodec.encodeJPEG(smooth, quality: 95))
        XCTAssertEqual(jpeg.width, 64)
        XCTAssertEqual(jpeg.height, 48)
        let meanError = zip(jpeg.pixels, smooth.pixels).map { Double(abs(Int($0) - Int($1))) }.reduce(0, +) / Double(smooth.pixels.count)
        XCTAssertLessThan(meanError, 3)
    }

    /// Truncated, corrupt and empty files and missing paths give typed errors naming the file.
    func testBadImagesThrow() throws {
        let rgb = RGBImage(width: 40, height: 30, fill: (10, 200, 30))
        let jpeg = try ImageCodec.encodeJPEG(rgb), png = try ImageCodec.encodePNG(rgb)
        let cases: [(String, Data)] = [
            ("truncated.jpg", jpeg.prefix(jpeg.count / 2)),
            ("header-only.jpg", jpeg.prefix(20)),
            ("truncated.png", png.prefix(png.count - 20)),
            ("corrupt.png", { var d = png; d[d.count / 2] ^= 0xFF; d[d.count / 2 + 1] ^= 0x55; return d }()),
            ("garbage.jpg", Data([0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3, 4, 5])),
            ("text.png", Data("hello".utf8)),
            ("empty.jpg", Data()),
        ]
        for (name, data) in cases {
            XCTAssertThrowsError(try ImageCodec.decode(data, path: name), name) { error in
                guard case let DataError.badImage(path, _) = error else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(path, name)
            }
        }
        let missing = URL(fileURLWithPath: "/nonexistent/dir/x.jpg")
        XCTAssertThrowsError(try ImageCodec.load(missing)) { error in
            XCTAssertEqual(error as? DataError, .unreadableFile(path: missing.path, reason: "no such file"))
        }
    }
}

final class ResizeTests: XCTestCase {
    static let source: [UInt8] = [80,160,144,242,18,75,183,96,223,141,165,158,48,189,33,52,241,252,242,2,156,36,90,232,172,176,59,202,182,240,228,91,241,21,113,56,104,39,29,160,176,9,33,239,247,188,216,55,11,212,138,112,208,76,68,44,44,251,19,144,120,226,167,178,193,35,173,242,52,1,18,191,2,215,227,148,62,209,22,220,235,135,185,225,171,32,252,92,60,144,27,53,107,8,20,8,152,206,76,19,100,137,26,178,60]

    /// Shrinking (antialiased support) and enlarging a 7×5 image match Pillow's BILINEAR bytes.
    func testSmallResizesMatchPillow() throws {
        let image = try RGBImage(width: 7, height: 5, pixels: Self.source)
        let down: [UInt8] = [161,101,138,138,143,152,116,134,135,115,179,152,133,137,137,131,101,71,120,196,103,65,145,155,121,142,186,114,80,150,51,93,98,60,157,129]
        XCTAssertEqual(Resampler.resizeBilinear(image, width: 3, height: 4).pixels, down)
        let up: [UInt8] = [80,160,144,188,65,98,216,53,141,174,111,209,141,165,158,69,184,61,50,218,155,115,161,220,242,2,156,55,120,194,153,112,109,198,125,140,193,140,227,191,123,205,68,141,82,60,135,90,120,118,107,195,101,72,35,133,236,130,169,118,163,189,126,158,176,207,195,124,194,70,100,84,96,60,58,147,86,59,149,190,54,33,239,247,136,224,119,109,214,92,33,211,124,112,208,76,78,80,51,170,30,100,207,88,152,120,226,167,137,206,96,164,225,67,100,163,108,10,105,178,33,213,184,105,91,167,104,116,188,102,174,209,131,197,208,175,124,128,151,151,103,82,106,120,10,55,150,5,131,133,118,126,148,78,149,175,43,173,180,88,182,154,171,32,252,118,51,180,63,57,128,23,46,85,8,20,8,120,165,61,78,147,110,21,126,111,26,178,60]
        XCTAssertEqual(Resampler.resizeBilinear(image, width: 9, height: 7).pixels, up)
        // One axis only, and the identity.
        XCTAssertEqual(Resampler.resizeBilinear(image, width: 7, height: 5), image)
        let wide = Resampler.resizeBilinear(image, width: 3, height: 5)
        XCTAssertEqual([wide.width, wide.height], [3, 5])
    }

    /// Normalisation gives (v/255 − mean)/std per channel in CHW order.
    func testNormalization() throws {
        let image = try RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 10, 20, 30])
        let t = Normalization.imagenet.tensor(image)
        XCTAssertEqual(t.shape, [3, 1, 2])
        XCTAssertEqual(t.data[0], (0 / 255 - 0.485) / 0.229)
        XCTAssertEqual(t.data[1], (Float(10) / 255 - 0.485) / 0.229)
        XCTAssertEqual(t.data[2], (Float(128) / 255 - 0.456) / 0.224)
        XCTAssertEqual(t.data[4], (Float(255) / 255 - 0.406) / 0.225)
    }
}
