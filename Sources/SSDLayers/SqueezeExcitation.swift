import SSDEngine

/// torchvision's `SqueezeExcitation(input_channels, squeeze_channels)` as MobileNetV3 uses it
/// (activation ReLU, scale activation Hardsigmoid):
///
///     p = adaptive_avg_pool2d(x, 1)          // (N, C, 1, 1)
///     s = hardsigmoid(fc2(relu(fc1(p))))     // (N, C, 1, 1)
///     y = x · s                              // per image and channel
///
/// fc1 (C → squeeze) and fc2 (squeeze → C) are 1×1 convolutions with bias, named
/// `name.fc1.weight`, `name.fc1.bias`, `name.fc2.weight`, `name.fc2.bias`. The input may be
/// in any layout (the output has the input's); the squeezed path runs in NCHW. Buffers are
/// planned at the first forward of an input shape.
public final class SqueezeExcitation: Layer {
    public let channels: Int
    public let squeezeChannels: Int
    /// (squeeze, C, 1, 1) + bias, ReLU.
    public let fc1: Conv2D
    /// (C, squeeze, 1, 1) + bias, hardsigmoid: its output is the scale s.
    public let fc2: Conv2D
    /// Setting it sets fc1's and fc2's.
    public var isTraining = true { didSet { fc1.isTraining = isTraining; fc2.isTraining = isTraining } }
    public var sublayers: [Layer] { [fc1, fc2] }
    /// (N, C, H, W) in the input's layout: the last forward's result.
    public private(set) var output = Tensor(shape: [0])
    public let name: String

    /// (N, C, 1, 1): the pooled input, and the gradients of the pooled input and of the scale.
    private var pooled = Tensor(shape: [0])
    private var pooledGrad = Tensor(shape: [0])
    private var scaleGrad = Tensor(shape: [0])
    /// (N, squeeze, 1, 1): the gradient of fc1's output.
    private var hiddenGrad = Tensor(shape: [0])

    /// `name` is the state_dict prefix (e.g. `features.4.block.2`).
    public init(name: String, channels: Int, squeezeChannels: Int, backend: Backend) {
        self.name = name
        self.channels = channels
        self.squeezeChannels = squeezeChannels
        fc1 = Conv2D(name: name + ".fc1", inputChannels: channels, outputChannels: squeezeChannels, kernelSize: 1,
                     activation: .relu, backend: backend)
        fc2 = Conv2D(name: name + ".fc2", inputChannels: squeezeChannels, outputChannels: channels, kernelSize: 1,
                     activation: .hardsigmoid, backend: backend)
    }

    /// fc1's weight and bias, then fc2's (state_dict order).
    public var parameters: [Parameter] { fc1.parameters + fc2.parameters }

    private func plan(_ x: Tensor) throws {
        guard x.shape.count == 4, x.dim(1) == channels else {
            throw EngineError.shapeMismatch(what: "\(name) input", expected: [x.shape.first ?? 0, channels, -1, -1], got: x.shape)
        }
        if output.shape != x.shape || output.layout != x.layout { output = Tensor(shape: x.shape, layout: x.layout) }
        let n = x.dim(0)
        if pooled.shape != [n, channels, 1, 1] {
            pooled = Tensor(shape: [n, channels, 1, 1])
            pooledGrad = Tensor(shape: [n, channels, 1, 1])
            scaleGrad = Tensor(shape: [n, channels, 1, 1])
            hiddenGrad = Tensor(shape: [n, squeezeChannels, 1, 1])
        }
    }

    /// Calls `body(plane index r = n·C + c, base, pixel stride)` for every (image, channel) of
    /// `x`, in parallel.
    private func forEachPlane(_ x: Tensor, _ body: (Int, Int, Int) -> Void) {
        let c = channels, plane = x.dim(2) * x.dim(3), layout = x.layout
        parallelFor(x.dim(0) * c) { range in
            for r in range {
                let (base, stride) = layout.channelBase(n: r / c, c: r % c, channels: c, plane: plane)
                body(r, base, stride)
            }
        }
    }

