import SSDEngine

/// Batch normalisation over (N, H, W) per channel — PyTorch's `nn.BatchNorm2d(C, eps=1e-5,
/// momentum=0.1)` — optionally followed by an activation (ReLU, ReLU6, hardswish, hardsigmoid:
/// torchvision's `Conv2dNormActivation` tail, with `eps=0.001, momentum=0.01` in MobileNetV3).
/// In training mode it normalises with the
/// batch's statistics and updates the running ones (mean, and the unbiased variance, with
/// `momentum`); in evaluation mode it uses the running statistics. Works in NCHW or any
/// blocked nChw{b}c whose block divides 16 (oneDNN's 4, 8 and 16); the output has the input's
/// layout. Any channel count works in NCHW (MobileNetV3's 72, 120, 184, …); a blocked layout
/// needs channels divisible by its block.
///
/// The backward of an activation needs the normalised value z = γ·x̂ + β, not the output:
/// it recomputes z from the input with the forward's per-channel scale and shift (kept, C
/// floats each), bit for bit as the forward did, so it keeps no activation-sized buffer.
///
/// The loops run on 16-float vectors: in nChw{b}c a vector is 16/b pixels' b channels of a
/// block (lane l holds channel l mod b); in NCHW, 16 consecutive pixels of one channel. Sums are taken per row in f32 and
/// gathered in Double, so statistics over millions of pixels keep their precision.
public final class BatchNorm2D: Layer {
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
    /// (C): the statistics the last forward normalised with, as 1/√(var + ε).
    private let mean: Tensor
    private let inverseStd: Tensor
    /// (C): the last forward's z = x·scale + shift, scale = γ·inv, shift = β − μ·scale.
    private var scale: [Float]
    private var shift: [Float]
    /// Per (image, group) partial sums, 16 lanes each: planned per input shape.
    private var partialA: [Double] = []
    private var partialB: [Double] = []

    /// Synchronised batch normalisation over the replicas of a data-parallel job. When set, it
    /// must replace an array of per-channel sums with their sum over every replica (the same
    /// result on every replica; every replica calls it the same number of times: twice in each
    /// training forward, once in each training backward). Training-mode statistics are then those
    /// of every replica's images together — exactly one process's statistics of the whole batch,
    /// up to the order of Double additions — and so are the input gradient's batch terms; γ's and
    /// β's gradients stay this replica's share (the job sums them with every other gradient).
    public var replicaSum: ((inout [Double]) throws -> Void)?
    /// Elements per channel the last training forward's statistics were taken over (all replicas').
    private var statisticsCount = 0.0

    public init(name: String, channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1, activation: Activation = .none) {
        self.name = name
        self.channels = channels
        self.epsilon = epsilon
        self.momentum = momentum
        self.activation = activation
        weight = Parameter(name: name + ".weight", role: .normalizationWeight, shape: [channels])
        bias = Parameter(name: name + ".bias", role: .normalizationBias, shape: [channels])
        weight.value.fill(1)
        runningMean = Tensor(shape: [channels])
        runningVariance = Tensor(shape: [channels])
        runningVariance.fill(1)
        mean = Tensor(shape: [channels])
        inverseStd = Tensor(shape: [channels])
        scale = [Float](repeating: 0, count: channels)
        shift = scale
    }

    public var parameters: [Parameter] { [weight, bias] }
    /// Non-learned tensors saved with the weights, by state_dict name.
    public var buffers: [Buffer] {
        [Buffer(name: name + ".running_mean", role: .runningMean, value: runningMean),
         Buffer(name: name + ".running_var", role: .runningVariance, value: runningVariance)]
    }

    // MARK: Geometry of the vectorised loops

    /// How an (N, C, H, W) tensor splits into runs of 16-float vectors.
    private struct Runs {
        let images: Int
        /// nChw{b}c: channel blocks; NCHW: channels.
        let groups: Int
        /// Channels per group: the block b, or 1 for NCHW.
        let block: Int
        /// Whole vectors per run and the scalar tail after them.
        let vectors: Int
        let tail: Int
        let plane: Int
        var count: Int { images * groups }

