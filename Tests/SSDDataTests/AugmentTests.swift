import Foundation
import SSDData
import SSDEngine
import XCTest

final class PhotometricTests: XCTestCase {
    /// A 6×5 image and what Pillow 13 + torchvision's functional adjust_* make of it.
    static let source: [UInt8] = [10,10,10,255,0,0,0,255,0,0,0,255,255,255,255,200,100,50,224,148,172,93,167,142,248,26,81,218,150,66,2,191,60,129,179,90,69,104,110,97,157,106,152,251,62,7,248,171,33,123,79,176,37,20,94,49,149,127,206,244,28,119,54,0,192,233,18,116,191,165,184,184,199,165,253,174,33,113,1,85,117,119,202,235,124,228,99,219,144,255]
    static let cases: [(String, Double, [UInt8])] = [
        ("brightness", 1.3, [13,13,13,255,0,0,0,255,0,0,0,255,255,255,255,255,130,65,255,192,223,120,217,184,255,33,105,255,195,85,2,248,78,167,232,116,89,135,143,126,204,137,197,255,80,9,255,222,42,159,102,228,48,26,122,63,193,165,255,255,36,154,70,0,249,255,23,150,248,214,239,239,255,214,255,226,42,146,1,110,152,154,255,255,161,255,128,255,187,255]),
        ("brightness", 0.7, [7,7,7,178,0,0,0,178,0,0,0,178,178,178,178,140,70,35,156,103,120,65,116,99,173,18,56,152,105,46,1,133,42,90,125,63,48,72,77,67,109,74,106,175,43,4,173,119,23,86,55,123,25,14,65,34,104,88,144,170,19,83,37,0,134,163,12,81,133,115,128,128,139,115,177,121,23,79,0,59,81,83,141,164,86,159,69,153,100,178]),
        ("contrast", 1.4, [0,0,0,255,0,0,0,255,0,0,0,255,255,255,255,228,88,18,255,155,188,78,181,146,255,0,61,253,158,40,0,215,32,128,198,74,44,93,102,83,167,96,160,255,34,0,255,187,0,120,58,194,0,0,79,16,156,125,236,255,0,114,23,0,216,255,0,110,215,179,205,205,226,179,255,191,0,106,0,67,111,114,230,255,121,255,86,254,149,255]),
        ("contrast", 0.6, [58,58,58,205,52,52,52,205,52,52,52,205,205,205,205,172,112,82,186,140,155,107,152,137,200,67,100,182,142,91,53,166,88,129,159,106,93,114,118,110,146,115,143,202,89,56,200,154,71,125,99,157,74,64,108,81,141,128,175,198,68,123,84,52,167,191,62,121,166,151,162,162,171,151,203,156,71,119,52,103,122,123,173,193,126,188,111,183,138,205]),
        ("saturation", 1.5, [10,10,10,255,0,0,0,255,0,0,0,255,255,255,255,238,88,13,249,135,171,68,179,142,255,0,72,246,144,18,0,226,30,116,191,58,56,109,118,79,169,92,128,255,0,0,255,173,4,139,73,225,17,0,104,36,186,97,215,255,0,136,39,0,218,255,0,126,239,158,187,187,206,155,255,219,7,127,0,95,143,88,212,255,95,251,57,239,126,255]),
        ("saturation", 0.5, [10,10,10,165,38,38,75,202,75,14,14,142,255,255,255,162,112,87,198,160,172,117,154,142,173,62,90,189,155,113,61,155,90,141,166,122,81,99,102,115,145,119,176,225,131,87,207,169,62,107,85,126,57,48,84,61,111,157,196,215,56,101,69,69,165,186,56,105,143,171,181,181,192,175,219,129,58,98,32,74,90,150,191,208,153,205,140,199,161,217]),
        ("hue", 0.05, [10,10,10,255,72,0,0,255,72,72,0,255,255,255,255,200,142,50,224,148,152,94,167,163,248,26,26,218,191,67,2,191,113,105,179,91,69,93,110,97,157,123,102,251,62,8,248,234,33,123,103,176,79,20,122,49,149,127,174,244,28,119,79,0,132,233,19,71,191,165,179,184,223,166,253,174,33,76,1,53,117,120,171,235,99,228,108,248,144,255]),
        ("hue", -0.06, [10,10,10,255,0,84,90,255,0,0,90,255,255,255,255,200,50,50,224,148,200,94,167,116,248,26,162,218,95,67,11,191,2,161,179,91,69,110,101,110,157,97,222,251,62,8,248,81,33,123,46,176,20,57,58,49,149,127,244,240,34,119,28,0,233,186,19,181,191,165,184,177,168,166,253,174,33,166,1,117,107,120,235,226,172,228,99,178,144,255]),
    ]

