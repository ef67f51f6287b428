import SSDEngine
import SSDTestSupport
import XCTest

/// Every oneDNN-backed op against its naive twin, on small shapes covering stride, padding,
/// dilation, 1×1 kernels, ceil-mode and padded pooling, for each algorithm.
final class BackendTwinTests: XCTestCase {
    let fast = DNNLBackend()
    let naive = NaiveBackend()

    static let convShapes: [ConvolutionShape] = [
        ConvolutionShape(batch: 2, inChannels: 3, outChannels: 5, inHeight: 9, inWidth: 7, kernelSize: (3, 3), padding: (1, 1)),
        ConvolutionShape(batch: 1, inChannels: 16, outChannels: 32, inHeight: 12, inWidth: 12, kernelSize: (3, 3), padding: (1, 1)),
        ConvolutionShape(batch: 2, inChannels: 8, outChannels: 6, inHeight: 10, inWidth: 11, kernelSize: (3, 3),
                         stride: (2, 2), padding: (1, 1)),
        ConvolutionShape(batch: 1, inChannels: 4, outChannels: 8, inHeight: 15, inWidth: 15, kernelSize: (3, 3),
                         padding: (3, 3), dilation: (3, 3)),
        ConvolutionShape(batch: 2, inChannels: 12, outChannels: 7, inHeight: 5, inWidth: 5, kernelSize: (1, 1)),
        ConvolutionShape(batch: 1, inChannels: 6, outChannels: 4, inHeight: 5, inWidth: 5, kernelSize: (3, 3)),
    ]

