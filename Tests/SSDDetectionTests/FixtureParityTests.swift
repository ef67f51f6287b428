import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// Parity with the reference PyTorch implementation, on `../shared/fixtures/ssd300/`.
/// Nothing here depends on the particular values of the fixture: every expectation is
/// computed from the fixture's inputs (photos, weights, ground truth) by our code and compared
/// with the reference's outputs for those inputs.
final class FixtureParityTests: XCTestCase {
    let harness = ParityHarness(directory: "ssd300", kind: .ssd300)
    func loadCase() throws -> ParityHarness.Case { try harness.loadCase() }
    func makeModel(_ c: ParityHarness.Case, algorithm: ConvolutionAlgorithm = .direct) throws -> SSDModel { try harness.makeModel(c, algorithm: algorithm) }

    func testPriorsMatchReference() throws {
        let c = try loadCase()
        let priors = Priors.centreSize()
        let expected = try c.file.tensor("priors_cxcy")
        XCTAssertEqual(priors.count, 8732 * 4)
        let d = maxDifference(priors, expected.array)
        report("priors max abs error", d.absolute)
        XCTAssertLessThanOrEqual(d.absolute, 1e-6)
    }

    func testDecodeMatchesReference() throws {
        let c = try loadCase()
        let locs = try c.file.tensor("locs")
        let decoded = Boxes.cxcyToXy(Boxes.decode(locs.data, count: 8732, priors: Priors.centreSize()))
        let d = maxDifference(decoded, try c.file.tensor("decoded_xy_0").array)
        report("decoded_xy_0 max abs error", d.absolute)
        XCTAssertLessThanOrEqual(d.absolute, 1e-5)
    }

    func testMatchingTargetsMatchReference() throws {
        let c = try loadCase()
        let loss = MultiBoxLoss(priorsCxcy: Priors.centreSize())
        for (i, truth) in c.truths.enumerated() {
            let targets = loss.match(truth)
            let classes = try c.file.integers("true_classes_\(i)").values.map { Int($0) }
            XCTAssertEqual(targets.classes, classes, "true_classes_\(i)")
            let d = maxDifference(targets.locations, try c.file.tensor("true_locs_\(i)").array)
            report("true_locs_\(i) max abs error", d.absolute)
            XCTAssertLessThanOrEqual(d.absolute, 1e-4, "true_locs_\(i)")
        }
    }

    func testLossAndOutputGradientsMatchReference() throws {
        let c = try loadCase()
        let locs = try c.file.tensor("locs"), scores = try c.file.tensor("scores")
        let loss = MultiBoxLoss(priorsCxcy: Priors.centreSize())
        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let value = try loss.compute(locs: locs, scores: scores, truths: c.truths, gradLocs: gl, gradScores: gs)
        let expected = try c.file.tensor("loss").array[0]
        report("loss (reference outputs) relative error", abs(value - expected) / abs(expected))
        XCTAssertLessThanOrEqual(abs(value - expected) / abs(expected), 1e-4)
        let dl = maxDifference(gl, try c.file.tensor("grad_locs")), ds = maxDifference(gs, try c.file.tensor("grad_scores"))
        report("grad_locs max rel error", dl.relative)
        report("grad_scores max rel error", ds.relative)
        XCTAssertLessThanOrEqual(dl.relative, 1e-3)
        XCTAssertLessThanOrEqual(ds.relative, 1e-3)
    }

    func testForwardDirectMatchesReference() throws { try harness.checkForward(.direct, bound: ParityHarness.directBound) }

    func testForwardWinogradMatchesReference() throws { try harness.checkForward(.winograd, bound: ParityHarness.winogradBound) }

    func testTrainingDirectMatchesReference() throws { try harness.checkTraining(.direct, bound: ParityHarness.directBound) }

    func testTrainingWinogradMatchesReference() throws {
        try harness.checkTraining(.winograd, bound: ParityHarness.winogradBound, gradientBound: ParityHarness.winogradGradientBound)
    }

    func testWeightsWithWrongClassCountAreRejected() throws {
        let c = try loadCase()
        let model = try SSDModel(.ssd300, classCount: 5)
        XCTAssertThrowsError(try model.load(c.weights)) { error in
            XCTAssertTrue("\(error)".contains("pred_convs.cl_conv4_3"), "\(error)")
        }
    }
}

extension FixtureParityTests {
    /// A saved model has exactly the reference state_dict's keys and shapes (those of the
    /// fixture weights, written by PyTorch), so `load_state_dict(load_file(...))` accepts it.
    func testSavedWeightsHaveTheReferenceStateDictKeys() throws {
        let c = try loadCase()
        let model = try makeModel(c)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-save-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        try model.save(to: url)
        let saved = try SafetensorsFile(url: url)
        XCTAssertEqual(saved.names, c.weights.names)
        for name in saved.names {
            XCTAssertEqual(saved.entries[name]?.shape, c.weights.entries[name]?.shape, name)
            XCTAssertEqual(saved.entries[name]?.dtype, .float32)
        }
        XCTAssertEqual(saved.metadata["n_classes"], "21")
        XCTAssertEqual(try saved.tensor("base.conv5_2.weight").array, try c.weights.tensor("base.conv5_2.weight").array)
    }
}