        init(_ x: Tensor, channels: Int) throws {
            images = x.dim(0)
            plane = x.dim(2) * x.dim(3)
            block = x.layout.channelBlock
            guard 16 % block == 0 else {
                throw EngineError.invalidArgument("batch normalisation needs a channel block dividing 16, got \(x.layout)")
            }
            guard channels % block == 0 else {
                throw EngineError.invalidArgument("batch normalisation of \(channels) channels in \(x.layout)")
            }
            groups = channels / block
            vectors = plane * block / 16
            tail = plane * block % 16
        }

        /// Element offset of run `r` = image · groups + group.
        func base(_ r: Int) -> Int { r * plane * block }
        func group(_ r: Int) -> Int { r % groups }
    }

    /// The 16 floats at `i`, or element `i` broadcast (the scalar tail).
    @inline(__always)
    private static func load(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ single: Bool) -> SIMD16<Float> {
        single ? SIMD16(repeating: p[i]) : UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
    }

    /// Per-lane values of a per-channel array for group `g`: lane l gets channel b·g + l mod b
    /// (the block's channels repeated), or, in NCHW, channel g broadcast.
    @inline(__always)
    private static func lanes(_ p: UnsafeMutablePointer<Float>, group g: Int, block: Int) -> SIMD16<Float> {
        if block == 16 { return UnsafeRawPointer(p + 16 * g).loadUnaligned(as: SIMD16<Float>.self) }
        var v = SIMD16<Float>()
        for l in 0..<16 { v[l] = p[block * g + l % block] }
        return v
    }

    /// `lanes` of every group, computed once: loops that need a per-channel vector at every
    /// 16 floats read it from here (built lane by lane, it would cost more than the loop's work
    /// wherever the block is not 16).
    private static func laneTable(_ p: UnsafeMutablePointer<Float>, _ runs: Runs) -> [SIMD16<Float>] {
        (0..<runs.groups).map { lanes(p, group: $0, block: runs.block) }
    }

    /// Σ over each run of f(run, offset, isTail), into `partial` (16 lanes per run). For the
    /// tail, f sees single elements broadcast and only the element's own lane counts.
    private func sumRuns(_ runs: Runs, into partial: inout [Double], _ f: (Int, Int, Bool) -> SIMD16<Float>) {
        let rowLength = 256
        partial.withUnsafeMutableBufferPointer { out in
            let outp = out.baseAddress!
            parallelFor(runs.count) { range in
                for r in range {
                    var total = SIMD16<Double>(repeating: 0)
                    var v = 0
                    while v < runs.vectors {
                        let end = min(runs.vectors, v + rowLength)
                        var row = SIMD16<Float>(repeating: 0)
                        for i in v..<end { row += f(r, runs.base(r) + i * 16, false) }
                        for lane in 0..<16 { total[lane] += Double(row[lane]) }
                        v = end
                    }
                    // Tail element i sits at lane i mod 16 (its channel is i mod b).
                    for i in (runs.vectors * 16)..<(runs.vectors * 16 + runs.tail) {
                        total[i & 15] += Double(f(r, runs.base(r) + i, true)[i & 15])
                    }
                    for lane in 0..<16 { outp[16 * r + lane] = total[lane] }
                }
            }
        }
    }

    /// Per-channel totals of per-run partial sums.
    private func channelTotals(_ runs: Runs, _ partial: [Double]) -> [Double] {
        var totals = [Double](repeating: 0, count: channels)
        for r in 0..<runs.count {
            let g = runs.group(r)
            for lane in 0..<16 {
                totals[runs.block * g + lane % runs.block] += partial[16 * r + lane]
            }
        }
        return totals
    }