    /// Calls `body(image n, group g, run, block b)` for every contiguous run of `x`: the plane of
    /// channel g in NCHW (b = 1), or the b channels of block g, pixel-major, in nChw{b}c —
    /// in parallel. b must divide 16.
    private func forEachRun(_ x: Tensor, _ body: (Int, Int, UnsafeMutablePointer<Float>, Int) -> Void) {
        let block = x.layout.channelBlock, groups = channels / block, plane = x.dim(2) * x.dim(3), xp = x.data
        precondition(16 % block == 0 && channels % block == 0, "\(x.layout) with \(channels) channels")
        parallelFor(x.dim(0) * groups) { range in
            for r in range { body(r / groups, r % groups, xp + r * plane * block, block) }
        }
    }

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        try plan(x)
        let plane = x.dim(2) * x.dim(3), xp = x.data, pp = pooled.data
        Profiler.measure("\(name) pool") {
            forEachRun(x) { n, g, run, block in
                // 16 floats at a time along the run; lane l holds channel g·b + l mod b.
                var total = SIMD16<Double>(repeating: 0), v = 0
                let vectors = plane * block / 16
                while v < vectors {
                    var row = SIMD16<Float>(repeating: 0)
                    for i in v..<min(vectors, v + 256) { row += UnsafeRawPointer(run + 16 * i).loadUnaligned(as: SIMD16<Float>.self) }
                    for l in 0..<16 { total[l] += Double(row[l]) }
                    v = min(vectors, v + 256)
                }
                for i in (16 * vectors)..<(plane * block) { total[i & 15] += Double(run[i]) }
                for k in 0..<block {
                    var s = 0.0
                    for l in stride(from: k, to: 16, by: block) { s += total[l] }
                    pp[n * channels + g * block + k] = Float(s / Double(plane))
                }
            }
        }
        pooled.markModified()
        try fc1.forward(pooled)
        let s = try fc2.forward(fc1.output)
        let sp = s.data, yp = output.data
        Profiler.measure("\(name) scale") {
            forEachRun(x) { n, g, run, block in
                var scale = SIMD16<Float>()
                for l in 0..<16 { scale[l] = sp[n * channels + g * block + l % block] }
                let out = yp + (run - xp), vectors = plane * block / 16
                for i in 0..<vectors {
                    let v = UnsafeRawPointer(run + 16 * i).loadUnaligned(as: SIMD16<Float>.self) * scale
                    UnsafeMutableRawPointer(out + 16 * i).storeBytes(of: v, as: SIMD16<Float>.self)
                }
                for i in (16 * vectors)..<(plane * block) { out[i] = run[i] * scale[i & 15] }
            }
        }
        return output
    }

    /// From `outputGrad` dy and the forward's input x: d loss/d s = Σ dy·x per image and channel,
    /// back through fc2 and fc1 (accumulating their parameters' gradients); then, with
    /// `inputGrad`, d loss/d x = dy·s + (d loss/d p)/(H·W). `inputGrad` may be `outputGrad`.
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        try outputGrad.requireShape(output.shape, layout: output.layout, "\(name) output gradient")
        try x.requireShape(output.shape, layout: output.layout, "\(name) input")
        if let inputGrad { try inputGrad.requireShape(x.shape, layout: x.layout, "\(name) input gradient") }
        let plane = x.dim(2) * x.dim(3), xp = x.data, dy = outputGrad.data, dsp = scaleGrad.data
        forEachPlane(x) { r, base, stride in
            var s = 0.0
            for i in 0..<plane { s += Double(dy[base + i * stride]) * Double(xp[base + i * stride]) }
            dsp[r] = Float(s)
        }
        try fc2.backward(input: fc1.output, outputGrad: scaleGrad, inputGrad: hiddenGrad)
        try fc1.backward(input: pooled, outputGrad: hiddenGrad, inputGrad: inputGrad == nil ? nil : pooledGrad)
        guard let dx = inputGrad?.data else { return }
        let sp = fc2.output.data, dp = pooledGrad.data, inverse = 1 / Float(plane)
        forEachPlane(x) { r, base, stride in
            let scale = sp[r], spread = dp[r] * inverse
            for i in 0..<plane { dx[base + i * stride] = dy[base + i * stride] * scale + spread }
        }
    }
}
