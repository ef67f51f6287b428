import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// SSD512 against `../shared/fixtures/ssd512/`: the tutorial's conventions with the paper's
/// 512 layout. The same checks and bounds as SSD300's (`FixtureParityTests`).
final class SSD512ParityTests: XCTestCase {
    let harness = ParityHarness(directory: "ssd512", kind: .ssd512)

    func testDescriptionHasThePapersLayout() throws {
        let d = ModelDescription.ssd512(classCount: 21)
        XCTAssertEqual(d.priorCount, 24564)
        XCTAssertEqual(d.sources.map(\.name), ["conv4_3", "conv7", "conv8_2", "conv9_2", "conv10_2", "conv11_2", "conv12_2"])
        XCTAssertEqual(d.sources.map(\.boxesPerLocation), [4, 6, 6, 6, 6, 4, 4])
        // Every tensor of the fixture's weights, no other, with its shape.
        let c = try harness.loadCase()
        let model = try harness.makeModel(c)
        XCTAssertEqual(Set(model.stateTensors.map(\.0)), Set(c.weights.names))
        for (name, tensor) in model.stateTensors { XCTAssertEqual(tensor.shape, c.weights.entries[name]?.shape, name) }
    }

    func testPriorsMatchReference() throws {
        let c = try harness.loadCase()
        let d = maxDifference(ModelDescription.ssd512(classCount: 21).priorsCxcy, try c.file.tensor("priors_cxcy").array)
        report("ssd512 priors max abs error", d.absolute)
        XCTAssertLessThanOrEqual(d.absolute, 1e-6)
    }

    func testForwardDirectMatchesReference() throws { try harness.checkForward(.direct, bound: ParityHarness.directBound) }

    func testForwardWinogradMatchesReference() throws { try harness.checkForward(.winograd, bound: ParityHarness.winogradBound) }

    func testTrainingDirectMatchesReference() throws { try harness.checkTraining(.direct, bound: ParityHarness.directBound) }

    /// Detections of our forward (direct) equal the reference's float32 run's, as sets.
    func testDetectionsMatchReference() throws {
        let c = try harness.loadCase()
        let model = try harness.makeModel(c)
        model.isTraining = false
        let (locs, scores) = try model.forward(try c.file.tensor("images"))
        for (name, settings) in [("eval", DetectionSettings()), ("demo", DetectionSettings.demo)] {
            let ours = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: model.priorsCxcy, settings: settings)
            var worstBox: Float = 0, worstScore: Float = 0, missing = 0, total = 0
            for i in 0..<locs.dim(0) {
                let boxes = try c.file.tensor("det_\(name)_boxes_\(i)").array
                let labels = try c.file.integers("det_\(name)_labels_\(i)").values.map { Int($0) }
                let expected = try c.file.tensor("det_\(name)_scores_\(i)").array
                var unmatched = Array(ours[i].indices)
                total += labels.count
                for e in labels.indices {
                    let box = Array(boxes[(4 * e)..<(4 * e + 4)])
                    let best = unmatched.filter { ours[i][$0].label == labels[e] }.min { a, b in
                        maxDifference(ours[i][a].box.array, box).absolute + abs(ours[i][a].score - expected[e])
                            < maxDifference(ours[i][b].box.array, box).absolute + abs(ours[i][b].score - expected[e])
                    }
                    guard let j = best, maxDifference(ours[i][j].box.array, box).absolute < 1e-3 else { missing += 1; continue }
                    worstBox = max(worstBox, maxDifference(ours[i][j].box.array, box).absolute)
                    worstScore = max(worstScore, abs(ours[i][j].score - expected[e]))
                    unmatched.removeAll { $0 == j }
                }
                // A detection on a threshold or NMS tie may differ; nothing else may.
                XCTAssertLessThanOrEqual(abs(ours[i].count - labels.count), 1, "det_\(name) image \(i): number of detections")
            }
            report("ssd512 det_\(name): \(total) reference detections, unmatched", missing)
            report("ssd512 det_\(name) worst box / score difference", "\(worstBox) / \(worstScore)")
            XCTAssertLessThanOrEqual(missing, 1, "det_\(name)")
            XCTAssertLessThanOrEqual(worstBox, 1e-4)
            XCTAssertLessThanOrEqual(worstScore, 1e-4)
        }
    }
}
