import SSDBoxes
import SSDEvaluation
import SSDTraining
import XCTest

/// The records ranks gather for a sharded evaluation: every image back in data-set order,
/// exactly; overlapping or missing images are errors, never a silently different mAP.
final class ImageRecordsTests: XCTestCase {
    let truths = [
        EvaluationTruth(boxes: [Box(0.1, 0.2, 0.3, 0.4), Box(0.5, 0.5, 0.9, 0.8)], labels: [3, 1], difficult: [false, true]),
        EvaluationTruth(boxes: [], labels: [], difficult: []),
        EvaluationTruth(boxes: [Box(0, 0, 1, 1)], labels: [2], difficult: [false]),
    ]
    let detections = [
        [Detection(box: Box(0.11, 0.19, 0.3, 0.41), label: 3, score: 0.875)],
        [Detection(box: Box(0, 0, 1, 1), label: 0, score: 0)],
        [],
    ]

    func testRoundTripInDataSetOrder() throws {
        // Rank 0 had images 0 and 2 (batches 0, 2), rank 1 image 1.
        let rank0 = ImageRecords.encode(indices: [0, 2], truths: [truths[0], truths[2]], detections: [detections[0], detections[2]])
        let rank1 = ImageRecords.encode(indices: [1], truths: [truths[1]], detections: [detections[1]])
        let (t, d) = try ImageRecords.decode([rank0, rank1], count: 3)
        XCTAssertEqual(t, truths)
        XCTAssertEqual(d.map { $0.map(\.box) }, detections.map { $0.map(\.box) })
        XCTAssertEqual(d.map { $0.map(\.label) }, detections.map { $0.map(\.label) })
        XCTAssertEqual(d.map { $0.map(\.score) }, detections.map { $0.map(\.score) })
    }

    func testOverlapsAndGapsAreErrors() {
        let all = ImageRecords.encode(indices: [0, 1, 2], truths: truths, detections: detections)
        let first = ImageRecords.encode(indices: [0], truths: [truths[0]], detections: [detections[0]])
        XCTAssertThrowsError(try ImageRecords.decode([all, first], count: 3), "image 0 twice")
        XCTAssertThrowsError(try ImageRecords.decode([first], count: 3), "images 1 and 2 missing")
        XCTAssertThrowsError(try ImageRecords.decode([all], count: 2), "an index beyond the set")
        XCTAssertThrowsError(try ImageRecords.decode([Array(all.dropLast(3))], count: 3), "a truncated record")
    }
}
