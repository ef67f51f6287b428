import Foundation
import SSDData
import SSDGraphics
import XCTest

final class FontTests: XCTestCase {
    func testMissingFontThrowsNamingThePath() {
        let path = "/nonexistent/fonts/Nope.ttf"
        XCTAssertThrowsError(try FontRenderer(path: path)) { error in
            XCTAssertEqual(error as? GraphicsError, .fontNotFound(path: path))
            XCTAssertTrue("\(error)".contains(path))
        }
        XCTAssertThrowsError(try FontRenderer(path: NSTemporaryDirectory())) { error in
            XCTAssertEqual(error as? GraphicsError, .fontNotFound(path: NSTemporaryDirectory()))
        }
        XCTAssertThrowsError(try DetectionAnnotator(fontPath: path)) { error in
            XCTAssertTrue("\(error)".contains(path))
        }
    }

    func testUnloadableFontThrowsNamingThePath() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-font-\(UUID().uuidString).ttf")
        try Data("this is not a TrueType font".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try FontRenderer(path: url.path)) { error in
            guard case .fontUnloadable(let path, let code)? = error as? GraphicsError else {
                return XCTFail("expected fontUnloadable, got \(error)")
            }
            XCTAssertEqual(path, url.path)
            XCTAssertNotEqual(code, 0)
            XCTAssertTrue("\(error)".contains(url.path))
        }
    }

    func testBadPixelSizeThrows() {
        XCTAssertThrowsError(try FontRenderer(pixelSize: 0))
    }

    func testMeasurementGrowsWithLengthAndIsZeroForEmpty() throws {
        let font = try FontRenderer()
        XCTAssertEqual(font.measure(""), TextMetrics(width: 0, ascent: 0, descent: 0))
        let one = font.measure("A"), two = font.measure("AB"), three = font.measure("ABC")
        XCTAssertGreaterThan(one.width, 0)
        XCTAssertGreaterThan(two.width, one.width)
        XCTAssertGreaterThan(three.width, two.width)
        XCTAssertEqual(one.height, three.height, "line height does not depend on the string")
        XCTAssertTrue((14...22).contains(one.height), "15 px DejaVu line height, got \(one.height)")
        XCTAssertGreaterThan(one.ascent, one.descent)
        let large = font.measure("ABC", pixelSize: 30)
        XCTAssertEqual(Double(large.width), Double(three.width) * 2, accuracy: 4)
        XCTAssertGreaterThan(font.measure("WWW").width, font.measure("iii").width, "proportional font")
    }

    func testDrawnTextStaysInsideItsBoxAndBlends() throws {
        let font = try FontRenderer()
        var image = RGBImage(width: 200, height: 60)
        let metrics = font.draw("Hello, SSD", on: &image, x: 20, y: 10, color: .white)
        var lit = 0, partial = 0
        for y in 0..<image.height {
            for x in 0..<image.width {
                guard let c = image.color(x: x, y: y), c.red > 0 else { continue }
                lit += 1
                if c.red < 255 { partial += 1 }
                XCTAssertTrue((20..<(20 + metrics.width)).contains(x) && (10..<(10 + metrics.height)).contains(y),
                              "pixel (\(x), \(y)) outside the text box")
                XCTAssertTrue(c.red == c.green && c.green == c.blue, "white over black stays grey")
            }
        }
        XCTAssertGreaterThan(lit, 100)
        XCTAssertGreaterThan(partial, 10, "edges are anti-aliased")
    }

    func testUpwardTextIsTallerThanWide() throws {
        let font = try FontRenderer()
        var image = RGBImage(width: 60, height: 200)
        let metrics = font.draw("HELLO WORLD", on: &image, x: 10, y: 20, color: .white, orientation: .upward)
        var xs: [Int] = [], ys: [Int] = []
        for y in 0..<image.height { for x in 0..<image.width where (image.color(x: x, y: y)?.red ?? 0) > 0 { xs.append(x); ys.append(y) } }
        let spanX = (xs.max() ?? 0) - (xs.min() ?? 0), spanY = (ys.max() ?? 0) - (ys.min() ?? 0)
        XCTAssertGreaterThan(spanY, 3 * spanX)
        XCTAssertLessThanOrEqual(ys.max() ?? 0, 20 + metrics.width)
        XCTAssertLessThan(xs.max() ?? 0, 10 + metrics.height)
    }

    func testTextClipsAtImageEdges() throws {
        let font = try FontRenderer(path: FontRenderer.defaultBoldPath, pixelSize: 40)
        var image = RGBImage(width: 30, height: 20)
        for (x, y) in [(-15, -10), (20, 10), (-1000, 5), (5, 1 << 40), (-(1 << 40), -(1 << 40))] {
            font.draw("Clipped text", on: &image, x: x, y: y, color: .white)
            font.draw("Clipped text", on: &image, x: x, y: y, color: .white, orientation: .upward)
        }
        XCTAssertEqual(image.pixels.count, 30 * 20 * 3)
        XCTAssertTrue(image.pixels.contains { $0 > 0 }, "the visible parts were drawn")
        var empty = RGBImage(width: 0, height: 0)
        font.draw("x", on: &empty, x: 0, y: 0, color: .white)
        XCTAssertEqual(empty.pixels.count, 0)
    }
}
