import SSDEngine

/// Batch normalisation over (N, H, W) per channel — PyTorch's `nn.BatchNorm2d(C, eps=1e-5,
/// momentum=0.1)` — optionally followed by a ReLU. In training mode it normalises with the
/// batch's statistics and updates the running ones (mean, and the unbiased variance, with
/// `momentum`); in evaluation mode it uses the running statistics. Works in NCHW or nChw16c;
/// the output has the input's layout.
public final class BatchNorm2D {
    /// γ (C), initialised to 1.
    public let weight: Parameter
    /// β (C), initialised to 0.
    public let bias: Parameter
    /// Running mean (C), initialised to 0; saved with the weights, not learned.
    public let runningMean: Tensor
    /// Running (unbiased) variance (C), initialised to 1.
    public let runningVariance: Tensor
    public let channels: Int
    public let epsilon: Float
    public let momentum: Float
    public let activation: Activation
    /// Training mode (batch statistics) or evaluation mode (running statistics).
    public var isTraining = true
    /// The state_dict prefix (`name.weight`, `name.running_mean`, …).
    public let name: String

    /// (N, C, H, W): the last forward's output.
    public private(set) var output = Tensor(shape: [0])
    /// (C): the statistics the last forward normalised with, and 1/√(var + ε).
    private var mean = Tensor(shape: [0])
    private var inverseStd = Tensor(shape: [0])

    public init(name: String, channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1, activation: Activation = .none) {
        self.name = name
        self.channels = channels
        self.epsilon = epsilon
        self.momentum = momentum
        self.activation = activation
        weight = Parameter(name: name + ".weight", shape: [channels])
        bias = Parameter(name: name + ".bias", shape: [channels])
        weight.value.fill(1)
        runningMean = Tensor(shape: [channels])
        runningVariance = Tensor(shape: [channels])
        runningVariance.fill(1)
        mean = Tensor(shape: [channels])
        inverseStd = Tensor(shape: [channels])
    }

    public var parameters: [Parameter] { [weight, bias] }
    /// Non-learned tensors saved with the weights, by state_dict name.
    public var buffers: [(String, Tensor)] { [(name + ".running_mean", runningMean), (name + ".running_var", runningVariance)] }

    /// Calls `body(n, base, pixelStride)` for every image's run of channel `c`.
    @inline(__always)
    private func forEachRun(_ x: Tensor, channel c: Int, _ body: (Int, Int) -> Void) {
        let plane = x.dim(2) * x.dim(3)
        for n in 0..<x.dim(0) {
            let (base, stride) = x.layout.channelBase(n: n, c: c, channels: channels, plane: plane)
            body(base, stride)
        }
    }

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.shape.count == 4, x.dim(1) == channels else {
            throw EngineError.shapeMismatch(what: "\(name) input", expected: [x.shape.first ?? 0, channels, -1, -1], got: x.shape)
        }
        if output.shape != x.shape || output.layout != x.layout { output = Tensor(shape: x.shape, layout: x.layout) }
        let plane = x.dim(2) * x.dim(3), m = x.dim(0) * plane
        let xp = x.data, yp = output.data
        let mp = mean.data, ip = inverseStd.data, gp = weight.value.data, bp = bias.value.data
        let rm = runningMean.data, rv = runningVariance.data
        let training = isTraining, relu = activation == .relu, eps = epsilon, mom = momentum
        Profiler.measure("\(name) forward") {
            parallelFor(channels) { range in
                for c in range {
                    if training {
                        // Two passes in Double: the mean, then the centred sum of squares.
                        var sum = 0.0
                        forEachRun(x, channel: c) { base, stride in
                            for p in 0..<plane { sum += Double(xp[base + p * stride]) }
                        }
                        let mu = sum / Double(m)
                        var squares = 0.0
                        forEachRun(x, channel: c) { base, stride in
                            for p in 0..<plane { let d = Double(xp[base + p * stride]) - mu; squares += d * d }
                        }
                        let variance = squares / Double(m)
                        mp[c] = Float(mu)
                        ip[c] = Float(1 / (variance + Double(eps)).squareRoot())
                        rm[c] = (1 - mom) * rm[c] + mom * Float(mu)
                        rv[c] = (1 - mom) * rv[c] + mom * Float(m > 1 ? squares / Double(m - 1) : variance)
                    } else {
                        mp[c] = rm[c]
                        ip[c] = 1 / (rv[c] + eps).squareRoot()
                    }
                    let scale = gp[c] * ip[c], shift = bp[c] - mp[c] * gp[c] * ip[c]
                    forEachRun(x, channel: c) { base, stride in
                        for p in 0..<plane {
                            let v = xp[base + p * stride] * scale + shift
                            yp[base + p * stride] = relu ? max(v, 0) : v
                        }
                    }
                }
            }
        }
        return output
    }

    /// From `outputGrad` and the forward's input `x`: accumulates d loss/d γ and d loss/d β and,
    /// when `inputGrad` is given, writes d loss/d x. With a ReLU, masks `outputGrad` in place
    /// first. In evaluation mode the statistics are constants. `inputGrad` may be `outputGrad`
    /// itself (each element is read before it is written).
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        try outputGrad.requireShape(output.shape, layout: output.layout, "\(name) output gradient")
        try x.requireShape(output.shape, layout: output.layout, "\(name) input")
        if let inputGrad { try inputGrad.requireShape(x.shape, layout: x.layout, "\(name) input gradient") }
        let plane = x.dim(2) * x.dim(3), m = Float(x.dim(0) * plane)
        let xp = x.data, yp = output.data, dy = outputGrad.data, dx = inputGrad?.data
        let mp = mean.data, ip = inverseStd.data, gp = weight.value.data
        let dg = weight.grad.data, db = bias.grad.data
        let training = isTraining, relu = activation == .relu
        Profiler.measure("\(name) backward") {
            parallelFor(channels) { range in
                for c in range {
                    var sumDy: Float = 0, sumDyXhat: Float = 0
                    let mu = mp[c], inv = ip[c]
                    forEachRun(x, channel: c) { base, stride in
                        for p in 0..<plane {
                            let i = base + p * stride
                            if relu && !(yp[i] > 0) { dy[i] = 0 }
                            sumDy += dy[i]
                            sumDyXhat += dy[i] * (xp[i] - mu) * inv
                        }
                    }
                    dg[c] += sumDyXhat
                    db[c] += sumDy
                    guard let dx else { continue }
                    let g = gp[c]
                    forEachRun(x, channel: c) { base, stride in
                        for p in 0..<plane {
                            let i = base + p * stride
                            if training {
                                let xhat = (xp[i] - mu) * inv
                                dx[i] = g * inv / m * (m * dy[i] - sumDy - xhat * sumDyXhat)
                            } else {
                                dx[i] = g * inv * dy[i]
                            }
                        }
                    }
                }
            }
        }
    }
}
