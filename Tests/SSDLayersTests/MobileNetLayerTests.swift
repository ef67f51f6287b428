import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// Finite-difference checks of the layers MobileNetV3-Large and SSDLite need: depthwise
/// convolutions with and without bias, the hard activations on convolutions and batch
/// normalisation, squeeze-and-excitation, and the Sequential and Residual composites.
final class MobileNetLayerTests: XCTestCase {
    let backend = DNNLBackend()

    /// A tensor of `shape` in `layout` with seeded normal values scaled by `std`.
    func random(_ shape: [Int], layout: ActivationLayout = .nchw, seed: UInt64, std: Float = 1) throws -> Tensor {
        let plain = randomTensor(shape, seed: seed, std: std)
        let t = Tensor(shape: shape, layout: layout)
        try backend.reorder(plain, into: t)
        return t
    }

    /// Checks d loss/d x and d loss/d p for every p in `parameters`, loss = Σ r·layer(x).
    func checkLayer(_ label: String, _ layer: Layer, x: Tensor, parameters: [Parameter]? = nil, epsilon: Float = 1e-2,
                    tolerance: Double = 1e-3, file: StaticString = #filePath, line: UInt = #line) throws {
        let y = try layer.forward(x)
        let r = try random(y.shape, layout: y.layout, seed: 77)
        layer.zeroGrad()
        let dx = Tensor(shape: x.shape, layout: x.layout)
        try layer.backward(input: x, outputGrad: r.clone(), inputGrad: dx)
        let loss = { weightedSum(try layer.forward(x), r) }
        try checkGradient("\(label) input", x: x, analytic: dx, epsilon: epsilon, tolerance: tolerance, file: file, line: line,
                          loss: loss)
        for p in parameters ?? layer.parameters {
            try checkGradient("\(label) \(p.name)", x: p.value, analytic: p.grad, epsilon: epsilon, tolerance: tolerance,
                              file: file, line: line, loss: loss)
        }
    }

    /// Where f′ jumps.
    static func kinks(_ a: Activation) -> [Float] {
        switch a {
        case .none: return []
        case .relu: return [0]
        case .relu6: return [0, 6]
        case .hardswish, .hardsigmoid: return [-3, 3]
        }
    }

    /// An input whose pre-activations `plain(x)` all lie at least `margin` from `kinks`, from
    /// the first of 60 seeds that gives one (nil if none does): finite differences across a
    /// kink measure the jump, not the gradient, and γ, β and weights move many values at once.
    func inputAwayFromKinks(_ shape: [Int], layout: ActivationLayout, seed: UInt64, std: Float = 1, kinks: [Float],
                            margin: Float = 5e-3, plain: (Tensor) throws -> Tensor) throws -> Tensor? {
        for s in seed..<(seed + 60) {
            let x = try random(shape, layout: layout, seed: s, std: std)
            let z = try plain(x)
            if z.array.allSatisfy({ v in kinks.allSatisfy { abs(v - $0) >= margin } }) { return x }
        }
        return nil
    }

    func makeConv(_ name: String, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1, groups: Int = 1, bias: Bool = true,
                  activation: Activation = .none, layout: ActivationLayout = .nchw) -> Conv2D {
        let conv = Conv2D(name: name, inputChannels: cin, outputChannels: cout, kernelSize: kernel, stride: stride,
                          padding: kernel / 2, groups: groups, bias: bias, activation: activation, outputLayout: layout,
                          backend: backend)
        var rng = SeededRandom(seed: UInt64(cin * 31 + cout * 7 + kernel))
        Initializer.heNormal(conv.weight.value, rng: &rng)
        if let b = conv.bias { rng.fillUniform(b.value, -0.5, 0.5) }
        return conv
    }

    func makeBatchNorm(_ name: String, _ channels: Int, activation: Activation = .none, training: Bool = true) -> BatchNorm2D {
        let bn = BatchNorm2D(name: name, channels: channels, epsilon: 0.001, momentum: 0.03, activation: activation)
        var rng = SeededRandom(seed: UInt64(channels))
        // γ up to 3, so hardswish and hardsigmoid see their saturated ranges too.
        rng.fillUniform(bn.weight.value, 0.5, 3)
        rng.fillUniform(bn.bias.value, -0.5, 0.5)
        rng.fillUniform(bn.runningMean, -0.2, 0.2)
        rng.fillUniform(bn.runningVariance, 0.5, 2)
        bn.isTraining = training
        return bn
    }

