import Foundation
import SSDBoxes
import SSDEvaluation
import SSDTestSupport
import XCTest

/// `APMetric.coco` against pycocotools' COCOeval: hand-worked cases for the rules where a
/// plain AP computation goes wrong (each value here was also checked with pycocotools), and
/// generated cases with pycocotools' own answers.
final class COCOMetricTests: XCTestCase {
    func coco(_ truths: [EvaluationTruth], _ detections: [[Detection]], classes: Int = 1) throws -> APResult {
        try MeanAveragePrecision.compute(truths: truths, detections: detections, classCount: classes + 1, metric: .coco)
    }

    func truth(_ boxes: [Box], labels: [Int]? = nil, difficult: [Bool]? = nil) -> EvaluationTruth {
        EvaluationTruth(boxes: boxes, labels: labels ?? boxes.map { _ in 1 }, difficult: difficult ?? boxes.map { _ in false })
    }

    func found(_ boxes: [Box], scores: [Float], labels: [Int]? = nil) -> [Detection] {
        boxes.indices.map { Detection(box: boxes[$0], label: labels?[$0] ?? 1, score: scores[$0]) }
    }

    let object = Box(0, 0, 10, 10)

    /// A class with no object that is not difficult is not evaluated (pycocotools' −1) and
    /// stays out of the mean; VOC07 gives it 0 and counts it. The "nothing found" placeholder
    /// (label 0, score 0) counts for no class.
    func testClassWithoutGroundTruthIsLeftOutOfTheMean() throws {
        let truths = [truth([object, Box(20, 20, 30, 30)], labels: [1, 3], difficult: [false, true])]
        let detections = [found([object, Box(40, 40, 50, 50), Box(20, 20, 30, 30), Box(0, 0, 1, 1)],
                                scores: [0.9, 0.8, 0.7, 0], labels: [1, 2, 3, 0])]
        let result = try coco(truths, detections, classes: 3)
        XCTAssertEqual(result.averagePrecisions.count, 3)
        XCTAssertEqual(try XCTUnwrap(result.averagePrecisions[0]), 1, accuracy: 1e-6)
        XCTAssertNil(result.averagePrecisions[1], "class 2 has detections but no objects")
        XCTAssertNil(result.averagePrecisions[2], "class 3 has only a difficult object")
        XCTAssertEqual(result.meanAveragePrecision, 1, accuracy: 1e-6)
        let voc = try MeanAveragePrecision.compute(truths: truths, detections: detections, classCount: 4, metric: .voc07)
        XCTAssertEqual(voc.averagePrecisions.map { $0 ?? -1 }, [1, 0, 0])
        XCTAssertEqual(voc.meanAveragePrecision, 1.0 / 3, accuracy: 1e-6)
        // Nothing to evaluate at all: no mean, an error rather than a number.
        XCTAssertThrowsError(try coco([truth([object], difficult: [true])], [found([object], scores: [0.9])]))
    }

    /// Only the best 100 detections of a class in an image count: a hit scored below 100 false
    /// detections of its image and class is cut, not when they are in another image or class.
    func testAtMost100DetectionsPerImageAndClass() throws {
        let far = (0..<100).map { Box(Float(100 + $0), 100, Float(110 + $0), 110) }
        let cut = try coco([truth([object])], [found(far + [object], scores: [Float](repeating: 0.9, count: 100) + [0.5])])
        XCTAssertEqual(try XCTUnwrap(cut.averagePrecisions[0]), 0)
        // The hit ranks 101st overall: precision 1/101 at recall 1, at every point.
        let elsewhere = try coco([truth([object]), truth([])],
                                 [found([object], scores: [0.5]), found(far, scores: [Float](repeating: 0.9, count: 100))])
        XCTAssertEqual(try XCTUnwrap(elsewhere.averagePrecisions[0]), 1.0 / 101, accuracy: 1e-6)
        let otherClass = try coco([truth([object])], [found(far + [object], scores: [Float](repeating: 0.9, count: 100) + [0.5],
                                                            labels: [Int](repeating: 2, count: 100) + [1])], classes: 2)
        XCTAssertEqual(try XCTUnwrap(otherClass.averagePrecisions[0]), 1, accuracy: 1e-6)
    }

