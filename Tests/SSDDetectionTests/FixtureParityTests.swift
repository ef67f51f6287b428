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
    /// The case file, the weights, and a model loaded with them — shared by the tests.
    struct Case {
        let file: SafetensorsFile
        let weights: SafetensorsFile
        let truths: [GroundTruth]
        let json: [String: Any]
    }

    nonisolated(unsafe) static var cached: Case?

    func loadCase() throws -> Case {
        if let c = Self.cached { return c }
        guard let caseURL = Fixtures.url("ssd300/case.safetensors"), let weightsURL = Fixtures.url("ssd300/weights_f16.safetensors"),
              let jsonURL = Fixtures.url("ssd300/case.json")
        else { throw XCTSkip("SSD300 fixtures not found: set SSD_FIXTURES or place shared/ beside the checkout") }
        let file = try SafetensorsFile(url: caseURL)
        var truths: [GroundTruth] = []
        var i = 0
        while file.entries["gt_boxes_\(i)"] != nil {
            let boxes = try file.tensor("gt_boxes_\(i)").array
            let labels = try file.integers("gt_labels_\(i)").values.map { Int($0) }
            truths.append(GroundTruth(boxes: boxes, labels: labels))
            i += 1
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as! [String: Any]
        let c = Case(file: file, weights: try SafetensorsFile(url: weightsURL), truths: truths, json: json)
        Self.cached = c
        return c
    }

    func makeModel(_ c: Case, algorithm: ConvolutionAlgorithm = .direct) throws -> SSD300 {
        let classes = c.weights.entries["pred_convs.cl_conv4_3.bias"]!.shape[0] / 4
        let model = SSD300(classCount: classes, algorithm: algorithm)
        try model.load(c.weights)
        return model
    }

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

    func checkForward(_ algorithm: ConvolutionAlgorithm, tolerance: Float) throws {
        let c = try loadCase()
        let model = try makeModel(c, algorithm: algorithm)
        let images = try c.file.tensor("images")
        let (locs, scores) = try model.forward(images)
        let dl = maxDifference(locs, try c.file.tensor("locs")), ds = maxDifference(scores, try c.file.tensor("scores"))
        report("forward \(algorithm) locs max error relative to scale", dl.relative)
        report("forward \(algorithm) scores max error relative to scale", ds.relative)
        XCTAssertLessThanOrEqual(dl.relative, tolerance)
        XCTAssertLessThanOrEqual(ds.relative, tolerance)
    }

    func testForwardDirectMatchesReference() throws { try checkForward(.direct, tolerance: 1e-4) }

    func testForwardWinogradMatchesReference() throws { try checkForward(.winograd, tolerance: 1e-3) }

    /// Forward, loss, backward: every `grad.*` tensor and every gradient norm; then three SGD
    /// steps: the losses before each and the parameters after.
    func checkTraining(_ algorithm: ConvolutionAlgorithm, tolerance: Float) throws {
        let c = try loadCase()
        let model = try makeModel(c, algorithm: algorithm)
        let images = try c.file.tensor("images")
        let loss = MultiBoxLoss(priorsCxcy: model.priorsCxcy)
        let gl = Tensor(shape: [images.dim(0), 8732, 4]), gs = Tensor(shape: [images.dim(0), 8732, model.classCount])

        model.zeroGrad()
        let (locs, scores) = try model.forward(images)
        let value = try loss.compute(locs: locs, scores: scores, truths: c.truths, gradLocs: gl, gradScores: gs)
        let expectedLoss = try c.file.tensor("loss").array[0]
        report("loss (\(algorithm) forward) relative error", abs(value - expectedLoss) / expectedLoss)
        XCTAssertLessThanOrEqual(abs(value - expectedLoss) / expectedLoss, tolerance)
        try model.backward(gradLocs: gl, gradScores: gs)

        var worstTensor: Float = 0
        for name in c.file.names where name.hasPrefix("grad.") {
            let p = try XCTUnwrap(model.parameter(named: String(name.dropFirst(5))), name)
            let d = maxDifference(p.grad, try c.file.tensor(name))
            worstTensor = max(worstTensor, d.relative)
            XCTAssertLessThanOrEqual(d.relative, tolerance, name)
        }
        report("grad.* (\(algorithm)) worst max error relative to scale", worstTensor)
        let norms = try XCTUnwrap(c.json["grad_norms"] as? [String: Double])
        XCTAssertEqual(norms.count, model.parameters.count, "a norm for every parameter")
        var worstNorm = 0.0
        for (name, expected) in norms {
            let p = try XCTUnwrap(model.parameter(named: name), name)
            let norm = p.grad.squaredNorm().squareRoot()
            let error = expected == 0 ? norm : abs(norm - expected) / expected
            worstNorm = max(worstNorm, error)
            XCTAssertLessThanOrEqual(error, Double(tolerance), "gradient norm of \(name): \(norm) vs \(expected)")
        }
        report("gradient norms (\(algorithm)) worst relative error", worstNorm)

        // Three SGD steps, as the fixture: lr 1e-3, biases 2e-3, momentum 0.9, wd 5e-4.
        let model2 = try makeModel(c, algorithm: algorithm)
        let sgd = SGD(parameters: model2.parameters, configuration: SGDConfiguration(learningRate: 1e-3))
        let expectedLosses = try c.file.tensor("sgd_losses").array
        for step in 0..<expectedLosses.count {
            sgd.zeroGrad()
            let (l, s) = try model2.forward(images)
            let v = try loss.compute(locs: l, scores: s, truths: c.truths, gradLocs: gl, gradScores: gs)
            report("sgd loss \(step) (\(algorithm)) relative error", abs(v - expectedLosses[step]) / expectedLosses[step])
            XCTAssertLessThanOrEqual(abs(v - expectedLosses[step]) / expectedLosses[step], tolerance, "sgd_losses[\(step)]")
            try model2.backward(gradLocs: gl, gradScores: gs)
            sgd.step()
        }
        var worstAfter: Float = 0
        var checked = 0
        for name in c.file.names where name.hasPrefix("after3.param.") {
            let p = try XCTUnwrap(model2.parameter(named: String(name.dropFirst(13))), name)
            let d = maxDifference(p.value, try c.file.tensor(name))
            worstAfter = max(worstAfter, d.relative)
            XCTAssertLessThanOrEqual(d.relative, tolerance, name)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
        report("after3.param.* (\(algorithm)) worst max error relative to scale", worstAfter)
    }

    func testTrainingDirectMatchesReference() throws { try checkTraining(.direct, tolerance: 1e-3) }

    func testTrainingWinogradMatchesReference() throws { try checkTraining(.winograd, tolerance: 1e-2) }

    func testWeightsWithWrongClassCountAreRejected() throws {
        let c = try loadCase()
        let model = SSD300(classCount: 5)
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
            XCTAssertEqual(saved.entries[name]?.dtype, "F32")
        }
        XCTAssertEqual(saved.metadata["n_classes"], "21")
        XCTAssertEqual(try saved.tensor("base.conv5_2.weight").array, try c.weights.tensor("base.conv5_2.weight").array)
    }
}
