import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// Finite-difference checks of every layer's backward on small shapes.
final class GradientCheckTests: XCTestCase {
    let backend = DNNLBackend()

    func checkConv(_ name: String, inputShape: [Int], out: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                   dilation: Int = 1, activation: Activation = .none, layout: ActivationLayout = .nchw,
                   algorithm: ConvolutionAlgorithm = .direct) throws {
        let conv = Conv2D(name: name, inputChannels: inputShape[1], outputChannels: out, kernelSize: kernel, stride: stride,
                          padding: padding, dilation: dilation, activation: activation, outputLayout: layout,
                          algorithm: algorithm, backend: backend)
        var rng = SeededRandom(seed: 5)
        Initializer.heNormal(conv.weight.value, rng: &rng)
        rng.fillUniform(conv.bias.value, -0.5, 0.5)
        let plain = randomTensor(inputShape, seed: 6)
        let x = Tensor(shape: inputShape, layout: layout)
        try backend.reorder(plain, into: x)
        let r = Tensor(shape: try conv.outputShape(for: inputShape), layout: layout)
        var rr = SeededRandom(seed: 7)
        rr.fillNormal(r)
        try conv.forward(x)
        let dx = Tensor(shape: inputShape, layout: layout)
        try conv.backward(input: x, outputGrad: r.clone(), inputGrad: dx)
        let loss = { weightedSum(try conv.forward(x), r) }
        // Small steps with a ReLU, so that few outputs cross its kink.
        let eps: Float = activation == .relu ? 1e-3 : 1e-2
        try checkGradient("\(name) input", x: x, analytic: dx, epsilon: eps, loss: loss)
        try checkGradient("\(name) weight", x: conv.weight.value, analytic: conv.weight.grad, epsilon: eps, loss: loss)
        try checkGradient("\(name) bias", x: conv.bias.value, analytic: conv.bias.grad, epsilon: eps, loss: loss)
    }

    func testConv2DGradients() throws {
        try checkConv("conv3x3", inputShape: [2, 3, 7, 6], out: 4, kernel: 3, padding: 1)
        try checkConv("conv3x3 stride 2", inputShape: [1, 4, 9, 9], out: 5, kernel: 3, stride: 2, padding: 1)
        try checkConv("conv dilated", inputShape: [1, 3, 13, 13], out: 4, kernel: 3, padding: 6, dilation: 6)
        try checkConv("conv1x1", inputShape: [2, 6, 4, 4], out: 3, kernel: 1)
        try checkConv("conv3x3 winograd", inputShape: [1, 8, 8, 8], out: 8, kernel: 3, padding: 1, algorithm: .winograd)
        try checkConv("conv3x3 relu", inputShape: [2, 3, 6, 6], out: 4, kernel: 3, padding: 1, activation: .relu)
        try checkConv("conv3x3 relu nChw16c", inputShape: [1, 16, 6, 6], out: 32, kernel: 3, padding: 1, activation: .relu,
                      layout: .blocked(16))
        try checkConv("conv3x3 stride 2 relu nChw8c", inputShape: [1, 16, 9, 9], out: 16, kernel: 3, stride: 2, padding: 1,
                      activation: .relu, layout: .blocked(8))
        // Winograd with a fused ReLU in nChw16c is checked against the naive twin (BackendTwinTests):
        // its f32 rounding is too coarse for the small steps a ReLU's kink needs here.
    }

    func testConv2DAccumulatesParameterGradients() throws {
        let conv = Conv2D(name: "c", inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, backend: backend)
        var rng = SeededRandom(seed: 1)
        Initializer.xavierUniform(conv.weight.value, rng: &rng)
        let x = randomTensor([1, 2, 5, 5], seed: 2), r = randomTensor([1, 3, 5, 5], seed: 3)
        try conv.forward(x)
        try conv.backward(input: x, outputGrad: r, inputGrad: nil)
        let once = conv.weight.grad.clone()
        try conv.backward(input: x, outputGrad: r, inputGrad: nil)
        for i in 0..<once.count { XCTAssertEqual(conv.weight.grad.data[i], 2 * once.data[i], accuracy: 1e-4) }
    }

