/// The reference twin of `DNNLBackend`: plain loops straight from the definitions, accumulated
/// in Double. Slow; for tests on small shapes and as the executable specification of each op.
public final class NaiveBackend: Backend {
    public let name = "naive"
    public init() {}

    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm) throws -> ConvolutionKernel {
        try shape.validate()
        return NaiveConvolution(shape: shape)
    }

    public func maxPooling(_ shape: PoolingShape) throws -> PoolingKernel {
        try shape.validate()
        return NaiveMaxPooling(shape: shape)
    }

    public func reluForward(_ x: UnsafeMutablePointer<Float>, count: Int) throws {
        for i in 0..<count where !(x[i] > 0) { x[i] = 0 }
    }

    public func reluBackward(output: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) throws {
        for i in 0..<count where !(output[i] > 0) { grad[i] = 0 }
    }

    public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) throws {
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                let prior = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * s + prior)
            }
        }
    }
}

/// Direct convolution by its definition.
final class NaiveConvolution: ConvolutionKernel {
    let shape: ConvolutionShape
    let implementation = "naive"
    init(shape: ConvolutionShape) { self.shape = shape }

    /// Calls `body(n, co, oy, ox, ci, ky, kx, inputIndex)` for every tap that lands inside the input.
    @inline(__always)
    private func forEachTap(_ body: (Int, Int, Int, Int, Int, Int, Int, Int) -> Void) {
        let s = shape
        for n in 0..<s.batch {
            for co in 0..<s.outChannels {
                for oy in 0..<s.outHeight {
                    for ox in 0..<s.outWidth {
                        for ci in 0..<s.inChannels {
                            for ky in 0..<s.kernelHeight {
                                let iy = oy * s.strideHeight - s.paddingHeight + ky * s.dilationHeight
                                if iy < 0 || iy >= s.inHeight { continue }
                                for kx in 0..<s.kernelWidth {
                                    let ix = ox * s.strideWidth - s.paddingWidth + kx * s.dilationWidth
                                    if ix < 0 || ix >= s.inWidth { continue }
                                    body(n, co, oy, ox, ci, ky, kx, ((n * s.inChannels + ci) * s.inHeight + iy) * s.inWidth + ix)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private func weightIndex(_ co: Int, _ ci: Int, _ ky: Int, _ kx: Int) -> Int {
        ((co * shape.inChannels + ci) * shape.kernelHeight + ky) * shape.kernelWidth + kx
    }

    private func outputIndex(_ n: Int, _ co: Int, _ oy: Int, _ ox: Int) -> Int {
        ((n * shape.outChannels + co) * shape.outHeight + oy) * shape.outWidth + ox
    }

    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) throws {
        let outCount = shape.outputShape.reduce(1, *)
        var acc = [Double](repeating: 0, count: outCount)
        forEachTap { n, co, oy, ox, ci, ky, kx, i in
            acc[outputIndex(n, co, oy, ox)] += Double(input[i]) * Double(weight[weightIndex(co, ci, ky, kx)])
        }
        let plane = shape.outHeight * shape.outWidth
        for o in 0..<outCount {
            let co = (o / plane) % shape.outChannels
            output[o] = Float(acc[o] + Double(bias?[co] ?? 0))
        }
    }

    func backwardData(outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      inputGrad: UnsafeMutablePointer<Float>) throws {
        var acc = [Double](repeating: 0, count: shape.inputShape.reduce(1, *))
        forEachTap { n, co, oy, ox, ci, ky, kx, i in
            acc[i] += Double(outputGrad[outputIndex(n, co, oy, ox)]) * Double(weight[weightIndex(co, ci, ky, kx)])
        }
        for i in 0..<acc.count { inputGrad[i] = Float(acc[i]) }
    }

    func backwardWeights(input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws {
        var acc = [Double](repeating: 0, count: shape.weightShape.reduce(1, *))
        forEachTap { n, co, oy, ox, ci, ky, kx, i in
            acc[weightIndex(co, ci, ky, kx)] += Double(input[i]) * Double(outputGrad[outputIndex(n, co, oy, ox)])
        }
        for i in 0..<acc.count { weightGrad[i] += Float(acc[i]) }
        if let biasGrad {
            let plane = shape.outHeight * shape.outWidth
            for co in 0..<shape.outChannels {
                var s = 0.0
                for n in 0..<shape.batch {
                    let base = (n * shape.outChannels + co) * plane
                    for p in 0..<plane { s += Double(outputGrad[base + p]) }
                }
                biasGrad[co] += Float(s)
            }
        }
    }
}

/// Max pooling by its definition; ties go to the first maximum in row-major window order,
/// padding is −∞ (PyTorch's semantics).
final class NaiveMaxPooling: PoolingKernel {
    let shape: PoolingShape
    private var argmax: [Int] = []
    init(shape: PoolingShape) { self.shape = shape }

    func forward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) throws {
        let s = shape
        argmax = [Int](repeating: -1, count: s.outputShape.reduce(1, *))
        var o = 0
        for plane in 0..<(s.batch * s.channels) {
            let base = plane * s.inHeight * s.inWidth
            for oy in 0..<s.outHeight {
                for ox in 0..<s.outWidth {
                    var best = -Float.infinity, bestIndex = -1
                    for ky in 0..<s.kernel {
                        let iy = oy * s.stride - s.padding + ky
                        if iy < 0 || iy >= s.inHeight { continue }
                        for kx in 0..<s.kernel {
                            let ix = ox * s.stride - s.padding + kx
                            if ix < 0 || ix >= s.inWidth { continue }
                            let i = base + iy * s.inWidth + ix
                            if bestIndex < 0 || input[i] > best { best = input[i]; bestIndex = i }
                        }
                    }
                    output[o] = best
                    argmax[o] = bestIndex
                    o += 1
                }
            }
        }
    }

    func backward(outputGrad: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) throws {
        let inCount = shape.inputShape.reduce(1, *)
        inputGrad.update(repeating: 0, count: inCount)
        for (o, i) in argmax.enumerated() where i >= 0 { inputGrad[i] += outputGrad[o] }
    }
}