    func testDepthwiseConvolutionGradients() throws {
        for (layout, channels) in [(ActivationLayout.nchw, 6), (.blocked(8), 16), (.blocked(16), 16)] {
            for (kernel, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
                for bias in [true, false] {
                    let conv = makeConv("dw", channels, channels, kernel: kernel, stride: stride, groups: channels, bias: bias,
                                        layout: layout)
                    XCTAssertEqual(conv.parameters.map(\.name), bias ? ["dw.weight", "dw.bias"] : ["dw.weight"])
                    XCTAssertEqual(conv.weight.shape, [channels, 1, kernel, kernel])
                    let x = try random([2, channels, 7, 6], layout: layout, seed: 5)
                    try checkLayer("depthwise k\(kernel) s\(stride) \(layout)\(bias ? "" : " no bias")", conv, x: x)
                }
            }
        }
        // A grouped (not depthwise) convolution with a channel multiplier.
        let grouped = makeConv("g", 4, 8, kernel: 3, groups: 2)
        try checkLayer("grouped 4→8 g2", grouped, x: try random([1, 4, 5, 5], seed: 6))
    }

    func testConvolutionActivations() throws {
        for activation in [Activation.relu6, .hardswish, .hardsigmoid] {
            for layout in [ActivationLayout.nchw, .blocked(8)] {
                let conv = makeConv("c", 8, 8, kernel: 3, bias: false, activation: activation, layout: layout)
                let plain = makeConv("c", 8, 8, kernel: 3, bias: false, layout: layout)
                plain.weight.value.copy(from: conv.weight.value)
                // Inputs scaled so the outputs reach the saturated ranges.
                let x = try XCTUnwrap(inputAwayFromKinks([1, 8, 5, 5], layout: layout, seed: 8, std: 2,
                                                         kinks: Self.kinks(activation)) { try plain.forward($0) })
                try checkLayer("conv \(activation) \(layout)", conv, x: x, epsilon: 1e-3, tolerance: 3e-3)
                // The output is the activation of the plain convolution, bit for bit.
                let z = try plain.forward(x), y = try conv.forward(x)
                XCTAssertEqual(y.array, z.array.map { activation.function!.apply($0) }, "\(activation)")
            }
        }
        XCTAssertThrowsError(try makeConv("bad", 6, 4, kernel: 3, groups: 4).forward(try random([1, 6, 5, 5], seed: 1)))
    }

    func testBatchNormActivationsGradients() throws {
        let cases: [(Int, ActivationLayout)] = [(24, .nchw), (72, .nchw), (16, .blocked(8)), (16, .blocked(16))]
        for activation in Activation.allCases {
            for (channels, layout) in cases {
                for training in [true, false] {
                    let bn = makeBatchNorm("bn", channels, activation: activation, training: training)
                    let plain = makeBatchNorm("bn", channels, training: training)
                    let savedMean = bn.runningMean.clone(), savedVariance = bn.runningVariance.clone()
                    let label = "batchnorm \(activation) \(channels) \(layout) \(training ? "train" : "eval")"
                    // γ and β move whole channels at once: they are checked on inputs whose
                    // normalised values keep clear of the kinks. With a clamp at 0 (ReLU, ReLU6)
                    // on many channels there is no such input; then only the input gradient is.
                    let clear = try inputAwayFromKinks([2, channels, 5, 3], layout: layout, seed: 4,
                                                       kinks: Self.kinks(activation)) { try plain.forward($0) }
                    let x = try clear ?? random([2, channels, 5, 3], layout: layout, seed: 4)
                    try checkLayer(label, bn, x: x, parameters: clear == nil ? [] : nil,
                                   epsilon: activation == .none ? 1e-2 : 1e-3, tolerance: 3e-3)
                    bn.runningMean.copy(from: savedMean)
                    bn.runningVariance.copy(from: savedVariance)
                    // y = f(batchnorm(x)) exactly.
                    let z = try plain.forward(x), y = try bn.forward(x)
                    XCTAssertEqual(y.array, z.array.map { activation.function?.apply($0) ?? $0 }, label)
                }
            }
        }
    }

    func testSqueezeExcitationGradients() throws {
        for (layout, channels) in [(ActivationLayout.nchw, 12), (.blocked(8), 16), (.blocked(16), 32)] {
            let se = SqueezeExcitation(name: "se", channels: channels, squeezeChannels: 8, backend: backend)
            var rng = SeededRandom(seed: 21)
            for p in se.parameters { rng.fillUniform(p.value, -0.6, 0.6) }
            let x = try random([2, channels, 5, 3], layout: layout, seed: 22)
            try checkLayer("squeeze-excitation \(layout)", se, x: x, epsilon: 1e-3, tolerance: 3e-3)
        }
        let se = SqueezeExcitation(name: "features.4.block.2", channels: 72, squeezeChannels: 24, backend: backend)
        XCTAssertEqual(se.parameters.map(\.name), ["features.4.block.2.fc1.weight", "features.4.block.2.fc1.bias",
                                                   "features.4.block.2.fc2.weight", "features.4.block.2.fc2.bias"])
        XCTAssertEqual(se.parameters.map(\.shape), [[24, 72, 1, 1], [24], [72, 24, 1, 1], [72]])
    }