    /// Calls `vector(offset, z)` for every whole 16-float vector of `x` and `scalar(offset, z)`
    /// for every element of each run's tail, z = x·scale + shift with the kept per-channel
    /// scale and shift: the same arithmetic in the forward and the backward, so both see the
    /// same z bit for bit.
    private func forEachNormalised(_ x: Tensor, _ runs: Runs, vector: (Int, SIMD16<Float>) -> Void,
                                   scalar: (Int, Float) -> Void) {
        let xp = x.data
        scale.withUnsafeMutableBufferPointer { sb in shift.withUnsafeMutableBufferPointer { hb in
            let sp = sb.baseAddress!, hp = hb.baseAddress!
            parallelFor(runs.count) { range in
                for r in range {
                    let g = runs.group(r), base = runs.base(r)
                    let a = Self.lanes(sp, group: g, block: runs.block), b = Self.lanes(hp, group: g, block: runs.block)
                    for i in 0..<runs.vectors {
                        let o = base + 16 * i
                        vector(o, UnsafeRawPointer(xp + o).loadUnaligned(as: SIMD16<Float>.self) * a + b)
                    }
                    for i in (runs.vectors * 16)..<(runs.vectors * 16 + runs.tail) {
                        scalar(base + i, xp[base + i] * a[i & 15] + b[i & 15])
                    }
                }
            }
        }}
    }

