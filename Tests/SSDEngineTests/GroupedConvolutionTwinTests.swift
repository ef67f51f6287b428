import SSDEngine
import SSDTestSupport
import XCTest

/// Grouped and depthwise convolutions (MobileNetV3's) and the point-wise activations on the
/// oneDNN backend against their naive twins, in NCHW and in the blocked layouts.
final class GroupedConvolutionTwinTests: XCTestCase {
    let fast = DNNLBackend()
    let naive = NaiveBackend()

    /// Depthwise 3×3 and 5×5 at stride 1 and 2 (MobileNetV3's), a dilated one, a channel
    /// multiplier (2 outputs per input channel) and a plain grouped convolution.
    static let shapes: [ConvolutionShape] = [
        ConvolutionShape(batch: 2, inChannels: 16, outChannels: 16, inHeight: 9, inWidth: 8, kernelSize: (3, 3),
                         padding: (1, 1), groups: 16),
        ConvolutionShape(batch: 1, inChannels: 16, outChannels: 16, inHeight: 11, inWidth: 10, kernelSize: (3, 3),
                         stride: (2, 2), padding: (1, 1), groups: 16),
        ConvolutionShape(batch: 2, inChannels: 32, outChannels: 32, inHeight: 9, inWidth: 9, kernelSize: (5, 5),
                         padding: (2, 2), groups: 32),
        ConvolutionShape(batch: 1, inChannels: 16, outChannels: 16, inHeight: 12, inWidth: 11, kernelSize: (5, 5),
                         stride: (2, 2), padding: (2, 2), groups: 16),
        ConvolutionShape(batch: 1, inChannels: 16, outChannels: 16, inHeight: 10, inWidth: 10, kernelSize: (3, 3),
                         padding: (2, 2), dilation: (2, 2), groups: 16),
        ConvolutionShape(batch: 1, inChannels: 8, outChannels: 16, inHeight: 7, inWidth: 7, kernelSize: (3, 3),
                         padding: (1, 1), groups: 8),
        ConvolutionShape(batch: 2, inChannels: 16, outChannels: 32, inHeight: 6, inWidth: 7, kernelSize: (3, 3),
                         padding: (1, 1), groups: 2),
    ]

