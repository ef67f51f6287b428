import SSDEngine

/// The conv4_3 normalisation of SSD: each pixel's channel vector is divided by its L2 norm,
/// then each channel is scaled by a learnable factor (`rescale_factors`, (1, C, 1, 1),
/// initialised to 20). As the reference, no epsilon: y = x / ‖x‖ · s.
public final class L2Norm {
    /// (1, C, 1, 1)
    public let scale: Parameter
    public let channels: Int
    /// (N, C, H, W)
    public private(set) var output = Tensor(shape: [0])
    /// (N, C, H, W)
    public private(set) var inputGrad = Tensor(shape: [0])
    /// (N, H, W): ‖x‖ per pixel, kept for the backward.
    private var norms = Tensor(shape: [0])
    /// (tiles, C): per-tile partial sums of d loss / d scale.
    private var scalePartials = Tensor(shape: [0])
    /// (tiles, tile): per-pixel Σ_k s_k·dy_k·x_k of the backward.
    private var dots = Tensor(shape: [0])

    private static let tile = 512

    public init(name: String = "rescale_factors", channels: Int, initialScale: Float = 20) {
        self.channels = channels
        scale = Parameter(name: name, shape: [1, channels, 1, 1])
        scale.value.fill(initialScale)
    }

    public var parameters: [Parameter] { [scale] }

    private func plan(_ shape: [Int], backward: Bool) throws {
        guard shape.count == 4, shape[1] == channels else {
            throw EngineError.shapeMismatch(what: "L2Norm input", expected: [shape.first ?? 0, channels, -1, -1], got: shape)
        }
        if output.shape != shape {
            output = Tensor(shape: shape)
            norms = Tensor(shape: [shape[0], shape[2], shape[3]])
        }
        if backward && inputGrad.shape != shape {
            inputGrad = Tensor(shape: shape)
            let tiles = shape[0] * ((shape[2] * shape[3] + Self.tile - 1) / Self.tile)
            scalePartials = Tensor(shape: [tiles, channels])
            dots = Tensor(shape: [tiles, Self.tile])
        }
    }

    /// Calls body(n, pixelRange, tileIndex) for every (image, pixel tile), in parallel.
    private func forEachTile(_ shape: [Int], _ body: @escaping (Int, Range<Int>, Int) -> Void) {
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
        try plan(x.shape, backward: false)
        let c = channels, plane = x.dim(2) * x.dim(3)
        let xp = x.data, yp = output.data, np = norms.data, sp = scale.value.data
        forEachTile(x.shape) { n, pixels, _ in
            let base = n * c * plane
            for p in pixels { np[n * plane + p] = 0 }
            for ch in 0..<c {
                let row = base + ch * plane
                for p in pixels { let v = xp[row + p]; np[n * plane + p] += v * v }
            }
            for p in pixels { np[n * plane + p] = np[n * plane + p].squareRoot() }
            for ch in 0..<c {
                let row = base + ch * plane, s = sp[ch]
                for p in pixels { yp[row + p] = (xp[row + p] / np[n * plane + p]) * s }
            }
        }
        return output
    }

    /// From `outputGrad` and the forward's input `x`: writes `inputGrad` (returned) and
    /// accumulates d loss / d scale.
    ///
    /// dx_c = s_c·dy_c/‖x‖ − x_c·(Σ_k s_k·dy_k·x_k)/‖x‖³,  ds_c = Σ dy_c·x_c/‖x‖.
    @discardableResult
    public func backward(input x: Tensor, outputGrad: Tensor) throws -> Tensor {
        guard x.shape.count == 4, norms.shape == [x.dim(0), x.dim(2), x.dim(3)] else {
            throw EngineError.invalidArgument("L2Norm backward needs a forward of the same input first")
        }
        try plan(x.shape, backward: true)
        try outputGrad.requireShape(x.shape, "L2Norm output gradient")
        let c = channels, plane = x.dim(2) * x.dim(3)
        let xp = x.data, gp = outputGrad.data, dxp = inputGrad.data, np = norms.data, sp = scale.value.data
        let partials = scalePartials.data, dotsp = dots.data
        forEachTile(x.shape) { n, pixels, t in
            let base = n * c * plane
            let dot = dotsp + t * Self.tile
            dot.update(repeating: 0, count: Self.tile)
            let p0 = pixels.lowerBound
            for ch in 0..<c {
                let row = base + ch * plane, s = sp[ch]
                var partial: Float = 0
                for p in pixels {
                    let gx = gp[row + p] * xp[row + p]
                    dot[p - p0] += s * gx
                    partial += gx / np[n * plane + p]
                }
                partials[t * c + ch] = partial
            }
            for ch in 0..<c {
                let row = base + ch * plane, s = sp[ch]
                for p in pixels {
                    let inv = 1 / np[n * plane + p]
                    dxp[row + p] = s * gp[row + p] * inv - xp[row + p] * dot[p - p0] * inv * inv * inv
                }
            }
        }
        let tiles = scalePartials.dim(0)
        for ch in 0..<c {
            var s: Float = 0
            for t in 0..<tiles { s += partials[t * c + ch] }
            scale.grad.data[ch] += s
        }
        return inputGrad
    }
}
