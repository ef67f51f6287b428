import SSDEngine

/// The conv4_3 normalisation of SSD: each pixel's channel vector is divided by its L2 norm,
/// then each channel is scaled by a learnable factor (`rescale_factors`, (1, C, 1, 1),
/// initialised to 20). As the reference, no epsilon: y = x / ‖x‖ · s. Works in NCHW or
/// any blocked layout; the output has the input's layout.
public final class L2Norm: Layer {
    /// (1, C, 1, 1)
    public let scale: Parameter
    public let channels: Int
    /// (N, C, H, W), the input's layout.
    public private(set) var output = Tensor(shape: [0])
    /// (N, H, W): ‖x‖ per pixel, kept for the backward.
    private var norms = Tensor(shape: [0])
    /// (tiles, C): per-tile partial sums of d loss / d scale.
    private var scalePartials = Tensor(shape: [0])
    /// (tiles, tile): per-pixel Σ_k s_k·dy_k·x_k of the backward.
    private var dots = Tensor(shape: [0])

    private static let tile = 512

    public init(name: String = "rescale_factors", channels: Int, initialScale: Float = 20) {
        self.channels = channels
        scale = Parameter(name: name, role: .scale, shape: [1, channels, 1, 1])
        scale.value.fill(initialScale)
    }

    public var parameters: [Parameter] { [scale] }
    /// The same computation in both modes.
    public var isTraining = true

    private func plan(_ x: Tensor, backward: Bool) throws {
        let shape = x.shape
        guard shape.count == 4, shape[1] == channels else {
            throw EngineError.shapeMismatch(what: "L2Norm input", expected: [shape.first ?? 0, channels, -1, -1], got: shape)
        }
        if output.shape != shape || output.layout != x.layout {
            output = Tensor(shape: shape, layout: x.layout)
            norms = Tensor(shape: [shape[0], shape[2], shape[3]])
        }
        if backward && scalePartials.shape != [tiles(shape), channels] {
            scalePartials = Tensor(shape: [tiles(shape), channels])
            dots = Tensor(shape: [tiles(shape), Self.tile])
        }
    }

    private func tiles(_ shape: [Int]) -> Int { shape[0] * ((shape[2] * shape[3] + Self.tile - 1) / Self.tile) }

    /// Calls body(n, pixelRange, tileIndex) for every (image, pixel tile), in parallel.
    private func forEachTile(_ shape: [Int], _ body: (Int, Range<Int>, Int) -> Void) {
        let plane = shape[2] * shape[3]
        let perImage = (plane + Self.tile - 1) / Self.tile
        parallelFor(shape[0] * perImage) { range in
            for t in range {
                let n = t / perImage, start = (t % perImage) * Self.tile
                body(n, start..<min(plane, start + Self.tile), t)
            }
        }
    }

    /// y = x / ‖x‖ · s. Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        try plan(x, backward: false)
        let c = channels, plane = x.dim(2) * x.dim(3), layout = x.layout
        let xp = x.data, yp = output.data, np = norms.data, sp = scale.value.data
        Profiler.measure("l2norm forward") {
        forEachTile(x.shape) { n, pixels, _ in
            let norm = np + n * plane
            for p in pixels { norm[p] = 0 }
            for ch in 0..<c {
                let (base, ps) = layout.channelBase(n: n, c: ch, channels: c, plane: plane)
                for p in pixels { let v = xp[base + p * ps]; norm[p] += v * v }
            }
            for p in pixels { norm[p] = norm[p].squareRoot() }
            for ch in 0..<c {
                let (base, ps) = layout.channelBase(n: n, c: ch, channels: c, plane: plane)
                let s = sp[ch]
                for p in pixels { yp[base + p * ps] = (xp[base + p * ps] / norm[p]) * s }
            }
        }
        }
        return output
    }

    /// From `outputGrad` and the forward's input `x` (same shape and layout): writes
    /// `inputGrad` and accumulates d loss / d scale.
    ///
    /// dx_c = s_c·dy_c/‖x‖ − x_c·(Σ_k s_k·dy_k·x_k)/‖x‖³,  ds_c = Σ dy_c·x_c/‖x‖.
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        guard x.shape.count == 4, norms.shape == [x.dim(0), x.dim(2), x.dim(3)] else {
            throw EngineError.invalidArgument("L2Norm backward needs a forward of the same input first")
        }
        try plan(x, backward: true)
        try outputGrad.requireShape(x.shape, layout: x.layout, "L2Norm output gradient")
        try inputGrad?.requireShape(x.shape, layout: x.layout, "L2Norm input gradient")
        let c = channels, plane = x.dim(2) * x.dim(3), layout = x.layout
        let xp = x.data, gp = outputGrad.data, dxp = inputGrad?.data, np = norms.data, sp = scale.value.data
        let partials = scalePartials.data, dotsp = dots.data
        Profiler.measure("l2norm backward") {
        forEachTile(x.shape) { n, pixels, t in
            let norm = np + n * plane
            let dot = dotsp + t * Self.tile - pixels.lowerBound  // indexed by pixel
            for p in pixels { dot[p] = 0 }
            for ch in 0..<c {
                let (base, ps) = layout.channelBase(n: n, c: ch, channels: c, plane: plane)
                let s = sp[ch]
                var partial: Float = 0
                for p in pixels {
                    let gx = gp[base + p * ps] * xp[base + p * ps]
                    dot[p] += s * gx
                    partial += gx / norm[p]
                }
                partials[t * c + ch] = partial
            }
            guard let dxp else { return }
            for ch in 0..<c {
                let (base, ps) = layout.channelBase(n: n, c: ch, channels: c, plane: plane)
                let s = sp[ch]
                for p in pixels {
                    let inv = 1 / norm[p]
                    dxp[base + p * ps] = s * gp[base + p * ps] * inv - xp[base + p * ps] * dot[p] * inv * inv * inv
                }
            }
        }
        }
        let tileCount = scalePartials.dim(0)
        for ch in 0..<c {
            var s: Float = 0
            for t in 0..<tileCount { s += partials[t * c + ch] }
            scale.grad.data[ch] += s
        }
    }
}