    /// Each adjustment reproduces Pillow's bytes exactly.
    func testAdjustmentsMatchPillow() throws {
        for (kind, factor, expected) in Self.cases {
            var image = try RGBImage(width: 6, height: 5, pixels: Self.source)
            switch kind {
            case "brightness": Photometric.adjustBrightness(&image, factor: factor)
            case "contrast": Photometric.adjustContrast(&image, factor: factor)
            case "saturation": Photometric.adjustSaturation(&image, factor: factor)
            default: Photometric.adjustHue(&image, factor: factor)
            }
            XCTAssertEqual(image.pixels, expected, "\(kind) \(factor)")
        }
    }

    /// Greyscale (PIL's L) and the HSV conversion match Pillow.
    func testLumaAndHSV() {
        let luma: [UInt8] = [10,76,150,29,255,124,173,142,99,161,120,154,94,133,200,167,91,77,74,187,84,139,95,178,185,84,64,181,182,179]
        let hsv: [UInt8] = [0,0,10,0,255,255,85,255,255,170,255,255,0,0,255,14,191,200,241,86,224,113,112,167,244,228,248,23,177,218,98,252,191,66,126,179,133,95,110,91,97,157,64,192,251,113,247,248,106,186,123,4,226,176,189,171,149,141,122,244,97,195,119,134,255,233,145,230,191,127,26,184,186,88,253,230,206,174,139,252,117,139,125,235,76,144,228,198,111,255]
        for i in 0..<30 {
            let (r, g, b) = (Self.source[3 * i], Self.source[3 * i + 1], Self.source[3 * i + 2])
            XCTAssertEqual(Photometric.luma(r, g, b), luma[i])
            let (h, s, v) = Photometric.rgbToHSV(r, g, b)
            XCTAssertEqual([h, s, v], Array(hsv[(3 * i)..<(3 * i + 3)]), "pixel \(i)")
        }
    }
}

final class AugmentTests: XCTestCase {
    /// A random image with 1–4 random valid objects.
    static func randomSample(_ rng: inout SeededRandom) -> (RGBImage, ObjectSet) {
        let w = 40 + Int(rng.next() % 200), h = 40 + Int(rng.next() % 200)
        var image = RGBImage(width: w, height: h)
        for i in 0..<image.pixels.count { image.pixels[i] = UInt8(truncatingIfNeeded: rng.next()) }
        var objects = ObjectSet()
        for _ in 0..<(1 + Int(rng.next() % 4)) {
            let x1 = Float(rng.next() % UInt64(w - 2)), y1 = Float(rng.next() % UInt64(h - 2))
            let x2 = x1 + 1 + Float(rng.next() % UInt64(Float(w - 1) - x1)), y2 = y1 + 1 + Float(rng.next() % UInt64(Float(h - 1) - y1))
            objects.boxes += [x1, y1, x2, y2]
            objects.labels.append(1 + Int(rng.next() % 20))
            objects.difficulties.append(Int(rng.next() % 2))
        }
        return (image, objects)
    }

