import Foundation
import SSDBoxes
import SSDData
import SSDEvaluation
import SSDTestSupport
import XCTest

final class AveragePrecisionTests: XCTestCase {
    /// `map_case.json` (copied from shared/fixtures, 37 KB) with the reference's expected APs.
    let caseURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/map_case.json")

    func testVOC07MatchesTheReference() throws {
        let file = try EvaluationFile(url: caseURL)
        let result = try MeanAveragePrecision.compute(truths: file.truths, detections: file.detections, classCount: 21)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: caseURL)) as! [String: Any]
        let expected = json["expected"] as! [String: Any]
        let aps = expected["APs"] as! [String: Double]
        var worst = 0.0
        for (i, name) in LabelMap.voc.classes.enumerated() {
            let e = try XCTUnwrap(aps[name], name)
            let ap = Double(try XCTUnwrap(result.averagePrecisions[i], "VOC07 evaluates every class"))
            worst = max(worst, abs(ap - e))
            XCTAssertEqual(ap, e, accuracy: 1e-6, name)
        }
        let mAP = expected["mAP"] as! Double
        report("map_case voc07 worst AP difference", worst)
        report("map_case voc07 mAP difference", abs(Double(result.meanAveragePrecision) - mAP))
        XCTAssertEqual(Double(result.meanAveragePrecision), mAP, accuracy: 1e-6)
    }

    /// Hand-worked cases: one image, class 1, two objects (one difficult).
    func testMatchingRulesAndMetrics() throws {
        let truth = [EvaluationTruth(boxes: [Box(0, 0, 10, 10), Box(20, 20, 30, 30), Box(50, 50, 60, 60)], labels: [1, 1, 1],
                                     difficult: [false, false, true])]
        // Scores: hit object 0, duplicate on object 0 (false positive), hit the difficult one
        // (ignored), miss everything (false positive), hit object 1.
        let detections = [zip([Box(0, 0, 10, 10), Box(1, 0, 10, 10), Box(50, 50, 60, 60), Box(80, 80, 90, 90), Box(20, 20, 30, 30)],
                              [Float(0.9), 0.8, 0.7, 0.6, 0.5]).map { Detection(box: $0, label: 1, score: $1) }]
        // TP FP (ign) FP TP → precision 1, 1/2, 1/3, 2/4 at recall 1/2, 1/2, 1/2, 1.
        let voc07 = try MeanAveragePrecision.compute(truths: truth, detections: detections, classCount: 2, metric: .voc07)
        // Recall ≥ t: t ≤ 0.5 → max precision 1 (6 thresholds); t > 0.5 → 0.5 (5 thresholds).
        XCTAssertEqual(try XCTUnwrap(voc07.averagePrecisions[0]), Float((6 * 1.0 + 5 * 0.5) / 11), accuracy: 1e-6)
        let voc12 = try MeanAveragePrecision.compute(truths: truth, detections: detections, classCount: 2, metric: .voc12)
        XCTAssertEqual(try XCTUnwrap(voc12.averagePrecisions[0]), 0.5 * 1 + 0.5 * 0.5, accuracy: 1e-6)
        let coco = try MeanAveragePrecision.compute(truths: truth, detections: detections, classCount: 2, metric: .coco)
        // Hits are exact (IoU 1), so every IoU threshold gives the same curve: 101 recall points,
        // 51 of them (0…0.5) at precision 1 and 50 at 0.5.
        XCTAssertEqual(try XCTUnwrap(coco.averagePrecisions[0]), Float((51 * 1.0 + 50 * 0.5) / 101), accuracy: 1e-6)
        // No detections of a class: AP 0, and it still counts in the mean.
        let none = try MeanAveragePrecision.compute(truths: truth, detections: detections, classCount: 3)
        XCTAssertEqual(none.averagePrecisions[1], 0)
        XCTAssertEqual(none.meanAveragePrecision, (try XCTUnwrap(voc07.averagePrecisions[0]) + 0) / 2, accuracy: 1e-6)
    }

    func testBadInputNamesTheField() throws {
        XCTAssertThrowsError(try EvaluationFile(data: Data("{\"true_boxes\": []}".utf8), path: "x.json")) { e in
            XCTAssertTrue("\(e)".contains("x.json") && "\(e)".contains("true_labels"), "\(e)")
        }
        let bad = """
            {"true_boxes": [[[0, 0, 1]]], "true_labels": [[1]], "true_difficulties": [[0]],
             "det_boxes": [[]], "det_labels": [[]], "det_scores": [[]]}
            """
        XCTAssertThrowsError(try EvaluationFile(data: Data(bad.utf8), path: "y.json")) { e in
            XCTAssertTrue("\(e)".contains("'true_boxes'[0][0]"), "\(e)")
        }
        XCTAssertThrowsError(try MeanAveragePrecision.compute(truths: [], detections: [[]],
                                                              classCount: 21))
    }
}
