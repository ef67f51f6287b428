import Foundation
import SSDBoxes
import SSDData
import SSDGraphics
import XCTest

final class AnnotateTests: XCTestCase {
    let grey = RGBColor(red: 128, green: 128, blue: 128)

    func greyImage(_ width: Int, _ height: Int) -> RGBImage {
        RGBImage(width: width, height: height, fill: (128, 128, 128))
    }

    func testPaletteIsTheReferenceOrder() {
        XCTAssertEqual(ClassPalette.referenceColors.count, 21)
        XCTAssertEqual(ClassPalette.color(forLabel: 1), RGBColor(red: 0xe6, green: 0x19, blue: 0x4b))
        XCTAssertEqual(ClassPalette.color(forLabel: 2).hexString, "#3cb44b")
        XCTAssertEqual(ClassPalette.color(forLabel: 12).hexString, "#000080")
        XCTAssertEqual(ClassPalette.color(forLabel: 20).hexString, "#808080")
        XCTAssertEqual(ClassPalette.color(forLabel: 0), .white, "background is the 21st colour")
        let extra = (21...60).map(ClassPalette.color(forLabel:))
        XCTAssertEqual(extra, (21...60).map(ClassPalette.color(forLabel:)), "deterministic")
        XCTAssertEqual(Set(extra).count, extra.count, "distinct")
        XCTAssertFalse(extra.contains(.white))
        XCTAssertNil(RGBColor(hex: "#12345"))
        XCTAssertNil(RGBColor(hex: "zzzzzz"))
    }

    func testBoxOutlineIsTwoPixelsWideInTheClassColour() throws {
        let annotator = try DetectionAnnotator()
        var image = greyImage(300, 300)
        let detection = DetectionAnnotation(Detection(box: Box(50.7, 60.2, 150.9, 160.5), label: 1, score: 0.9), name: "cat")
        annotator.annotate(&image, with: [detection])
        let red = ClassPalette.color(forLabel: 1)
        // Left side: columns 50, 51; right side: columns 150, 151 (corners rounded down, +1 px copy).
        for y in [70, 100, 159] {
            XCTAssertEqual(image.color(x: 49, y: y), grey)
            XCTAssertEqual(image.color(x: 50, y: y), red)
            XCTAssertEqual(image.color(x: 51, y: y), red)
            XCTAssertEqual(image.color(x: 52, y: y), grey)
            XCTAssertEqual(image.color(x: 149, y: y), grey)
            XCTAssertEqual(image.color(x: 150, y: y), red)
            XCTAssertEqual(image.color(x: 151, y: y), red)
            XCTAssertEqual(image.color(x: 152, y: y), grey)
        }
        // Top: rows 60, 61 (right of the label box); bottom: rows 160, 161.
        for x in [120, 140] {
            XCTAssertEqual(image.color(x: x, y: 59), grey)
            XCTAssertEqual(image.color(x: x, y: 60), red)
            XCTAssertEqual(image.color(x: x, y: 61), red)
            XCTAssertEqual(image.color(x: x, y: 62), grey)
            XCTAssertEqual(image.color(x: x, y: 159), grey)
            XCTAssertEqual(image.color(x: x, y: 160), red)
            XCTAssertEqual(image.color(x: x, y: 161), red)
            XCTAssertEqual(image.color(x: x, y: 162), grey)
        }
        // The two rectangles' corners as PIL draws them: (50, 161) is outside both, (151, 161) in the second.
        XCTAssertEqual(image.color(x: 50, y: 161), grey)
        XCTAssertEqual(image.color(x: 151, y: 161), red)
        XCTAssertEqual(image.color(x: 151, y: 60), grey)
        XCTAssertEqual(image.color(x: 100, y: 100), grey, "the inside is untouched")
    }