    /// Over many seeds: 300×300 output, boxes within [0, 1] with positive size, labels and
    /// difficulties aligned and each kept object one of the input's; same seed, same result.
    func testTrainTransformInvariants() throws {
        var source = SeededRandom(seed: 11)
        for seed in 0..<300 {
            let (image, objects) = Self.randomSample(&source)
            var rng = SeededRandom(seed: UInt64(seed))
            let sample = Augmentation.train(image, objects, rng: &rng)
            XCTAssertEqual([sample.image.width, sample.image.height], [300, 300])
            let out = sample.objects
            XCTAssertGreaterThan(out.count, 0, "seed \(seed): the crop keeps at least one object")
            XCTAssertEqual(out.boxes.count, 4 * out.count)
            XCTAssertEqual(out.difficulties.count, out.count)
            for i in 0..<out.count {
                let b = Array(out.boxes[(4 * i)..<(4 * i + 4)])
                XCTAssert(b.allSatisfy { $0 >= 0 && $0 <= 1 }, "seed \(seed): box \(b) outside the image")
                XCTAssert(b[2] > b[0] && b[3] > b[1], "seed \(seed): degenerate box \(b)")
                let pairs = (0..<objects.count).map { (objects.labels[$0], objects.difficulties[$0]) }
                XCTAssert(pairs.contains { $0 == (out.labels[i], out.difficulties[i]) }, "seed \(seed): label/difficulty pair not in the input")
            }
            var again = SeededRandom(seed: UInt64(seed))
            XCTAssertEqual(Augmentation.train(image, objects, rng: &again), sample, "seed \(seed): not deterministic")
        }
    }

    /// The accepted crop satisfies its overlap constraint, keeps exactly the boxes whose centres
    /// lie inside it, and the kept boxes are the originals clamped and shifted.
    func testRandomCropConstraints() {
        var source = SeededRandom(seed: 5)
        var cropped = 0
        for seed in 0..<500 {
            let (image, objects) = Self.randomSample(&source)
            var rng = SeededRandom(seed: UInt64(seed))
            guard let crop = Augmentation.randomCrop(width: image.width, height: image.height, objects: objects, rng: &rng) else { continue }
            cropped += 1
            let (l, t, w, h) = crop.rect
            XCTAssert(l >= 0 && t >= 0 && l + w <= image.width && t + h <= image.height && w > 0 && h > 0)
            XCTAssert(Double(h) / Double(w) > 0.5 && Double(h) / Double(w) < 2)
            let (r, b) = (Float(l + w), Float(t + h))
            var best: Float = 0
            var expected: [Float] = []
            var expectedLabels: [Int] = []
            for i in 0..<objects.count {
                let o = Array(objects.boxes[(4 * i)..<(4 * i + 4)])
                let iw = max(0, min(r, o[2]) - max(Float(l), o[0])), ih = max(0, min(b, o[3]) - max(Float(t), o[1]))
                let inter = iw * ih
                best = max(best, inter / (Float(w * h) + (o[2] - o[0]) * (o[3] - o[1]) - inter))
                let (cx, cy) = ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2)
                if cx > Float(l), cx < r, cy > Float(t), cy < b {
                    expected += [max(o[0], Float(l)) - Float(l), max(o[1], Float(t)) - Float(t), min(o[2], r) - Float(l), min(o[3], b) - Float(t)]
                    expectedLabels.append(objects.labels[i])
                }
            }
            XCTAssertGreaterThanOrEqual(best, crop.minOverlap, "seed \(seed)")
            XCTAssertEqual(crop.objects.boxes, expected, "seed \(seed)")
            XCTAssertEqual(crop.objects.labels, expectedLabels, "seed \(seed)")
        }
        XCTAssertGreaterThan(cropped, 300, "most draws should crop (6 of 7 overlap choices do)")
    }

    /// The fused expand + crop equals building the mean-filled canvas, pasting the image (after
    /// the reference's byte round trip) and cutting the crop out of it.
    func testFusedExpandCropEqualsExplicitCanvas() throws {
        var source = SeededRandom(seed: 21)
        for _ in 0..<30 {
            let (image, _) = Self.randomSample(&source)
            let canvasW = image.width + Int(source.next() % 100), canvasH = image.height + Int(source.next() % 100)
            let ox = Int(source.next() % UInt64(canvasW - image.width + 1)), oy = Int(source.next() % UInt64(canvasH - image.height + 1))
            let w = 1 + Int(source.next() % UInt64(canvasW)), h = 1 + Int(source.next() % UInt64(canvasH))
            let l = Int(source.next() % UInt64(canvasW - w + 1)), t = Int(source.next() % UInt64(canvasH - h + 1))
            var canvas = RGBImage(width: canvasW, height: canvasH, fill: (123, 116, 103))
            for y in 0..<image.height {
                for x in 0..<(image.width * 3) {
                    let v = image.pixels[y * image.width * 3 + x]
                    canvas.pixels[(oy + y) * canvasW * 3 + ox * 3 + x] = UInt8(Float(Float(v) / 255) * 255)
                }
            }
            var expected = RGBImage(width: w, height: h)
            for y in 0..<h { for x in 0..<(w * 3) { expected.pixels[y * w * 3 + x] = canvas.pixels[(t + y) * canvasW * 3 + l * 3 + x] } }
            XCTAssertEqual(Augmentation.materialize(image, canvasOffset: (ox, oy), crop: (l, t, w, h)), expected)
        }
    }

    /// Flipping twice restores image and boxes; one flip mirrors pixels and boxes.
    func testFlipTwiceIsIdentity() {
        var source = SeededRandom(seed: 3)
        for _ in 0..<50 {
            let (image, objects) = Self.randomSample(&source)
            var (i2, o2) = (image, objects)
            Augmentation.flip(&i2, &o2)
            XCTAssertEqual(Array(i2.pixels[0..<3]), Array(image.pixels[(3 * image.width - 3)..<(3 * image.width)]))
            XCTAssertEqual(o2.boxes[0], Float(image.width) - objects.boxes[2] - 1)
            Augmentation.flip(&i2, &o2)
            XCTAssertEqual(i2, image)
            XCTAssertEqual(o2, objects)
        }
    }

    /// The test transform only resizes: fractional boxes are the pixel boxes over the size.
    func testTestTransformOnlyResizes() throws {
        let image = RGBImage(width: 200, height: 100, fill: (1, 2, 3))
        let objects = ObjectSet(boxes: [10, 20, 110, 70], labels: [4], difficulties: [1])
        let sample = Augmentation.test(image, objects)
        let expected: [Float] = [Float(10) / 200, Float(20) / 100, Float(110) / 200, Float(70) / 100]
        XCTAssertEqual(sample.objects.boxes, expected)
        XCTAssertEqual(sample.objects.labels, [4])
        XCTAssertEqual(sample.image, RGBImage(width: 300, height: 300, fill: (1, 2, 3)))
    }

    /// The photometric step changes the image for some seeds and leaves the size alone.
    func testPhotometricDistortVaries() {
        var source = SeededRandom(seed: 9)
        let (image, _) = Self.randomSample(&source)
        var changed = 0
        for seed in 0..<40 {
            var rng = SeededRandom(seed: UInt64(seed))
            var copy = image
            Augmentation.photometricDistort(&copy, rng: &rng)
            XCTAssertEqual(copy.pixels.count, image.pixels.count)
            if copy != image { changed += 1 }
        }
        // Each of four distortions applies with chance 1/2: about 1/16 of draws change nothing.
        XCTAssertGreaterThan(changed, 30, "\(changed) of 40 changed")
    }
}

