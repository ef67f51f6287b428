import Foundation
import SSDEngine
import SSDTestSupport
import XCTest

/// `WinogradConvolution` against the naive Double twin: every pass, layouts, paddings, odd
/// sizes, accumulation; the accuracy of interpolation-point choices; a finite-difference check;
/// and (with SSD_WINOGRAD_BENCH=1) timings against oneDNN's direct convolution.
final class WinogradTests: XCTestCase {
    let dnnl = DNNLBackend()
    let naive = NaiveBackend()

    struct Errors { var forward: Float = 0, data: Float = 0, weights: Float = 0, bias: Float = 0 }

    /// Runs all three passes of a Winograd kernel and the naive twin on the same data (in the same
    /// layouts) and returns the relative errors max|ours − naive| / max|naive|.
    func measure(_ s: ConvolutionShape, input: ActivationLayout = .nchw, output: ActivationLayout = .nchw,
                 relu: Bool = false, withBias: Bool = true, points: [Double]? = nil, scaling: WinogradScaling? = nil,
                 passes: Set<String> = ["forward", "data", "weights"], seed: UInt64 = 1, portable: Bool = false,
                 chunkBytes: Int = WinogradConvolution.defaultChunkBytes) throws -> Errors {
        let x = randomTensor(s.inputShape, seed: seed), w = randomTensor(s.weightShape, seed: seed + 1, std: 0.3)
        let b = randomTensor([s.outChannels], seed: seed + 2), dy = randomTensor(s.outputShape, seed: seed + 3)
        let ours = try WinogradConvolution(s, input: input, output: output, fusedReLU: relu, gemm: dnnl, points: points,
                                           scaling: scaling, chunkBytes: chunkBytes, portable: portable)
        let twin = try naive.convolution(s, algorithm: .direct, input: input, output: output, fusedReLU: relu)
        let zeroBias = Tensor(shape: [s.outChannels])  // the twin's stand-in for "no bias"
        var e = Errors()
        if passes.contains("forward") {
            // Poison the output: forward must overwrite every element.
            let y1 = Tensor(shape: s.outputShape), y2 = Tensor(shape: s.outputShape)
            y1.fill(.nan)
            try ours.forward(input: x.data, weight: w.data, bias: withBias ? b.data : nil, output: y1.data)
            try twin.forward(input: x.data, weight: w.data, bias: withBias ? b.data : zeroBias.data,
                             output: y2.data)
            e.forward = maxDifference(y1, y2).relative
            if relu { XCTAssertTrue(y1.array.allSatisfy { $0 >= 0 }, "fused ReLU \(s)") }
        }
        if passes.contains("data") {
            let dx1 = Tensor(shape: s.inputShape), dx2 = Tensor(shape: s.inputShape)
            dx1.fill(.nan)
            try ours.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx1.data)
            try twin.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx2.data)
            e.data = maxDifference(dx1, dx2).relative
        }
        if passes.contains("weights") {
            // Accumulation: both start from the same non-zero gradients.
            let dw1 = randomTensor(s.weightShape, seed: seed + 4), dw2 = dw1.clone()
            let db1 = randomTensor([s.outChannels], seed: seed + 5), db2 = db1.clone()
            try ours.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw1.data, biasGrad: db1.data)
            try twin.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw2.data, biasGrad: db2.data)
            e.weights = maxDifference(dw1, dw2).relative
            e.bias = maxDifference(db1, db2).relative
        }
        return e
    }

    func testMatchesNaiveOnSmallShapes() throws {
        let shapes: [ConvolutionShape] = [
            ConvolutionShape(batch: 1, inChannels: 3, outChannels: 8, inHeight: 5, inWidth: 7, kernelSize: (3, 3), padding: (1, 1)),
            ConvolutionShape(batch: 2, inChannels: 16, outChannels: 24, inHeight: 9, inWidth: 9, kernelSize: (3, 3), padding: (0, 0)),
            ConvolutionShape(batch: 2, inChannels: 32, outChannels: 16, inHeight: 13, inWidth: 11, kernelSize: (3, 3), padding: (2, 2)),
            ConvolutionShape(batch: 1, inChannels: 16, outChannels: 24, inHeight: 13, inWidth: 11, kernelSize: (3, 3), padding: (1, 1)),
            ConvolutionShape(batch: 2, inChannels: 5, outChannels: 3, inHeight: 7, inWidth: 5, kernelSize: (3, 3), padding: (2, 0)),
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 3, inWidth: 4, kernelSize: (3, 3), padding: (0, 1)),
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 16, inHeight: 9, inWidth: 10, kernelSize: (3, 3), padding: (3, 3)),
        ]
        var worst = Errors()
        for s in shapes {
            var layouts: [(ActivationLayout, ActivationLayout)] = [(.nchw, .nchw)]
            for b in [8, 16, 4] {
                let inOK = s.inChannels % b == 0, outOK = s.outChannels % b == 0
                if inOK && outOK { layouts.append((.blocked(b), .blocked(b))) }
                if outOK { layouts.append((.nchw, .blocked(b))) }
                if inOK { layouts.append((.blocked(b), .nchw)) }
            }
            if s.inChannels % 8 == 0 && s.outChannels % 16 == 0 { layouts.append((.blocked(8), .blocked(16))) }
            for (input, output) in layouts {
                // Both the AVX2 transforms (where the CPU has them) and the portable Swift ones.
                for (relu, bias, portable) in [(false, true, false), (true, true, false), (false, false, false), (true, true, true)] {
                    let e = try measure(s, input: input, output: output, relu: relu, withBias: bias, portable: portable)
                    let what = "\(s) \(input)→\(output) relu \(relu) bias \(bias) portable \(portable)"
                    XCTAssertLessThan(e.forward, 1e-5, "forward \(what)")
                    XCTAssertLessThan(e.data, 1e-5, "backward data \(what)")
                    XCTAssertLessThan(e.weights, 1e-5, "backward weights \(what)")
                    XCTAssertLessThan(e.bias, 1e-5, "backward bias \(what)")
                    worst.forward = max(worst.forward, e.forward)
                    worst.data = max(worst.data, e.data)
                    worst.weights = max(worst.weights, e.weights)
                    worst.bias = max(worst.bias, e.bias)
                }
            }
        }
        report("winograd small shapes worst relative error forward / data / weights / bias",
               "\(worst.forward) / \(worst.data) / \(worst.weights) / \(worst.bias)")
    }

    /// Many small chunks (the smallest chunk size): threads then run whole chunks each (with
    /// OpenMP), and the weight gradient accumulates over chunks.
    func testManyChunks() throws {
        let s = ConvolutionShape(batch: 2, inChannels: 16, outChannels: 24, inHeight: 66, inWidth: 63, kernelSize: (3, 3),
                                 padding: (1, 1))
        for (input, output) in [(ActivationLayout.blocked(8), ActivationLayout.blocked(8)), (.nchw, .blocked(8)), (.blocked(16), .nchw)] {
            for portable in [false, true] {
                let e = try measure(s, input: input, output: output, relu: true, portable: portable, chunkBytes: 1)
                report("winograd many chunks \(input)→\(output) portable \(portable) forward / data / weights / bias",
                       "\(e.forward) / \(e.data) / \(e.weights) / \(e.bias)")
                XCTAssertLessThan(e.forward, 1e-5)
                XCTAssertLessThan(e.data, 1e-5)
                XCTAssertLessThan(e.weights, 1e-5)
                XCTAssertLessThan(e.bias, 1e-5)
            }
        }
    }

    /// The forward error of several interpolation-point sets and scalings at 64 channels, 38×38
    /// (printed: the evidence for the default), and every pass of the default at 64 and 256.
    func testPointSetAccuracy() throws {
        let s64 = ConvolutionShape(batch: 1, inChannels: 64, outChannels: 64, inHeight: 38, inWidth: 38,
                                   kernelSize: (3, 3), padding: (1, 1))
        let sets: [[Double]] = [[0, 1, -1, 2, -2], [0, 1, -1, 0.5, -0.5], [0, 1, -1, 0.5, -2], [0, 1, -1, 2, -0.5],
                                [0, 1, -1, 0.5, 2], [0, 1, -1, 1.5, -1.5], [0, 1, -1, 0.5, -1.5]]
        // Three data sets each: single runs differ by ±30%, more than some of the choices do.
        for points in sets {
            for scaling in WinogradScaling.allCases {
                var forward: Float = 0, data: Float = 0
                for seed in [1, 11, 21] as [UInt64] {
                    let e = try measure(s64, points: points, scaling: scaling, passes: ["forward", "data"], seed: seed)
                    forward += e.forward / 3
                    data += e.data / 3
                }
                report("winograd points \(points) 1/f in \(scaling) 64ch 38x38 mean forward / data", "\(forward) / \(data)")
            }
        }
        let e64 = try measure(s64)
        report("winograd default 64→64 38x38 forward / data / weights / bias", "\(e64.forward) / \(e64.data) / \(e64.weights) / \(e64.bias)")
        XCTAssertLessThan(e64.forward, 1e-5)
        XCTAssertLessThan(e64.data, 1e-5)
        XCTAssertLessThan(e64.weights, 1e-5)
        let s256 = ConvolutionShape(batch: 1, inChannels: 256, outChannels: 256, inHeight: 38, inWidth: 38,
                                    kernelSize: (3, 3), padding: (1, 1))
        let e256 = try measure(s256, input: .blocked(8), output: .blocked(8))
        report("winograd default 256→256 38x38 forward / data / weights / bias",
               "\(e256.forward) / \(e256.data) / \(e256.weights) / \(e256.bias)")
        XCTAssertLessThan(e256.forward, 2e-5)
        XCTAssertLessThan(e256.data, 2e-5)
        XCTAssertLessThan(e256.weights, 2e-5)
    }

    /// Finite differences of Σ r·conv(x, w, b) against the Winograd backward passes.
    func testGradientCheck() throws {
        let s = ConvolutionShape(batch: 1, inChannels: 2, outChannels: 3, inHeight: 6, inWidth: 5, kernelSize: (3, 3),
                                 padding: (1, 1))
        let k = try WinogradConvolution(s, input: .nchw, output: .nchw, fusedReLU: false, gemm: dnnl)
        let x = randomTensor(s.inputShape, seed: 71), w = randomTensor(s.weightShape, seed: 72, std: 0.5)
        let b = randomTensor([s.outChannels], seed: 73), r = randomTensor(s.outputShape, seed: 74)
        let y = Tensor(shape: s.outputShape)
        func loss() throws -> Double {
            try k.forward(input: x.data, weight: w.data, bias: b.data, output: y.data)
            return weightedSum(y, r)
        }
        let dx = Tensor(shape: s.inputShape), dw = Tensor(shape: s.weightShape), db = Tensor(shape: [s.outChannels])
        try k.backwardData(outputGrad: r.data, weight: w.data, inputGrad: dx.data)
        try k.backwardWeights(input: x.data, outputGrad: r.data, weightGrad: dw.data, biasGrad: db.data)
        try checkGradient("winograd input", x: x, analytic: dx, loss: loss)
        try checkGradient("winograd weight", x: w, analytic: dw, loss: loss)
        try checkGradient("winograd bias", x: b, analytic: db, loss: loss)
    }

    func testRejectsIneligibleShapesAndLayouts() {
        let bad = [
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (3, 3), stride: (2, 2)),
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (5, 5)),
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (3, 3), dilation: (2, 2)),
            ConvolutionShape(batch: 1, inChannels: 8, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (1, 1)),
            ConvolutionShape(batch: 0, inChannels: 8, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (3, 3)),
        ]
        for s in bad {
            XCTAssertThrowsError(try WinogradConvolution(s, input: .nchw, output: .nchw, fusedReLU: false, gemm: dnnl), "\(s)")
        }
        let s = ConvolutionShape(batch: 1, inChannels: 12, outChannels: 8, inHeight: 9, inWidth: 9, kernelSize: (3, 3))
        XCTAssertThrowsError(try WinogradConvolution(s, input: .blocked(8), output: .nchw, fusedReLU: false, gemm: dnnl))
        XCTAssertThrowsError(try WinogradConvolution(s, input: .nchw, output: .blocked(16), fusedReLU: false, gemm: dnnl))
        XCTAssertThrowsError(try WinogradConvolution(s, input: .blocked(0), output: .nchw, fusedReLU: false, gemm: dnnl))
        XCTAssertThrowsError(try WinogradConvolution(s, input: .nchw, output: .nchw, fusedReLU: false, gemm: dnnl,
                                                     points: [0, 1, -1, 2, 2]))
        XCTAssertNoThrow(try WinogradConvolution(s, input: .blocked(4), output: .blocked(8), fusedReLU: true, gemm: dnnl))
    }

    /// Timings only (asserts nothing about speed): ours against oneDNN's direct convolution on the
    /// SSD300 3×3 layers, in the layout the backend prefers. Runs with SSD_WINOGRAD_BENCH=1; set
    /// ONEDNN_MAX_CPU_ISA=AVX2 to time oneDNN as on an AVX2 host. SSD_WINOGRAD_CHUNK_KB overrides
    /// the chunk size, SSD_WINOGRAD_BATCHES (e.g. "1") and SSD_WINOGRAD_REPS the sweep.
    func testBenchmarkAgainstDirect() throws {
        let env = ProcessInfo.processInfo.environment
        guard env["SSD_WINOGRAD_BENCH"] == "1" else { throw XCTSkip("set SSD_WINOGRAD_BENCH=1 to time Winograd") }
        let chunkBytes = env["SSD_WINOGRAD_CHUNK_KB"].flatMap { Int($0) }.map { $0 << 10 } ?? WinogradConvolution.defaultChunkBytes
        let batches = (env["SSD_WINOGRAD_BATCHES"] ?? "1,8").split(separator: ",").compactMap { Int($0) }
        let reps = env["SSD_WINOGRAD_REPS"].flatMap { Int($0) } ?? 3
        let layers = [(64, 300), (128, 150), (256, 75), (512, 38), (512, 19)].filter { l in
            env["SSD_WINOGRAD_CHANNELS"].map { $0.split(separator: ",").contains(Substring(String(l.0) + "@" + String(l.1))) } ?? true
        }
        func time(_ body: () throws -> Void) rethrows -> Double {
            try body()  // warm-up: plans scratch, primes caches and oneDNN's kernels
            var best = Double.infinity
            for _ in 0..<reps {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            return best
        }
        print("[bench] ISA cap \(env["ONEDNN_MAX_CPU_ISA"] ?? "none"), threads \(Threads.count), chunk \(chunkBytes >> 10) KiB")
        print("[bench] shape | layout | fwd direct / ours ms (x) | bwd data direct / ours ms (x) | bwd weights direct / ours ms (x)")
        for n in batches {
            for (c, size) in layers {
                let s = ConvolutionShape(batch: n, inChannels: c, outChannels: c, inHeight: size, inWidth: size,
                                         kernelSize: (3, 3), padding: (1, 1))
                let layout = dnnl.preferredLayout(channels: c)
                let direct = try dnnl.convolution(s, algorithm: .direct, input: layout, output: layout, fusedReLU: true)
                let ours = try WinogradConvolution(s, input: layout, output: layout, fusedReLU: true, gemm: dnnl,
                                                   chunkBytes: chunkBytes)
                let x = randomTensor(s.inputShape, seed: 1), w = randomTensor(s.weightShape, seed: 2, std: 0.05)
                let b = randomTensor([c], seed: 3), dy = randomTensor(s.outputShape, seed: 4)
                let y = Tensor(shape: s.outputShape), dx = Tensor(shape: s.inputShape)
                let dw = Tensor(shape: s.weightShape), db = Tensor(shape: [c])
                var row: [String] = []
                for pass in 0..<3 {
                    let kernels: [ConvolutionKernel] = [direct, ours]
                    let ms = try kernels.map { k in
                        try time {
                            switch pass {
                            case 0: try k.forward(input: x.data, weight: w.data, bias: b.data, output: y.data)
                            case 1: try k.backwardData(outputGrad: dy.data, weight: w.data, inputGrad: dx.data)
                            default: try k.backwardWeights(input: x.data, outputGrad: dy.data, weightGrad: dw.data, biasGrad: db.data)
                            }
                        }
                    }
                    row.append(String(format: "%.2f / %.2f (%.2fx)", ms[0], ms[1], ms[0] / ms[1]))
                }
                print("[bench] N\(n) \(c)→\(c) \(size)×\(size) | \(layout) [\(direct.implementation)] | " + row.joined(separator: " | "))
            }
        }
    }
}
