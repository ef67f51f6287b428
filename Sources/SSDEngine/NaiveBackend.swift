/// The reference twin of `DNNLBackend`: plain loops straight from the definitions, accumulated
/// in Double. Slow; for tests on small shapes and as the executable specification of each op.
public final class NaiveBackend: Backend {
    public let name = "naive"
    public init() {}

    public func preferredLayout(channels: Int) -> ActivationLayout { .nchw }

    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout,
                            output: ActivationLayout, activation: ActivationFunction?, inference: Bool) throws -> ConvolutionKernel {
        try shape.validate()
        try checkLayout(input, channels: shape.inChannels)
        try checkLayout(output, channels: shape.outChannels)
        // A training kernel fuses only a ReLU (as oneDNN's): the others need their pre-activation.
        let fused = inference || activation == .relu ? activation : nil
        return NaiveConvolution(shape: shape, inputLayout: input, outputLayout: output, fusedActivation: fused)
    }

    public func maxPooling(_ shape: PoolingShape, layout: ActivationLayout, inference: Bool) throws -> PoolingKernel {
        try shape.validate()
        try checkLayout(layout, channels: shape.channels)
        return NaiveMaxPooling(shape: shape, layout: layout)
    }

    public func reorder(_ source: Tensor, into destination: Tensor) throws {
        try destination.requireShape(source.shape, "reorder destination")
        guard source.shape.count == 4 || (source.layout == .nchw && destination.layout == .nchw) else {
            throw EngineError.invalidArgument("reorder of a non-4-D tensor between layouts")
        }
        if source.layout == destination.layout { destination.copy(from: source); return }
        let s = source.shape
        let packed = unpack(source.data, shape: s, layout: source.layout)
        pack(packed, into: destination.data, shape: s, layout: destination.layout)
    }

    public func reluForward(_ x: UnsafeMutablePointer<Float>, count: Int) throws {
        for i in 0..<count where !(x[i] > 0) { x[i] = 0 }
    }

    public func reluBackward(output: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) throws {
        for i in 0..<count where !(output[i] > 0) { grad[i] = 0 }
    }

    /// Each definition written out again, element by element (not `ActivationFunction.apply`).
    public func activationForward(_ f: ActivationFunction, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                  count: Int) throws {
        func relu6(_ v: Float) -> Float { v < 0 ? 0 : (v > 6 ? 6 : v) }
        for i in 0..<count {
            let x = input[i]
            switch f {
            case .relu: output[i] = x > 0 ? x : 0
            case .relu6: output[i] = relu6(x)
            case .hardswish: output[i] = x * relu6(x + 3) / 6
            case .hardsigmoid: output[i] = relu6(x + 3) / 6
            }
        }
    }

    public func activationBackward(_ f: ActivationFunction, input: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                   count: Int) throws {
        for i in 0..<count {
            let x = input[i], g = grad[i]
            switch f {
            case .relu: grad[i] = x > 0 ? g : 0
            case .relu6: grad[i] = 0 < x && x < 6 ? g : 0
            case .hardswish:
                if x < -3 { grad[i] = 0 } else if x < 3 { grad[i] = g * (x / 3 + 0.5) } else { grad[i] = g }
            case .hardsigmoid: grad[i] = -3 < x && x < 3 ? g * (1 / 6 as Float) : 0
            }
        }
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

func checkLayout(_ layout: ActivationLayout, channels: Int) throws {
    if channels % layout.channelBlock != 0 {
        throw EngineError.invalidArgument("layout \(layout) needs a multiple of \(layout.channelBlock) channels, got \(channels)")
    }
}

/// The elements of an (N, C, H, W) activation in NCHW order, from any layout.
func unpack(_ p: UnsafePointer<Float>, shape s: [Int], layout: ActivationLayout) -> [Float] {
    let plane = s[2] * s[3]
    var out = [Float](repeating: 0, count: s.reduce(1, *))
    for n in 0..<s[0] {
        for c in 0..<s[1] {
            let (base, stride) = layout.channelBase(n: n, c: c, channels: s[1], plane: plane)
            for i in 0..<plane { out[(n * s[1] + c) * plane + i] = p[base + i * stride] }
        }
    }
    return out
}

/// Writes NCHW-ordered `values` into `p` in `layout`.
func pack(_ values: [Float], into p: UnsafeMutablePointer<Float>, shape s: [Int], layout: ActivationLayout) {
    let plane = s[2] * s[3]
    for n in 0..<s[0] {
        for c in 0..<s[1] {
            let (base, stride) = layout.channelBase(n: n, c: c, channels: s[1], plane: plane)
            for i in 0..<plane { p[base + i * stride] = values[(n * s[1] + c) * plane + i] }
        }
    }
}

/// Direct (grouped) convolution by its definition, on NCHW copies of data in any layout.
final class NaiveConvolution: ConvolutionKernel {
    let shape: ConvolutionShape
    let inputLayout: ActivationLayout
    let outputLayout: ActivationLayout
    let fusedActivation: ActivationFunction?
    let implementation = "naive"
    init(shape: ConvolutionShape, inputLayout: ActivationLayout, outputLayout: ActivationLayout,
         fusedActivation: ActivationFunction?) {
        self.shape = shape
        self.inputLayout = inputLayout
        self.outputLayout = outputLayout
        self.fusedActivation = fusedActivation
    }

    /// Calls `body(n, co, oy, ox, cg, ky, kx, inputIndex)` for every tap that lands inside the
    /// input, `cg` being the input channel's index within its group (the weight's second index).
    @inline(__always)
    private func forEachTap(_ body: (Int, Int, Int, Int, Int, Int, Int, Int) -> Void) {
        let s = shape
        let inPerGroup = s.inChannels / s.groups, outPerGroup = s.outChannels / s.groups
        for n in 0..<s.batch {
            for co in 0..<s.outChannels {
                let firstInput = (co / outPerGroup) * inPerGroup
                for oy in 0..<s.outHeight {
                    for ox in 0..<s.outWidth {
                        for cg in 0..<inPerGroup {
                            let ci = firstInput + cg
                            for ky in 0..<s.kernelHeight {
                                let iy = oy * s.strideHeight - s.paddingHeight + ky * s.dilationHeight
                                if iy < 0 || iy >= s.inHeight { continue }
                                for kx in 0..<s.kernelWidth {
                                    let ix = ox * s.strideWidth - s.paddingWidth + kx * s.dilationWidth
                                    if ix < 0 || ix >= s.inWidth { continue }
                                    body(n, co, oy, ox, cg, ky, kx, ((n * s.inChannels + ci) * s.inHeight + iy) * s.inWidth + ix)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Index into the (Cout, Cin/groups, kh, kw) weight.
    private func weightIndex(_ co: Int, _ cg: Int, _ ky: Int, _ kx: Int) -> Int {
        ((co * (shape.inChannels / shape.groups) + cg) * shape.kernelHeight + ky) * shape.kernelWidth + kx
    }

    private func outputIndex(_ n: Int, _ co: Int, _ oy: Int, _ ox: Int) -> Int {
        ((n * shape.outChannels + co) * shape.outHeight + oy) * shape.outWidth + ox
    }

    func forward(input rawInput: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) throws {
        let input = unpack(rawInput, shape: shape.inputShape, layout: inputLayout)
        let outCount = shape.outputShape.reduce(1, *)
        var acc = [Double](repeating: 0, count: outCount)
        forEachTap { n, co, oy, ox, ci, ky, kx, i in
            acc[outputIndex(n, co, oy, ox)] += Double(input[i]) * Double(weight[weightIndex(co, ci, ky, kx)])
        }
        let plane = shape.outHeight * shape.outWidth
        var result = [Float](repeating: 0, count: outCount)
        for o in 0..<outCount {
            let co = (o / plane) % shape.outChannels
            result[o] = Float(acc[o] + Double(bias?[co] ?? 0))
            if let f = fusedActivation { result[o] = f.apply(result[o]) }
        }
        pack(result, into: output, shape: shape.outputShape, layout: outputLayout)
    }

    func backwardData(outputGrad rawGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      inputGrad: UnsafeMutablePointer<Float>) throws {
        let outputGrad = unpack(rawGrad, shape: shape.outputShape, layout: outputLayout)
        var acc = [Double](repeating: 0, count: shape.inputShape.reduce(1, *))
        forEachTap { n, co, oy, ox, ci, ky, kx, i in
            acc[i] += Double(outputGrad[outputIndex(n, co, oy, ox)]) * Double(weight[weightIndex(co, ci, ky, kx)])
        }
        pack(acc.map { Float($0) }, into: inputGrad, shape: shape.inputShape, layout: inputLayout)
    }

    func backwardWeights(input rawInput: UnsafePointer<Float>, outputGrad rawGrad: UnsafePointer<Float>,
                         weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws {
        let input = unpack(rawInput, shape: shape.inputShape, layout: inputLayout)
        let outputGrad = unpack(rawGrad, shape: shape.outputShape, layout: outputLayout)
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
    let layout: ActivationLayout
    private var argmax: [Int] = []
    init(shape: PoolingShape, layout: ActivationLayout) {
        self.shape = shape
        self.layout = layout
    }

    func forward(input rawInput: UnsafePointer<Float>, output rawOutput: UnsafeMutablePointer<Float>) throws {
        let input = unpack(rawInput, shape: shape.inputShape, layout: layout)
        var output = [Float](repeating: 0, count: shape.outputShape.reduce(1, *))
        defer { pack(output, into: rawOutput, shape: shape.outputShape, layout: layout) }
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

    func backward(outputGrad rawGrad: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) throws {
        let outputGrad = unpack(rawGrad, shape: shape.outputShape, layout: layout)
        var grad = [Float](repeating: 0, count: shape.inputShape.reduce(1, *))
        for (o, i) in argmax.enumerated() where i >= 0 { grad[i] += outputGrad[o] }
        pack(grad, into: inputGrad, shape: shape.inputShape, layout: layout)
    }
}