    func compareConvolution(_ s: ConvolutionShape, _ algorithm: ConvolutionAlgorithm, tolerance: Float) throws {
        let x = randomTensor(s.inputShape, seed: 1)
        let w = randomTensor(s.weightShape, seed: 2, std: 0.3)
        let b = randomTensor([s.outChannels], seed: 3)
        let dy = randomTensor(s.outputShape, seed: 4)
        let k1 = try fast.convolution(s, algorithm: algorithm)
        let k2 = try naive.convolution(s, algorithm: algorithm)

        let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
        try k1.forward(input: x.data, weight: w.data, bias: b.data, output: y1.data)
        try k2.forward(input: x.data, weight: w.data, bias: b.data, output: y2.data)
        XCTAssertLessThan(maxDifference(y1, y2).relative, tolerance, "forward \(s) \(algorithm) [\(k1.implementation)]")

        let dx1 = Tensor(shape: s.inputShape), dx2 = Tensor(shape: s.inputShape)
        try k1.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx1.data)
        try k2.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx2.data)
        XCTAssertLessThan(maxDifference(dx1, dx2).relative, tolerance, "backward data \(s) \(algorithm)")

        // Accumulation: start both from the same non-zero gradients.
        let dw1 = randomTensor(s.weightShape, seed: 5), dw2 = dw1.clone()
        let db1 = randomTensor([s.outChannels], seed: 6), db2 = db1.clone()
        try k1.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw1.data, biasGrad: db1.data)
        try k2.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw2.data, biasGrad: db2.data)
        XCTAssertLessThan(maxDifference(dw1, dw2).relative, tolerance, "backward weights \(s) \(algorithm)")
        XCTAssertLessThan(maxDifference(db1, db2).relative, tolerance, "backward bias \(s) \(algorithm)")
    }

    func testConvolutionDirectMatchesNaive() throws {
        for s in Self.convShapes { try compareConvolution(s, .direct, tolerance: 1e-5) }
    }

    func testConvolutionWinogradMatchesNaive() throws {
        for s in Self.convShapes { try compareConvolution(s, .winograd, tolerance: 1e-3) }
    }

    /// The blocked paths (nChw8c and nChw16c, whichever the host prefers) with fused ReLU against
    /// the naive twin in the same layouts.
    func testBlockedLayoutsWithFusedReLUMatchNaive() throws {
        let shapes = [
            ConvolutionShape(batch: 2, inChannels: 16, outChannels: 32, inHeight: 9, inWidth: 9, kernelSize: (3, 3), padding: (1, 1)),
            ConvolutionShape(batch: 1, inChannels: 32, outChannels: 16, inHeight: 7, inWidth: 7, kernelSize: (3, 3),
                             stride: (2, 2), padding: (1, 1)),
            ConvolutionShape(batch: 1, inChannels: 16, outChannels: 16, inHeight: 13, inWidth: 13, kernelSize: (3, 3),
                             padding: (6, 6), dilation: (6, 6)),
            ConvolutionShape(batch: 2, inChannels: 32, outChannels: 16, inHeight: 5, inWidth: 5, kernelSize: (1, 1)),
        ]
        let layoutPairs: [(ActivationLayout, ActivationLayout)] = [8, 16].flatMap { b -> [(ActivationLayout, ActivationLayout)] in
            [(.blocked(b), .blocked(b)), (.nchw, .blocked(b)), (.blocked(b), .nchw)]
        }
        for s in shapes {
            for (input, output) in layoutPairs {
                for algorithm in [ConvolutionAlgorithm.direct, .winograd] {
                    let x = randomTensor(s.inputShape, seed: 41), w = randomTensor(s.weightShape, seed: 42, std: 0.2)
                    let b = randomTensor([s.outChannels], seed: 43), dy = randomTensor(s.outputShape, seed: 44)
                    let k1 = try fast.convolution(s, algorithm: algorithm, input: input, output: output, fusedReLU: true)
                    let k2 = try naive.convolution(s, algorithm: algorithm, input: input, output: output, fusedReLU: true)
                    XCTAssertEqual(k1.inputLayout, input)
                    let tolerance: Float = algorithm == .direct ? 1e-5 : 1e-3
                    let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
                    try k1.forward(input: x.data, weight: w.data, bias: b.data, output: y1.data)
                    try k2.forward(input: x.data, weight: w.data, bias: b.data, output: y2.data)
                    XCTAssertLessThan(maxDifference(y1, y2).relative, tolerance, "forward \(s) \(input)→\(output) \(algorithm)")
                    XCTAssertTrue(y1.array.allSatisfy { $0 >= 0 }, "fused ReLU")
                    let dx1 = Tensor(shape: s.inputShape), dx2 = Tensor(shape: s.inputShape)
                    try k1.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx1.data)
                    try k2.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx2.data)
                    XCTAssertLessThan(maxDifference(dx1, dx2).relative, tolerance, "backward data \(s) \(input)→\(output)")
                    let dw1 = Tensor(shape: s.weightShape), dw2 = Tensor(shape: s.weightShape)
                    try k1.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw1.data, biasGrad: nil)
                    try k2.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw2.data, biasGrad: nil)
                    XCTAssertLessThan(maxDifference(dw1, dw2).relative, tolerance, "backward weights \(s) \(input)→\(output)")
                }
            }
        }
    }

    func testReorderMatchesTheLayoutFormula() throws {
        let plain = randomTensor([2, 32, 3, 4], seed: 51)
        for b in [8, 16] {
            let blocked = Tensor(shape: plain.shape, layout: .blocked(b))
            try fast.reorder(plain, into: blocked)
            for (n, c, y, x) in [(0, 0, 0, 0), (1, 17, 2, 3), (0, 31, 1, 2), (1, 15, 0, 1)] {
                XCTAssertEqual(blocked.element(n, c, y, x), plain.data[((n * 32 + c) * 3 + y) * 4 + x])
                XCTAssertEqual(blocked.data[((n * (32 / b) + c / b) * 12 + y * 4 + x) * b + c % b], plain.element(n, c, y, x))
            }
            let naiveBlocked = Tensor(shape: plain.shape, layout: .blocked(b))
            try naive.reorder(plain, into: naiveBlocked)
            XCTAssertEqual(naiveBlocked.array, blocked.array)
            let back = Tensor(shape: plain.shape)
            try fast.reorder(blocked, into: back)
            XCTAssertEqual(back.array, plain.array)
            XCTAssertThrowsError(try fast.convolution(Self.convShapes[0], algorithm: .direct, input: .blocked(b), output: .nchw,
                                                      fusedReLU: false))  // 3 channels cannot be blocked
        }
    }

    func testConvolutionWithoutBiasIsZeroBias() throws {
        let s = Self.convShapes[0]
        let x = randomTensor(s.inputShape, seed: 7), w = randomTensor(s.weightShape, seed: 8)
        let k = try fast.convolution(s, algorithm: .direct)
        let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
        try k.forward(input: x.data, weight: w.data, bias: nil, output: y1.data)
        let zero = Tensor(shape: [s.outChannels])
        try naive.convolution(s, algorithm: .direct).forward(input: x.data, weight: w.data, bias: zero.data, output: y2.data)
        XCTAssertLessThan(maxDifference(y1, y2).relative, 1e-5)
    }

    func testMaxPoolingMatchesNaive() throws {
        let shapes: [(PoolingShape, ActivationLayout)] = [
            (PoolingShape(batch: 2, channels: 3, inHeight: 8, inWidth: 8, kernel: 2, stride: 2), .nchw),
            (PoolingShape(batch: 1, channels: 4, inHeight: 75, inWidth: 75, kernel: 2, stride: 2, ceilMode: true), .nchw),
            (PoolingShape(batch: 2, channels: 5, inHeight: 7, inWidth: 6, kernel: 3, stride: 1, padding: 1), .nchw),
            (PoolingShape(batch: 1, channels: 2, inHeight: 9, inWidth: 9, kernel: 3, stride: 2), .nchw),
            (PoolingShape(batch: 1, channels: 32, inHeight: 75, inWidth: 75, kernel: 2, stride: 2, ceilMode: true), .blocked(16)),
            (PoolingShape(batch: 2, channels: 16, inHeight: 7, inWidth: 6, kernel: 3, stride: 1, padding: 1), .blocked(16)),
            (PoolingShape(batch: 1, channels: 24, inHeight: 75, inWidth: 75, kernel: 2, stride: 2, ceilMode: true), .blocked(8)),
            (PoolingShape(batch: 2, channels: 16, inHeight: 7, inWidth: 6, kernel: 3, stride: 1, padding: 1), .blocked(8)),
        ]
        for (s, layout) in shapes {
            let x = randomTensor(s.inputShape, seed: 11)
            let dy = randomTensor(s.outputShape, seed: 12)
            let k1 = try fast.maxPooling(s, layout: layout), k2 = try naive.maxPooling(s, layout: layout)
            let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
            try k1.forward(input: x.data, output: y1.data)
            try k2.forward(input: x.data, output: y2.data)
            XCTAssertEqual(y1.array, y2.array, "forward \(s)")
            let dx1 = Tensor(shape: s.inputShape), dx2 = Tensor(shape: s.inputShape)
            try k1.backward(outputGrad: dy.data, inputGrad: dx1.data)
            try k2.backward(outputGrad: dy.data, inputGrad: dx2.data)
            XCTAssertLessThan(maxDifference(dx1, dx2).absolute, 1e-6, "backward \(s)")
        }
    }

    func testPoolingOutputExtentsFollowPyTorch() {
        // conv3_3 (75) → pool3 in ceil mode → 38; floor would give 37.
        XCTAssertEqual(PoolingShape(batch: 1, channels: 1, inHeight: 75, inWidth: 75, kernel: 2, stride: 2, ceilMode: true).outHeight, 38)
        XCTAssertEqual(PoolingShape(batch: 1, channels: 1, inHeight: 75, inWidth: 75, kernel: 2, stride: 2).outHeight, 37)
        XCTAssertEqual(PoolingShape(batch: 1, channels: 1, inHeight: 19, inWidth: 19, kernel: 3, stride: 1, padding: 1).outHeight, 19)
        // Ceil mode never starts a window in the right padding.
        XCTAssertEqual(PoolingShape(batch: 1, channels: 1, inHeight: 5, inWidth: 5, kernel: 2, stride: 2, padding: 1, ceilMode: true).outHeight, 3)
    }

    func testReLUMatchesNaive() throws {
        let x = randomTensor([1000], seed: 21)
        let a = x.clone(), b = x.clone()
        try fast.reluForward(a.data, count: a.count)
        try naive.reluForward(b.data, count: b.count)
        XCTAssertEqual(a.array, b.array)
        XCTAssertTrue(a.array.allSatisfy { $0 >= 0 })
        let g1 = randomTensor([1000], seed: 22), g2 = g1.clone()
        try fast.reluBackward(output: a.data, grad: g1.data, count: 1000)
        try naive.reluBackward(output: b.data, grad: g2.data, count: 1000)
        XCTAssertEqual(g1.array, g2.array)
    }

    func testSgemmMatchesNaive() throws {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let m = 7, n = 5, k = 9
            let a = randomTensor([m * k], seed: 31), b = randomTensor([k * n], seed: 32)
            let c1 = randomTensor([m * n], seed: 33), c2 = c1.clone()
            let lda = ta ? m : k, ldb = tb ? k : n
            try fast.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
                           beta: 2, c: c1.data, ldc: n)
            try naive.sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
                            beta: 2, c: c2.data, ldc: n)
            XCTAssertLessThan(maxDifference(c1, c2).relative, 1e-5, "transA \(ta) transB \(tb)")
        }
    }

    func testInvalidShapesAreRejected() {
        let bad = ConvolutionShape(batch: 1, inChannels: 3, outChannels: 4, inHeight: 2, inWidth: 2, kernelSize: (5, 5))
        XCTAssertThrowsError(try fast.convolution(bad, algorithm: .direct)) { error in
            XCTAssertTrue("\(error)".contains("empty"), "\(error)")
        }
        let badPool = PoolingShape(batch: 1, channels: 1, inHeight: 4, inWidth: 4, kernel: 0, stride: 1)
        XCTAssertThrowsError(try fast.maxPooling(badPool))
    }

    func testSeededRandomIsReproducible() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42), c = SeededRandom(seed: 43)
        let xs = (0..<10).map { _ in a.next() }
        XCTAssertEqual(xs, (0..<10).map { _ in b.next() })
        XCTAssertNotEqual(xs, (0..<10).map { _ in c.next() })
        let restored = SeededRandom(state: a.stateWords)
        XCTAssertEqual(restored, a)
        var n = SeededRandom(seed: 1)
        let samples = (0..<20000).map { _ in Double(n.normal()) }
        let mean = samples.reduce(0, +) / Double(samples.count)
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }
}
