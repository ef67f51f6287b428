import Foundation
import SSDBoxes
import XCTest

final class BoxTests: XCTestCase {
    /// The flat-array formula of `Boxes.iou` and the evaluation's former `iou`, verbatim.
    private func flatIoU(_ a: [Float], _ b: [Float]) -> Float {
        let w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
        let h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
        let inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
    }

    func testIoUIsBitIdenticalToTheFlatFormula() {
        XCTAssertEqual(Box(0, 0, 2, 2).iou(Box(1, 1, 3, 3)), 1.0 / 7.0, accuracy: 1e-7)
        XCTAssertEqual(Box(0, 0, 1, 1).iou(Box(2, 2, 3, 3)), 0)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let a = (0..<4).map { _ in Float.random(in: -2...2, using: &generator) }
            let b = (0..<4).map { _ in Float.random(in: -2...2, using: &generator) }
            let expected = flatIoU(a, b), got = Box(a).iou(Box(b))
            XCTAssertTrue(expected.bitPattern == got.bitPattern || (expected.isNaN && got.isNaN), "\(a) \(b): \(got) vs \(expected)")
        }
        // NaN and infinite operands behave as the flat formula's (self is the first operand).
        for (a, b) in [([Float.nan, 0, 1, 1], [0, 0, 1, 1]), ([0, 0, 1, 1], [.nan, 0, 1, 1]),
                       ([-.infinity, 0, .infinity, 1], [0, 0, 1, 1])] as [([Float], [Float])] {
            let expected = flatIoU(a, b), got = Box(a).iou(Box(b))
            XCTAssertTrue(expected.bitPattern == got.bitPattern || (expected.isNaN && got.isNaN))
        }
    }

    func testGeometry() {
        let box = Box(xMin: 0.25, yMin: 0.5, xMax: 0.75, yMax: 1)
        XCTAssertEqual(box.width, 0.5)
        XCTAssertEqual(box.height, 0.5)
        XCTAssertEqual(box.area, 0.25)
        XCTAssertEqual(box.array, [0.25, 0.5, 0.75, 1])
        XCTAssertEqual(Box(box.array), box)
        XCTAssertEqual(box.scaled(x: 200, y: 100), Box(50, 50, 150, 100))
        XCTAssertTrue(box.isFinite)
        XCTAssertFalse(Box(0, .nan, 1, 1).isFinite)
        XCTAssertEqual("\(box)", "\([Float(0.25), 0.5, 0.75, 1])")
        let detection = Detection(box: box, label: 3, score: 0.5)
        XCTAssertEqual(detection.scaled(x: 200, y: 100), Detection(box: Box(50, 50, 150, 100), label: 3, score: 0.5))
    }

    func testValidatingInitRejectsWhatIsNotABox() {
        XCTAssertEqual(try Box(validating: [1, 2, 3, 4]), Box(1, 2, 3, 4))
        XCTAssertThrowsError(try Box(validating: [1, 2, 3])) { XCTAssertEqual($0 as? BoxError, .notFourNumbers(count: 3)) }
        XCTAssertThrowsError(try Box(validating: [1, 2, 3, .infinity]))
    }

    func testCodableIsAListOfFourNumbers() throws {
        let box = Box(1.5, 2, 3, 4.25)
        let data = try JSONEncoder().encode(box)
        XCTAssertEqual(String(decoding: data, as: UTF8.self), "[1.5,2,3,4.25]")
        XCTAssertEqual(try JSONDecoder().decode(Box.self, from: data), box)
        XCTAssertThrowsError(try JSONDecoder().decode(Box.self, from: Data("[1, 2, 3]".utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(Box.self, from: Data("{\"xMin\": 1}".utf8)))
    }
}
