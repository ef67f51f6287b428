import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// The parity checks of a model in the tutorial's conventions against its fixture directory
/// (`ssd300/`, `ssd512/`): forward, loss, every gradient, three SGD steps, judged against the
/// float64 truth with bounds drawn from PyTorch float32's own error. Test classes call these.
struct ParityHarness {
    let directory: String
    let kind: ModelKind

    /// The case file, the weights, and a model loaded with them — shared by the tests.
    struct Case {
        let file: SafetensorsFile
        let weights: SafetensorsFile
        let truths: [GroundTruth]
        let json: [String: Any]
    }

    nonisolated(unsafe) static var cached: [String: Case] = [:]

    func loadCase() throws -> Case {
        if let c = Self.cached[directory] { return c }
        guard let caseURL = Fixtures.url("\(directory)/case.safetensors"), let weightsURL = Fixtures.url("\(directory)/weights_f16.safetensors"),
              let jsonURL = Fixtures.url("\(directory)/case.json")
        else { throw XCTSkip("\(kind) fixtures not found in \(directory): set SSD_FIXTURES or place shared/ beside the checkout") }
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
        Self.cached[directory] = c
        return c
    }

    func makeModel(_ c: Case, algorithm: ConvolutionAlgorithm = .direct) throws -> SSDModel {
        let classes = c.weights.entries["pred_convs.cl_conv4_3.bias"]!.shape[0] / 4
        let model = try SSDModel(kind, classCount: classes, algorithm: algorithm)
        try model.load(c.weights)
        return model
    }


    /// Direct convolution against the float64 truth: within 5× PyTorch float32's own error for
    /// each quantity. PyTorch runs direct convolutions too, with other summation orders; on the
    /// AVX2 dispatch oneDNN's kernels sum the 4608 products of a 3×3×512 window in one chain
    /// and land at 4.1× (scores) and 4.4× (their gradient), so 4× is not enough there.
    public static let directBound = ParityBound(factor: 5, floor: 1e-6)
    /// Winograd F(4,3) trades a little accuracy for speed: within 10× PyTorch's error.
    public static let winogradBound = ParityBound(factor: 10, floor: 1e-5)
    /// Winograd's parameter gradients: the forward's extra error flips the ReLU mask of a unit
    /// that sits within it of zero, and the gradient is discontinuous there, so per-tensor
    /// multiples of PyTorch's error do not apply. Measured (oneDNN's AVX-512 Winograd and ours
    /// alike): of conv7's 1024 bias gradients, channel 1014 is 3.0e-3 off and every other within
    /// 4.6e-7 (PyTorch: 2.8e-7) — one flipped unit, whose gradient then spreads through conv6 and
    /// conv5_3 (≤ 5.1e-4). Judged by the relative error a training step tolerates.
    public static let winogradGradientBound = ParityBound(factor: 0, floor: 1e-2)

    func loadTruth() throws -> Float64Truth {
        guard let truth = try Float64Truth.load(directory) else {
            throw XCTSkip("\(kind) float64 fixtures not found in \(directory): set SSD_FIXTURES or place shared/ beside the checkout")
        }
        return truth
    }

    /// The second, looser check against PyTorch's float32 run: by the triangle inequality
    /// within our bound to the truth plus PyTorch's own distance from it.
    func checkAgainstFloat32(_ c: Case, _ key: String, _ ours: Tensor, _ measure: ParityMeasure, label: String) throws {
        let d = maxDifference(ours, try c.file.tensor(key))
        XCTAssertLessThanOrEqual(Double(d.relative), measure.bound + measure.pytorchError * 1.01 + 1e-7,
                                 "\(label) \(key) against PyTorch float32")
    }

    func checkForward(_ algorithm: ConvolutionAlgorithm, bound: ParityBound) throws {
        let c = try loadCase(), truth = try loadTruth()
        let model = try makeModel(c, algorithm: algorithm)
        let images = try c.file.tensor("images")
        let (locs, scores) = try model.forward(images)
        var measures: [ParityMeasure] = []
        for (key, ours) in [("locs", locs), ("scores", scores)] {
            let m = try truth.judge(key, ours, bound, label: "\(algorithm)")
            try checkAgainstFloat32(c, key, ours, m, label: "\(algorithm)")
            measures.append(m)
        }
        reportParity("forward \(algorithm)", measures)
    }