    func compare(_ s: ConvolutionShape, input: ActivationLayout, output: ActivationLayout, relu: Bool,
                 algorithm: ConvolutionAlgorithm = .direct) throws {
        let what = "\(s) \(input)→\(output)\(relu ? " relu" : "") \(algorithm)"
        let x = randomTensor(s.inputShape, seed: 61), w = randomTensor(s.weightShape, seed: 62, std: 0.3)
        let b = randomTensor([s.outChannels], seed: 63), dy = randomTensor(s.outputShape, seed: 64)
        let k1 = try fast.convolution(s, algorithm: algorithm, input: input, output: output, fusedReLU: relu)
        let k2 = try naive.convolution(s, algorithm: algorithm, input: input, output: output, fusedReLU: relu)
        XCTAssertFalse(k1.implementation.hasPrefix("ref"), "\(what): \(k1.implementation)")
        // The naive twin reads and writes the same layouts, so raw buffers compare directly.
        let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
        try k1.forward(input: x.data, weight: w.data, bias: b.data, output: y1.data)
        try k2.forward(input: x.data, weight: w.data, bias: b.data, output: y2.data)
        XCTAssertLessThan(maxDifference(y1, y2).relative, 1e-5, "forward \(what) [\(k1.implementation)]")
        let dx1 = Tensor(shape: s.inputShape), dx2 = Tensor(shape: s.inputShape)
        try k1.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx1.data)
        try k2.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx2.data)
        XCTAssertLessThan(maxDifference(dx1, dx2).relative, 1e-5, "backward data \(what)")
        // Accumulation from the same non-zero start.
        let dw1 = randomTensor(s.weightShape, seed: 65), dw2 = dw1.clone()
        let db1 = randomTensor([s.outChannels], seed: 66), db2 = db1.clone()
        try k1.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw1.data, biasGrad: db1.data)
        try k2.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw2.data, biasGrad: db2.data)
        XCTAssertLessThan(maxDifference(dw1, dw2).relative, 1e-5, "backward weights \(what)")
        XCTAssertLessThan(maxDifference(db1, db2).relative, 1e-5, "backward bias \(what)")
    }

    func testGroupedConvolutionsMatchNaiveInNCHW() throws {
        for s in Self.shapes {
            try compare(s, input: .nchw, output: .nchw, relu: false)
            // Winograd is for dense convolutions: asked for it, a grouped one runs direct.
            try compare(s, input: .nchw, output: .nchw, relu: true, algorithm: .winograd)
        }
    }

    func testGroupedConvolutionsMatchNaiveInBlockedLayouts() throws {
        for s in Self.shapes {
            for block in [8, 16] where s.inChannels % block == 0 && s.outChannels % block == 0 {
                try compare(s, input: .blocked(block), output: .blocked(block), relu: false)
                try compare(s, input: .blocked(block), output: .blocked(block), relu: true)
                try compare(s, input: .nchw, output: .blocked(block), relu: false)
                try compare(s, input: .blocked(block), output: .nchw, relu: false)
            }
        }
    }

    func testGroupsMustDivideTheChannels() {
        let bad = ConvolutionShape(batch: 1, inChannels: 6, outChannels: 4, inHeight: 5, inWidth: 5, kernelSize: (3, 3), groups: 4)
        XCTAssertThrowsError(try fast.convolution(bad, algorithm: .direct))
        XCTAssertThrowsError(try naive.convolution(bad, algorithm: .direct))
        let dw = ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 5, inWidth: 5, kernelSize: (3, 3), groups: 8)
        XCTAssertEqual(dw.weightShape, [8, 1, 3, 3])
        XCTAssertTrue(dw.isDepthwise)
        XCTAssertFalse(dw.winogradEligible)
    }

    /// MobileNetV3-Large's depthwise convolutions at their channel counts, on NCHW and the host's
    /// blocked layout where the channels fill its blocks: no primitive may be a reference
    /// implementation (run with ONEDNN_VERBOSE=1 to see oneDNN's own log of the choices).
    func testDepthwiseKernelsAreNotReference() throws {
        DNNLBackend.resetKernelLog()
        let host = fast.hostLayout
        for (channels, kernel, stride, size) in [(64, 3, 2, 40), (72, 5, 2, 40), (120, 5, 1, 20), (240, 3, 2, 20),
                                                 (480, 3, 1, 10), (672, 5, 2, 10), (960, 5, 1, 5)] {
            let s = ConvolutionShape(batch: 2, inChannels: channels, outChannels: channels, inHeight: size, inWidth: size,
                                     kernelSize: (kernel, kernel), stride: (stride, stride),
                                     padding: (kernel / 2, kernel / 2), groups: channels)
            for layout in Set([ActivationLayout.nchw, fast.preferredLayout(channels: channels)]) {
                let k = try fast.convolution(s, algorithm: .direct, input: layout, output: layout, fusedReLU: false)
                let x = randomTensor(s.inputShape, seed: 1), w = randomTensor(s.weightShape, seed: 2)
                let y = Tensor(shape: s.outputShape), dw = Tensor(shape: s.weightShape), dx = Tensor(shape: s.inputShape)
                try k.forward(input: x.data, weight: w.data, bias: nil, output: y.data)
                try k.backwardData(outputGrad: y.data, weight: w.data, inputGrad: dx.data)
                try k.backwardWeights(input: x.data, outputGrad: y.data, weightGrad: dw.data, biasGrad: nil)
                _ = try fast.convolution(s, algorithm: .direct, input: layout, output: layout, fusedReLU: false, inference: true)
            }
        }
        let convolutions = DNNLBackend.createdKernels.filter { $0.operation.hasPrefix("convolution") }
        report("depthwise kernels (host layout \(host))", "\n" + convolutions.map { "  \($0)" }.joined(separator: "\n"))
        XCTAssertFalse(convolutions.isEmpty)
        for k in convolutions { XCTAssertFalse(k.isReference, "\(k)") }
    }

    /// Values on and around every kink, plus random ones; a count with a scalar tail.
    static func activationInputs() -> Tensor {
        let x = randomTensor([1037], seed: 71, std: 4)
        let kinks: [Float] = [-3, 3, 0, 6, -1.5, -3.0000002, -2.9999998, 2.9999998, 3.0000002, 5.9999995, 6.0000005,
                              -0.0, 1e-30, -1e-30, 100, -100]
        for (i, v) in kinks.enumerated() { x.data[i] = v; x.data[x.count - 1 - i] = v }
        return x
    }

    func testActivationsMatchNaiveBitForBit() throws {
        let x = Self.activationInputs()
        for f in ActivationFunction.allCases {
            let y1 = Tensor(shape: x.shape), y2 = Tensor(shape: x.shape)
            try fast.activationForward(f, input: x.data, output: y1.data, count: x.count)
            try naive.activationForward(f, input: x.data, output: y2.data, count: x.count)
            XCTAssertEqual(y1.array, y2.array, "\(f) forward")
            let g1 = randomTensor(x.shape, seed: 72), g2 = g1.clone()
            try fast.activationBackward(f, input: x.data, grad: g1.data, count: x.count)
            try naive.activationBackward(f, input: x.data, grad: g2.data, count: x.count)
            XCTAssertEqual(g1.array, g2.array, "\(f) backward")
            // In place.
            let z = x.clone()
            try fast.activationForward(f, input: z.data, output: z.data, count: z.count)
            XCTAssertEqual(z.array, y1.array, "\(f) in place")
        }
    }

    /// PyTorch's values: F.hardswish(x) = x·relu6(x+3)/6 and its backward at the kinks
    /// (aten's CPU kernel: 0 below −3, x/3 + 1/2 on [−3, 3), 1 from 3).
    func testActivationValuesAndKinks() throws {
        let x = try Tensor(shape: [8], values: [-4, -3, -1.5, 0, 1, 3, 6, 7])
        func run(_ f: ActivationFunction) throws -> (y: [Float], g: [Float]) {
            let y = Tensor(shape: [8]), g = Tensor(shape: [8])
            g.fill(1)
            try fast.activationForward(f, input: x.data, output: y.data, count: 8)
            try fast.activationBackward(f, input: x.data, grad: g.data, count: 8)
            return (y.array, g.array)
        }
        let hs = try run(.hardswish)
        XCTAssertEqual(hs.y, [-0.0, -0.0, -0.375, 0, Float(1) * 4 / 6, 3, 6, 7])
        XCTAssertEqual(hs.g, [0, -0.5, 0, 0.5, Float(1) / 3 + 0.5, 1, 1, 1])
        let hsig = try run(.hardsigmoid)
        XCTAssertEqual(hsig.y, [0, 0, Float(1.5) / 6, 0.5, Float(4) / 6, 1, 1, 1])
        XCTAssertEqual(hsig.g, [0, 0, Float(1) / 6, Float(1) / 6, Float(1) / 6, 0, 0, 0])
        let r6 = try run(.relu6)
        XCTAssertEqual(r6.y, [0, 0, 0, 0, 1, 3, 6, 6])
        XCTAssertEqual(r6.g, [0, 0, 0, 0, 1, 1, 0, 0])
        let r = try run(.relu)
        XCTAssertEqual(r.g, [0, 0, 0, 0, 1, 1, 1, 1])
    }
}