    /// fc2 with zero weights: s = hardsigmoid(b2) whatever the input, so y = x·hardsigmoid(b2).
    func testSqueezeExcitationForwardDefinition() throws {
        let se = SqueezeExcitation(name: "se", channels: 2, squeezeChannels: 2, backend: backend)
        try se.fc2.bias.value.copy(from: Tensor(shape: [2], values: [1.5, -4]))
        let x = try random([1, 2, 3, 3], seed: 3)
        let y = try se.forward(x)
        for i in 0..<9 {
            XCTAssertEqual(y.data[i], x.data[i] * 0.75)
            XCTAssertEqual(y.data[9 + i], 0)
        }
    }

    /// MobileNetV3's inverted residual with SE (expand 1×1, depthwise, SE, project 1×1), with
    /// the skip, in NCHW and blocked.
    func makeBlock(_ prefix: String, channels: Int, expanded: Int, layout: ActivationLayout, training: Bool,
                   activation: Activation = .hardswish) -> Sequential {
        Sequential([
            makeConv(prefix + ".0.0", channels, expanded, kernel: 1, bias: false, layout: layout),
            makeBatchNorm(prefix + ".0.1", expanded, activation: activation, training: training),
            makeConv(prefix + ".1.0", expanded, expanded, kernel: 3, groups: expanded, bias: false, layout: layout),
            makeBatchNorm(prefix + ".1.1", expanded, activation: activation, training: training),
            SqueezeExcitation(name: prefix + ".2", channels: expanded, squeezeChannels: 8, backend: backend),
            makeConv(prefix + ".3.0", expanded, channels, kernel: 1, bias: false, layout: layout),
            makeBatchNorm(prefix + ".3.1", channels, training: training),
        ])
    }

    func testSequentialAndResidualGradients() throws {
        for (layout, channels, expanded) in [(ActivationLayout.nchw, 4, 12), (.blocked(8), 8, 16), (.blocked(16), 16, 32)] {
            for training in [true, false] {
                // Without the hard activations the chain is smooth but for SE's few ReLU and
                // hardsigmoid inputs: large steps, and parameters deep in the chain. With them,
                // small steps (few values cross a kink) and the input gradient only.
                for activation in [Activation.none, .hardswish] {
                    let body = makeBlock("b", channels: channels, expanded: expanded, layout: layout, training: training,
                                         activation: activation)
                    let x = try random([2, channels, 5, 4], layout: layout, seed: 31)
                    let label = "\(layout) \(activation) \(training ? "train" : "eval")"
                    let smooth = activation == .none
                    let eps: Float = smooth ? 1e-2 : 1e-3
                    try checkLayer("sequential \(label)", body, x: x, parameters: [], epsilon: eps, tolerance: 3e-3)
                    let block = Residual(body)
                    try checkLayer("residual \(label)", block, x: x,
                                   parameters: smooth ? [body.parameters[0], body.parameters[4], body.parameters[9]] : [],
                                   epsilon: eps, tolerance: 3e-3)
                }
            }
        }
    }

    func testCompositesForwardParametersAndModes() throws {
        let body = makeBlock("features.4.block", channels: 4, expanded: 12, layout: .nchw, training: true)
        let block = Residual(body)
        XCTAssertEqual(block.parameters.map(\.name), [
            "features.4.block.0.0.weight", "features.4.block.0.1.weight", "features.4.block.0.1.bias",
            "features.4.block.1.0.weight", "features.4.block.1.1.weight", "features.4.block.1.1.bias",
            "features.4.block.2.fc1.weight", "features.4.block.2.fc1.bias", "features.4.block.2.fc2.weight",
            "features.4.block.2.fc2.bias", "features.4.block.3.0.weight", "features.4.block.3.1.weight",
            "features.4.block.3.1.bias"])
        XCTAssertEqual(block.buffers.count, 6)
        XCTAssertEqual(block.buffers.first?.name, "features.4.block.0.1.running_mean")
        let x = try random([1, 4, 6, 6], seed: 41)
        // Residual: y = x + body(x); Sequential: the chain.
        let y = try block.forward(x).clone()
        var t = x
        for layer in body.layers { t = try layer.forward(t) }
        for i in 0..<x.count { XCTAssertEqual(y.data[i], x.data[i] + t.data[i]) }
        block.isTraining = false
        XCTAssertTrue(body.layers.allSatisfy { !$0.isTraining })
        // Gradients accumulate over backward calls and the caller's output gradient is left intact.
        block.isTraining = true
        try block.forward(x)
        block.zeroGrad()
        let r = try random(x.shape, seed: 42), saved = r.clone()
        try block.backward(input: x, outputGrad: r, inputGrad: nil)
        XCTAssertEqual(r.array, saved.array)
        let once = body.parameters[0].grad.clone()
        try block.backward(input: x, outputGrad: r, inputGrad: nil)
        for i in 0..<once.count { XCTAssertEqual(body.parameters[0].grad.data[i], 2 * once.data[i], accuracy: 1e-4) }
    }
}
