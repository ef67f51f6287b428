import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

final class DetectorTests: XCTestCase {
    /// Our detections from the fixture's raw outputs equal the reference's, as sets.
    func testDetectionsMatchReference() throws {
        guard let url = Fixtures.url("ssd300/case.safetensors") else { throw XCTSkip("SSD300 fixtures not found") }
        let file = try SafetensorsFile(url: url)
        let locs = try file.tensor("locs"), scores = try file.tensor("scores")
        for (name, settings) in [("eval", DetectionSettings()), ("demo", DetectionSettings.demo)] {
            let ours = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: Priors.centreSize(), settings: settings)
            var worstBox: Float = 0, worstScore: Float = 0
            for i in 0..<locs.dim(0) {
                let boxes = try file.tensor("det_\(name)_boxes_\(i)").array
                let labels = try file.integers("det_\(name)_labels_\(i)").values.map { Int($0) }
                let expectedScores = try file.tensor("det_\(name)_scores_\(i)").array
                XCTAssertEqual(ours[i].count, labels.count, "det_\(name) image \(i): number of detections")
                var unmatched = Array(ours[i].indices)
                for e in labels.indices {
                    let box = Array(boxes[(4 * e)..<(4 * e + 4)])
                    // The closest of ours with the same label.
                    let best = unmatched.filter { ours[i][$0].label == labels[e] }.min { a, b in
                        maxDifference(ours[i][a].box.array, box).absolute + abs(ours[i][a].score - expectedScores[e])
                            < maxDifference(ours[i][b].box.array, box).absolute + abs(ours[i][b].score - expectedScores[e])
                    }
                    guard let j = best else { XCTFail("det_\(name) image \(i): no detection of label \(labels[e])"); continue }
                    worstBox = max(worstBox, maxDifference(ours[i][j].box.array, box).absolute)
                    worstScore = max(worstScore, abs(ours[i][j].score - expectedScores[e]))
                    unmatched.removeAll { $0 == j }
                }
            }
            report("det_\(name) worst box difference", worstBox)
            report("det_\(name) worst score difference", worstScore)
            XCTAssertLessThanOrEqual(worstBox, 1e-5)
            XCTAssertLessThanOrEqual(worstScore, 1e-6)
        }
    }

    func testNonMaximumSuppressionKeepsTheBestOfOverlappingBoxes() throws {
        // Two priors at the same place, one far away; class 1 scores 0.9, 0.8, 0.7.
        let priors: [Float] = [0.3, 0.3, 0.2, 0.2, 0.31, 0.3, 0.2, 0.2, 0.8, 0.8, 0.2, 0.2]
        let locs = Tensor(shape: [1, 3, 4])
        let logits: [Float] = [0, 0.9, 0, 0.8, 0, 0.7].map { $0 == 0 ? 0 : log($0 / (1 - $0)) }
        let scores = try Tensor(shape: [1, 3, 2], values: logits)
        let found = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: priors,
                                               settings: DetectionSettings(minScore: 0.5, maxOverlap: 0.5, topK: 10))[0]
        XCTAssertEqual(found.map(\.label), [1, 1])
        XCTAssertEqual(found[0].score, 0.9, accuracy: 1e-6)
        XCTAssertEqual(found[1].score, 0.7, accuracy: 1e-6)
        let nothing = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: priors,
                                                 settings: DetectionSettings(minScore: 0.95))[0]
        XCTAssertEqual(nothing, [Detection(box: Box(0, 0, 1, 1), label: 0, score: 0)])
        let top1 = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: priors,
                                              settings: DetectionSettings(minScore: 0.5, maxOverlap: 1, topK: 1))[0]
        XCTAssertEqual(top1.count, 1)
        XCTAssertEqual(top1[0].score, 0.9, accuracy: 1e-6)
    }
}