    // MARK: Forward and backward

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.shape.count == 4, x.dim(1) == channels else {
            throw EngineError.shapeMismatch(what: "\(name) input", expected: [x.shape.first ?? 0, channels, -1, -1], got: x.shape)
        }
        if output.shape != x.shape || output.layout != x.layout { output = Tensor(shape: x.shape, layout: x.layout) }
        let runs = try Runs(x, channels: channels)
        if partialA.count != 16 * runs.count {
            partialA = [Double](repeating: 0, count: 16 * runs.count)
            partialB = partialA
        }
        let xp = x.data, yp = output.data
        var count = Double(runs.images * runs.plane)
        try Profiler.measure("\(name) forward") {
            if isTraining {
                // Two passes: the mean, then the centred sum of squares (stable for large means).
                sumRuns(runs, into: &partialA) { _, i, tail in Self.load(xp, i, tail) }
                var sums = channelTotals(runs, partialA)
                if let replicaSum {
                    sums.append(count)
                    try replicaSum(&sums)
                    count = sums.removeLast()
                }
                statisticsCount = count
                for c in 0..<channels { mean.data[c] = Float(sums[c] / count) }
                let means = Self.laneTable(mean.data, runs)
                means.withUnsafeBufferPointer { mu in
                    sumRuns(runs, into: &partialB) { r, i, tail in
                        let d = Self.load(xp, i, tail) - mu[runs.group(r)]
                        return d * d
                    }
                }
                var squares = channelTotals(runs, partialB)
                try replicaSum?(&squares)
                for c in 0..<channels {
                    let variance = squares[c] / count
                    inverseStd.data[c] = Float(1 / (variance + Double(epsilon)).squareRoot())
                    runningMean.data[c] = (1 - momentum) * runningMean.data[c] + momentum * mean.data[c]
                    let unbiased = count > 1 ? squares[c] / (count - 1) : variance
                    runningVariance.data[c] = (1 - momentum) * runningVariance.data[c] + momentum * Float(unbiased)
                }
                // Whoever keeps something derived from the statistics (a folded convolution) sees the change.
                runningMean.markModified()
                runningVariance.markModified()
            } else {
                for c in 0..<channels {
                    mean.data[c] = runningMean.data[c]
                    inverseStd.data[c] = 1 / (runningVariance.data[c] + epsilon).squareRoot()
                }
            }
            // y = f(z), z = x·(γ·inv) + (β − μ·γ·inv).
            for c in 0..<channels {
                scale[c] = weight.value.data[c] * inverseStd.data[c]
                shift[c] = bias.value.data[c] - mean.data[c] * scale[c]
            }
            let f = activation.function
            forEachNormalised(x, runs) { i, z in
                let y = f?.apply(z) ?? z
                UnsafeMutableRawPointer(yp + i).storeBytes(of: y, as: SIMD16<Float>.self)
            } scalar: { i, z in
                yp[i] = f?.apply(z) ?? z
            }
        }
        return output
    }

    /// From `outputGrad` and the forward's input `x`: accumulates d loss/d γ and d loss/d β and,
    /// when `inputGrad` is given, writes d loss/d x. With an activation, first multiplies
    /// `outputGrad` in place by its derivative at z (PyTorch's values at the kinks). In evaluation mode the statistics are constants. `inputGrad` may be `outputGrad`
    /// itself (each element is read before it is written).
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        try outputGrad.requireShape(output.shape, layout: output.layout, "\(name) output gradient")
        try x.requireShape(output.shape, layout: output.layout, "\(name) input")
        if let inputGrad { try inputGrad.requireShape(x.shape, layout: x.layout, "\(name) input gradient") }
        let runs = try Runs(x, channels: channels)
        let xp = x.data, dy = outputGrad.data, dx = inputGrad?.data
        let mp = mean.data, ip = inverseStd.data
        let count = Float(isTraining && replicaSum != nil ? statisticsCount : Double(runs.images * runs.plane)), block = runs.block
        try Profiler.measure("\(name) backward") {
            // dy ← dy · f′(z), z recomputed as the forward computed it.
            if let f = activation.function {
                forEachNormalised(x, runs) { i, z in
                    let g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(dy + i).storeBytes(of: f.gradient(g, at: z), as: SIMD16<Float>.self)
                } scalar: { i, z in
                    dy[i] = f.gradient(dy[i], at: z)
                }
            }
            // Σ dy and Σ dy·x̂ per channel.
            sumRuns(runs, into: &partialA) { _, i, tail in Self.load(dy, i, tail) }
            let means = Self.laneTable(mp, runs), inverses = Self.laneTable(ip, runs)
            means.withUnsafeBufferPointer { mu in inverses.withUnsafeBufferPointer { inv in
                sumRuns(runs, into: &partialB) { r, i, tail in
                    let g = runs.group(r)
                    return Self.load(dy, i, tail) * (Self.load(xp, i, tail) - mu[g]) * inv[g]
                }
            }}
            var sumDy = channelTotals(runs, partialA), sumDyXhat = channelTotals(runs, partialB)
            for c in 0..<channels {
                weight.grad.data[c] += Float(sumDyXhat[c])
                bias.grad.data[c] += Float(sumDy[c])
            }
            // The input gradient's batch terms are the whole job's (every replica calls this,
            // whether or not it wants dx, so the collectives stay matched).
            if isTraining, let replicaSum {
                var both = sumDy + sumDyXhat
                try replicaSum(&both)
                sumDy = Array(both[..<channels])
                sumDyXhat = Array(both[channels...])
            }
            guard let dx else { return }
            // Training: dx = γ·inv/M·(M·dy − Σdy − x̂·Σdy·x̂); evaluation: dx = γ·inv·dy.
            var a = [Float](repeating: 0, count: channels), b = a, k = a
            for c in 0..<channels {
                let gi = weight.value.data[c] * ip[c]
                if isTraining {
                    a[c] = gi
                    b[c] = -gi * Float(sumDy[c]) / count
                    k[c] = -gi * Float(sumDyXhat[c]) / count * ip[c]
                } else {
                    a[c] = gi
                }
            }
            // dx = a·dy + b + k·(x − μ)
            a.withUnsafeMutableBufferPointer { ab in b.withUnsafeMutableBufferPointer { bb in k.withUnsafeMutableBufferPointer { kb in
                let ap = ab.baseAddress!, bp = bb.baseAddress!, kp = kb.baseAddress!
                parallelFor(runs.count) { range in
                    for r in range {
                        let g = runs.group(r), base = runs.base(r)
                        let av = Self.lanes(ap, group: g, block: block), bv = Self.lanes(bp, group: g, block: block)
                        let kv = Self.lanes(kp, group: g, block: block), mu = Self.lanes(mp, group: g, block: block)
                        for i in 0..<runs.vectors {
                            let o = base + 16 * i
                            let gv = UnsafeRawPointer(dy + o).loadUnaligned(as: SIMD16<Float>.self)
                            let xv = UnsafeRawPointer(xp + o).loadUnaligned(as: SIMD16<Float>.self)
                            UnsafeMutableRawPointer(dx + o).storeBytes(of: av * gv + bv + kv * (xv - mu), as: SIMD16<Float>.self)
                        }
                        for i in (runs.vectors * 16)..<(runs.vectors * 16 + runs.tail) {
                            let l = i & 15
                            dx[base + i] = av[l] * dy[base + i] + bv[l] + kv[l] * (xp[base + i] - mu[l])
                        }
                    }
                }
            }}}
        }
    }
}