    func testMaxPoolGradients() throws {
        for (k, s, p, ceil, shape, layout) in [(2, 2, 0, false, [2, 3, 8, 8], ActivationLayout.nchw), (2, 2, 0, true, [1, 2, 7, 7], .nchw),
                                               (3, 1, 1, false, [1, 2, 5, 6], .nchw), (2, 2, 0, true, [1, 16, 5, 5], .blocked(16)), (2, 2, 0, true, [1, 8, 5, 5], .blocked(8))] {
            let pool = MaxPool2D(kernelSize: k, stride: s, padding: p, ceilMode: ceil, backend: backend)
            // Distinct values spaced well beyond epsilon, so no window's arg-max flips.
            let x = Tensor(shape: shape, layout: layout)
            var rng = SeededRandom(seed: 8)
            let perm = (0..<x.count).shuffled(using: &rng)
            for i in 0..<x.count { x.data[i] = Float(perm[i]) * 0.1 }
            let y = try pool.forward(x)
            let r = Tensor(shape: y.shape, layout: layout)
            var rr = SeededRandom(seed: 9)
            rr.fillNormal(r)
            let dx = Tensor(shape: shape, layout: layout)
            try pool.backward(outputGrad: r, inputGrad: dx)
            try checkGradient("maxpool k\(k) s\(s) p\(p)\(ceil ? " ceil" : "") \(layout)", x: x, analytic: dx, samples: x.count) {
                weightedSum(try pool.forward(x), r)
            }
        }
    }

    func testReLUGradient() throws {
        let relu = ReLU(backend: backend)
        let x = randomTensor([3, 50], seed: 10)
        for i in 0..<x.count where abs(x.data[i]) < 0.05 { x.data[i] = 0.5 }  // keep away from the kink
        let r = randomTensor([3, 50], seed: 11)
        let y = x.clone()
        try relu.forward(y)
        let g = r.clone()
        try relu.backward(output: y, grad: g)
        try checkGradient("relu", x: x, analytic: g, samples: x.count) {
            let t = x.clone()
            try relu.forward(t)
            return weightedSum(t, r)
        }
    }

    func testL2NormGradients() throws {
        for (channels, layout) in [(6, ActivationLayout.nchw), (32, .blocked(16)), (24, .blocked(8))] {
            let norm = L2Norm(channels: channels)
            var rng = SeededRandom(seed: 12)
            rng.fillUniform(norm.scale.value, 10, 30)
            let x = Tensor(shape: [2, channels, 5, 4], layout: layout), r = Tensor(shape: [2, channels, 5, 4], layout: layout)
            rng.fillNormal(x)
            rng.fillNormal(r)
            try norm.forward(x)
            let dx = Tensor(shape: x.shape, layout: layout)
            try norm.backward(input: x, outputGrad: r, inputGrad: dx)
            let loss = { weightedSum(try norm.forward(x), r) }
            try checkGradient("l2norm input \(layout)", x: x, analytic: dx, epsilon: 1e-3, loss: loss)
            try checkGradient("l2norm scale \(layout)", x: norm.scale.value, analytic: norm.scale.grad, epsilon: 1e-2, loss: loss)
        }
    }

    func testL2NormIsTheSameInEitherLayout() throws {
        let backend = DNNLBackend()
        let plain = randomTensor([2, 32, 3, 5], seed: 15)
        let blocked = Tensor(shape: plain.shape, layout: .blocked(16))
        try backend.reorder(plain, into: blocked)
        let a = try L2Norm(channels: 32).forward(plain)
        let b = try L2Norm(channels: 32).forward(blocked)
        let back = Tensor(shape: plain.shape)
        try backend.reorder(b, into: back)
        XCTAssertEqual(a.array, back.array)
    }

    func testL2NormForwardDefinition() throws {
        let norm = L2Norm(channels: 2)
        let x = try Tensor(shape: [1, 2, 1, 2], values: [3, 1, 4, 0])
        let y = try norm.forward(x)
        // pixel 0: (3, 4)/5·20 = (12, 16); pixel 1: (1, 0)/1·20 = (20, 0)
        XCTAssertEqual(y.array, [12, 20, 16, 0])
        XCTAssertEqual(norm.scale.value.array, [20, 20])
    }
}