    func testLabelBoxIsFilledAboveTheBoxWithWhiteUpperCaseText() throws {
        let annotator = try DetectionAnnotator()
        let detection = DetectionAnnotation(Detection(box: Box(40, 100, 200, 180), label: 12, score: 0.8), name: "person")
        let image = annotator.annotated(greyImage(300, 240), with: [detection])
        let color = ClassPalette.color(forLabel: 12)
        let metrics = annotator.font.measure("PERSON")
        XCTAssertEqual(annotator.labelText(for: detection), "PERSON")
        let placement = annotator.labelPlacement(for: detection)
        XCTAssertEqual(placement.box.x0, 40)
        XCTAssertEqual(placement.box.y0, 100 - metrics.height)
        XCTAssertEqual(placement.box.x1, 40 + metrics.width + 4)
        XCTAssertEqual(placement.box.y1, 100)
        XCTAssertEqual(placement.textX, 42)
        var filled = 0, whitish = 0, total = 0
        for y in placement.box.y0...placement.box.y1 {
            for x in placement.box.x0...placement.box.x1 {
                guard let c = image.color(x: x, y: y) else { return XCTFail("label box off the image") }
                total += 1
                if c == color { filled += 1 }
                if c.red > 200, c.green > 200, c.blue > 200 {
                    whitish += 1
                    XCTAssertGreaterThanOrEqual(x, placement.textX, "text starts 2 px into the box")
                }
                XCTAssertNotEqual(c, grey, "every label-box pixel is painted")
            }
        }
        XCTAssertGreaterThan(filled, total / 2)
        XCTAssertGreaterThan(whitish, 30)
        XCTAssertEqual(image.color(x: placement.box.x1 + 1, y: placement.box.y0 + 3), grey)
        XCTAssertEqual(image.color(x: placement.box.x0 + 5, y: placement.box.y0 - 1), grey)
        XCTAssertEqual(image.color(x: placement.box.x0 - 1, y: placement.box.y0 + 3), grey)
    }

    func testLabelGoesInsideWhenTheBoxTouchesTheTop() throws {
        let annotator = try DetectionAnnotator()
        let detection = DetectionAnnotation(Detection(box: Box(10, 3, 120, 90), label: 2, score: 0.7), name: "dog")
        let image = annotator.annotated(greyImage(160, 120), with: [detection])
        let placement = annotator.labelPlacement(for: detection)
        let height = annotator.font.measure("DOG").height
        XCTAssertEqual(placement.box.y0, 3)
        XCTAssertEqual(placement.box.y1, 3 + height)
        XCTAssertEqual(image.color(x: 11, y: 3 + height - 1), ClassPalette.color(forLabel: 2))
        XCTAssertEqual(image.color(x: 11, y: 2), grey)
    }

    func testScoreCanBeShown() throws {
        var annotator = try DetectionAnnotator()
        annotator.showsScore = true
        let detection = DetectionAnnotation(Detection(box: Box(0, 0, 1, 1), label: 1, score: 0.934), name: "cat")
        XCTAssertEqual(annotator.labelText(for: detection), "CAT 0.93")
    }

    func testDetectionsOutsideOrDegenerateDoNotCrash() throws {
        let annotator = try DetectionAnnotator()
        var image = greyImage(64, 48)
        let boxes: [(Double, Double, Double, Double)] = [
            (-10, -10, 20, 30), (50, 40, 500, 400), (-500, -500, -100, -100), (1000, 1000, 2000, 2000),
            (30, 20, 10, 5), (5, 5, 5, 5), (-1e300, -1e300, 1e300, 1e300), (.nan, 3, 8, .infinity),
            (-.infinity, -.infinity, .infinity, .infinity), (63, 47, 63, 47),
        ]
        let detections = boxes.enumerated().map { index, box in
            DetectionAnnotation(Detection(box: Box(Float(box.0), Float(box.1), Float(box.2), Float(box.3)), label: index * 7, score: 0.5),
                                name: "class\(index)")
        }
        annotator.annotate(&image, with: detections)
        XCTAssertEqual(image.width, 64)
        XCTAssertEqual(image.pixels.count, 64 * 48 * 3)
        // The first box's visible right side (column 20, 21) is drawn below its label.
        XCTAssertEqual(image.color(x: 20, y: 28), ClassPalette.color(forLabel: 0))
        var tiny = greyImage(1, 1)
        annotator.annotate(&tiny, with: detections)
        var empty = RGBImage(width: 0, height: 0)
        annotator.annotate(&empty, with: detections)
        XCTAssertEqual(empty.pixels.count, 0)
    }

    func testRectangleAndLinePrimitivesClip() {
        var image = RGBImage(width: 10, height: 10)
        image.fillRectangle(x0: -5, y0: -5, x1: 2, y1: 2, color: .white)
        XCTAssertEqual(image.color(x: 2, y: 2), .white)
        XCTAssertEqual(image.color(x: 3, y: 2), .black)
        image.drawLine(x0: -1e300, y0: 5, x1: 1e300, y1: 5, color: .white)
        XCTAssertEqual(image.color(x: 7, y: 5), .white)
        image.drawLine(x0: -1e308, y0: -1e308, x1: 1e308, y1: 1e308, color: .white, thickness: 3)
        image.drawLine(x0: .nan, y0: 0, x1: 3, y1: 3, color: .white)
        XCTAssertNil(image.color(x: 10, y: 0))
        XCTAssertNil(image.color(x: -1, y: 0))
    }
}