    /// Forward, loss, backward: every gradient the fixture holds and every gradient norm; then
    /// three SGD steps: the losses before each and the parameters after. Judged against the
    /// float64 truth with `bound`, and against PyTorch's float32 run more loosely.
    func checkTraining(_ algorithm: ConvolutionAlgorithm, bound: ParityBound, gradientBound: ParityBound? = nil) throws {
        let c = try loadCase(), truth = try loadTruth()
        let model = try makeModel(c, algorithm: algorithm)
        let images = try c.file.tensor("images")
        let loss = MultiBoxLoss(priorsCxcy: model.priorsCxcy)
        let priors = model.priorsCxcy.count / 4
        let gl = Tensor(shape: [images.dim(0), priors, 4]), gs = Tensor(shape: [images.dim(0), priors, model.classCount])
        let label = "\(algorithm)"
        var measures: [ParityMeasure] = []

        model.zeroGrad()
        let (locs, scores) = try model.forward(images)
        let value = try loss.compute(locs: locs, scores: scores, truths: c.truths, gradLocs: gl, gradScores: gs)
        // The loss before the first SGD step is this loss, kept in full float64 in the JSON.
        let exactLoss = try XCTUnwrap(truth.sgdLosses.first, "sgd_losses_f64")
        measures.append(truth.check("loss", error: abs(Double(value) - exactLoss) / abs(exactLoss), bound, label: label))
        try model.backward(gradLocs: gl, gradScores: gs)
        for (key, ours) in [("grad_locs", gl), ("grad_scores", gs)] {
            let m = try truth.judge(key, ours, bound, label: label)
            try checkAgainstFloat32(c, key, ours, m, label: label)
            measures.append(m)
        }
        var checked = 0
        for name in truth.file.names where name.hasPrefix("grad.") {
            let p = try XCTUnwrap(model.parameter(named: String(name.dropFirst(5))), name)
            let m = try truth.judge(name, p.grad, gradientBound ?? bound, label: label)
            try checkAgainstFloat32(c, name, p.grad, m, label: label)
            measures.append(m)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 40, "gradients compared")
        // Norms of every gradient (the fixture stores only the smaller tensors): PyTorch's
        // float32 norms, within the loosest bound of a stored gradient plus its error.
        let worstGradient = measures.filter { $0.key.hasPrefix("grad.") }.map { $0.bound + $0.pytorchError }.max() ?? 0
        let norms = c.json["grad_norms"] as? [String: Double] ?? [:]
        if !norms.isEmpty { XCTAssertEqual(norms.count, model.parameters.count, "a norm for every parameter") }
        var worstNorm = 0.0
        for (name, expected) in norms {
            let p = try XCTUnwrap(model.parameter(named: name), name)
            let norm = p.grad.squaredNorm().squareRoot()
            let error = expected == 0 ? norm : abs(norm - expected) / expected
            worstNorm = max(worstNorm, error)
            XCTAssertLessThanOrEqual(error, worstGradient, "gradient norm of \(name): \(norm) vs \(expected)")
        }
        report("gradient norms (\(algorithm)) worst relative error against PyTorch f32", worstNorm)

        // Three SGD steps, as the fixture: lr 1e-3, biases 2e-3, momentum 0.9, wd 5e-4.
        let model2 = try makeModel(c, algorithm: algorithm)
        let sgd = SGD(parameters: model2.parameters, configuration: SGDConfiguration(learningRate: 1e-3))
        var losses: [Double] = []
        for _ in 0..<truth.sgdLosses.count {
            sgd.zeroGrad()
            let (l, s) = try model2.forward(images)
            losses.append(Double(try loss.compute(locs: l, scores: s, truths: c.truths, gradLocs: gl, gradScores: gs)))
            try model2.backward(gradLocs: gl, gradScores: gs)
            sgd.step()
        }
        let scale = truth.sgdLosses.map(abs).max() ?? 1
        let lossError = zip(losses, truth.sgdLosses).map { abs($0 - $1) }.max() ?? .infinity
        measures.append(truth.check("sgd_losses", error: lossError / scale, bound, label: label))
        report("sgd losses (\(algorithm))", "\(losses) vs f64 \(truth.sgdLosses)")
        // After three steps every parameter carries the divergence of the whole trajectory: the
        // L1 localisation gradient is a sign, so one residual that crossed zero on the way
        // moves a whole head's biases by a step. PyTorch's own error on a tensor then says
        // whether *its* run happened to cross, not how much noise that tensor has; so each is
        // bounded by PyTorch's worst error over its module (base, aux_convs, pred_convs).
        let after3 = truth.pytorchError.filter { $0.key.hasPrefix("after3.param.") }
        func module(_ key: String) -> String { String(key.dropFirst(13).prefix { $0 != "." }) }
        checked = 0
        for name in truth.file.names where name.hasPrefix("after3.param.") {
            let p = try XCTUnwrap(model2.parameter(named: String(name.dropFirst(13))), name)
            let moduleError = after3.filter { module($0.key) == module(name) }.map(\.value).max()
            let m = try truth.judge(name, p.value, gradientBound ?? bound, boundFrom: moduleError, label: label)
            try checkAgainstFloat32(c, name, p.value, m, label: label)
            measures.append(m)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 40, "parameters compared after three steps")
        reportParity("training \(algorithm)", measures)
    }
}
