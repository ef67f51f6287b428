import SSDEngine
import SSDLayers

/// The localisation and class heads on one feature map, and the permute/reshape/concatenate
/// that turns their (N, boxes·k, H, W) outputs into rows of the stacked (N, n_priors, k)
/// predictions — the reference's `x.permute(0, 2, 3, 1).contiguous().view(N, -1, k)` followed
/// by `torch.cat(dim=1)` (torchvision's heads stack the same way).
final class PredictionHead {
    let boxes: Int
    let classes: Int
    /// (N, C, H, W) → (N, boxes·4, H, W) and (N, boxes·classes, H, W), both NCHW: the scatter
    /// into the stacked predictions reads them plane by plane.
    let loc: Layer
    let cls: Layer
    /// Index of this map's first prior in the stacked predictions (set by the forward).
    private var priorOffset = 0
    /// (N, boxes·4, H, W) and (N, boxes·classes, H, W): gradients gathered from the stacked ones.
    private var locGrad = Tensor(shape: [0])
    private var clsGrad = Tensor(shape: [0])

    init(loc: Layer, cls: Layer, boxes: Int, classes: Int) {
        self.loc = loc
        self.cls = cls
        self.boxes = boxes
        self.classes = classes
    }

    /// Runs both heads on `feature` (N, C, H, W) and scatters their outputs into `locs`
    /// (N, n_priors, 4) and `scores` (N, n_priors, classes) from prior `priorOffset` on.
    func forward(_ feature: Tensor, locs: Tensor, scores: Tensor, priorOffset: Int) throws {
        self.priorOffset = priorOffset
        let l = try loc.forward(feature)
        let c = try cls.forward(feature)
        let plane = feature.dim(2) * feature.dim(3), n = feature.dim(0)
        try l.requireShape([n, boxes * 4, feature.dim(2), feature.dim(3)], layout: .nchw, "localisation head output")
        try c.requireShape([n, boxes * classes, feature.dim(2), feature.dim(3)], layout: .nchw, "class head output")
        precondition(priorOffset + plane * boxes <= locs.dim(1), "the caller checks the prior count")
        Profiler.measure("heads scatter") {
            Self.scatter(l, k: 4, boxes: boxes, into: locs, offset: priorOffset)
            Self.scatter(c, k: classes, boxes: boxes, into: scores, offset: priorOffset)
        }
    }

    /// From the stacked gradients, accumulates both heads' parameter gradients and writes
    /// d loss / d feature into `featureGrad`; `scratch` (the feature's shape and layout) is
    /// overwritten.
    func backward(_ feature: Tensor, gradLocs: Tensor, gradScores: Tensor, featureGrad: Tensor, scratch: Tensor) throws {
        if locGrad.shape != loc.output.shape { locGrad = Tensor(shape: loc.output.shape) }
        if clsGrad.shape != cls.output.shape { clsGrad = Tensor(shape: cls.output.shape) }
        Profiler.measure("heads gather") {
            Self.gather(gradLocs, k: 4, boxes: boxes, offset: priorOffset, into: locGrad)
            Self.gather(gradScores, k: classes, boxes: boxes, offset: priorOffset, into: clsGrad)
        }
        try loc.backward(input: feature, outputGrad: locGrad, inputGrad: featureGrad)
        try cls.backward(input: feature, outputGrad: clsGrad, inputGrad: scratch)
        Profiler.measure("gradient sums") { add(scratch, into: featureGrad) }
    }

    /// map (N, boxes·k, H, W) → stacked[n, offset + (y·W + x)·boxes + b, j] = map[n, b·k + j, y, x]
    static func scatter(_ map: Tensor, k: Int, boxes: Int, into stacked: Tensor, offset: Int) {
        let n = map.dim(0), plane = map.dim(2) * map.dim(3), priors = stacked.dim(1)
        let src = map.data, dst = stacked.data
        parallelFor(n * boxes) { range in
            for nb in range {
                let i = nb / boxes, b = nb % boxes
                for j in 0..<k {
                    let s = src + (i * boxes * k + b * k + j) * plane
                    let d = dst + (i * priors + offset + b) * k + j
                    for p in 0..<plane { d[p * boxes * k] = s[p] }
                }
            }
        }
    }

    /// The inverse of `scatter`: map[n, b·k + j, y, x] = stacked[n, offset + (y·W + x)·boxes + b, j]
    static func gather(_ stacked: Tensor, k: Int, boxes: Int, offset: Int, into map: Tensor) {
        let n = map.dim(0), plane = map.dim(2) * map.dim(3), priors = stacked.dim(1)
        let src = stacked.data, dst = map.data
        parallelFor(n * boxes) { range in
            for nb in range {
                let i = nb / boxes, b = nb % boxes
                for j in 0..<k {
                    let d = dst + (i * boxes * k + b * k + j) * plane
                    let s = src + (i * priors + offset + b) * k + j
                    for p in 0..<plane { d[p] = s[p * boxes * k] }
                }
            }
        }
    }
}