    /// A difficult object is a crowd region: any number of detections inside it (IoU =
    /// intersection / detection area) are ignored, not false positives; and a detection takes
    /// it only when no ordinary object passes the threshold, however much better it overlaps.
    func testDifficultRegionAbsorbsDetectionsButYieldsToObjects() throws {
        let region = Box(20, 20, 60, 60)
        let inside = [Box(22, 22, 30, 30), Box(40, 40, 50, 50), Box(25, 45, 35, 55)]
        let absorbed = try coco([truth([object, region], difficult: [false, true])],
                                [found(inside + [object], scores: [0.9, 0.8, 0.7, 0.6])])
        XCTAssertEqual(try XCTUnwrap(absorbed.averagePrecisions[0]), 1, accuracy: 1e-6)
        // Box(0, 0, 12, 12) has IoU 100/144 ≈ 0.69 with the object and 1 with the region around
        // it: a hit at the 4 thresholds up to 0.65, ignored at the other 6 (no recall there).
        for (boxes, difficult) in [([object, Box(0, 0, 40, 40)], [false, true]), ([Box(0, 0, 40, 40), object], [true, false])] {
            let preferred = try coco([truth(boxes, difficult: difficult)], [found([Box(0, 0, 12, 12)], scores: [0.9])])
            XCTAssertEqual(try XCTUnwrap(preferred.averagePrecisions[0]), 0.4, accuracy: 1e-6, "\(boxes)")
        }
    }

    /// Equal scores keep image order across images (pycocotools' stable mergesort): a false
    /// positive in image 0 tied with a hit in image 1 ranks first, and the other way round.
    func testScoreTiesKeepImageOrder() throws {
        let miss = Box(50, 50, 60, 60)
        let missFirst = try coco([truth([object]), truth([object])], [found([miss], scores: [0.5]), found([object], scores: [0.5])])
        let hitFirst = try coco([truth([object]), truth([object])], [found([object], scores: [0.5]), found([miss], scores: [0.5])])
        // Recall 1/2 at precision 1/2 (miss first) or 1 (hit first): 51 of the 101 points.
        XCTAssertEqual(try XCTUnwrap(missFirst.averagePrecisions[0]), 51 * 0.5 / 101, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(hitFirst.averagePrecisions[0]), 51.0 / 101, accuracy: 1e-6)
    }

    /// The recall points are numpy's linspace(0, 1, 101), k·0.01: the point "0.70" is
    /// 0.7000000000000001, which a recall of exactly 7/10 misses (70 points, not 71).
    func testRecallPointsAreNumpys() throws {
        let objects = (0..<10).map { Box(Float(20 * $0), 0, Float(20 * $0 + 10), 10) }
        let result = try coco([truth(objects)], [found(Array(objects.prefix(7)), scores: (0..<7).map { 0.9 - 0.01 * Float($0) })])
        XCTAssertEqual(try XCTUnwrap(result.averagePrecisions[0]), 70.0 / 101, accuracy: 1e-6)
    }

    /// Generated cases (near duplicates, ties, crowd objects, classes without objects, > 100
    /// detections of a class in an image, inverted boxes, placeholders) scored by pycocotools
    /// 2.0.11 — see Fixtures/README.md. 1e-5 is the bound; coordinates and scores are
    /// float32 values, so both compute the same IoUs and orders, and what is left is APResult's
    /// rounding to Float (≤ 6e-8) and summation order (~1e-16); one detection matched
    /// differently moves a class's AP by far more in cases this small.
    func testMatchesPycocotoolsOnGeneratedCases() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/coco_cases.json")
        let fixture = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 8)
        var worst = 0.0
        for (n, entry) in cases.enumerated() {
            let file = try EvaluationFile(data: JSONSerialization.data(withJSONObject: entry), path: "case \(n)")
            let classes = try XCTUnwrap(entry["classes"] as? Int)
            let expected = try XCTUnwrap(entry["expected"] as? [String: Any])
            let result = try coco(file.truths, file.detections, classes: classes)
            let mAP = try XCTUnwrap(expected["AP"] as? Double)
            XCTAssertEqual(Double(result.meanAveragePrecision), mAP, accuracy: 1e-5, "case \(n)")
            worst = max(worst, abs(Double(result.meanAveragePrecision) - mAP))
            let aps = try XCTUnwrap(expected["APs"] as? [Any])
            XCTAssertEqual(aps.count, classes)
            for (k, ap) in aps.enumerated() {
                let ours = result.averagePrecisions[k]
                if let ap = ap as? Double {
                    let mine = try XCTUnwrap(ours, "case \(n) class \(k + 1): pycocotools evaluates it")
                    XCTAssertEqual(Double(mine), ap, accuracy: 1e-5, "case \(n) class \(k + 1)")
                    worst = max(worst, abs(Double(mine) - ap))
                } else {
                    XCTAssertNil(ours, "case \(n) class \(k + 1): pycocotools leaves it out")
                }
            }
        }
        report("coco_cases worst |AP − pycocotools|", worst)
    }
}