final class HueFastPathTests: XCTestCase {
    /// The table-driven hue adjustment equals the direct transcription of PIL's conversions
    /// (rgbToHSV, shift, hsvToRGB) on every 7th RGB colour, for several shifts.
    func testTablesMatchDirectConversion() throws {
        var pixels: [UInt8] = []
        var i = 0
        while i < 1 << 24 { pixels += [UInt8(i >> 16), UInt8((i >> 8) & 255), UInt8(i & 255)]; i += 7 * 97 }
        let image = try RGBImage(width: pixels.count / 3, height: 1, pixels: pixels)
        for factor in [0.0, 0.05, -0.06, 18.0 / 255, -0.5, 0.49] {
            var fast = image
            Photometric.adjustHue(&fast, factor: factor)
            let shift = UInt8(truncatingIfNeeded: Int32(factor * 255))
            var mismatches = 0
            for p in 0..<(pixels.count / 3) {
                let (h, s, v) = Photometric.rgbToHSV(pixels[3 * p], pixels[3 * p + 1], pixels[3 * p + 2])
                let (r, g, b) = Photometric.hsvToRGB(h &+ shift, s, v)
                if [r, g, b] != Array(fast.pixels[(3 * p)..<(3 * p + 3)]) { mismatches += 1 }
            }
            XCTAssertEqual(mismatches, 0, "factor \(factor)")
        }
    }
}
