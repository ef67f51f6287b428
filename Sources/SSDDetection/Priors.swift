import Foundation

/// One feature map of the SSD's prediction layers and the priors placed on it.
public struct FeatureMapSpec: Equatable, Sendable {
    public var name: String
    /// Side of the (square) feature map.
    public var size: Int
    /// The prior scale s: a 1:1 prior is s × s of the image.
    public var scale: Double
    /// Aspect ratios; the 1:1 ratio also gets the extra prior of scale √(s·s_next).
    public var aspectRatios: [Double]

    public init(name: String, size: Int, scale: Double, aspectRatios: [Double]) {
        self.name = name
        self.size = size
        self.scale = scale
        self.aspectRatios = aspectRatios
    }

    /// Priors per location: one per ratio plus the extra 1:1 prior.
    public var boxesPerLocation: Int { aspectRatios.count + (aspectRatios.contains(1) ? 1 : 0) }
}

/// The priors of SSD300, in the reference's order: feature map by feature map (conv4_3,
/// conv7, conv8_2, conv9_2, conv10_2, conv11_2), row by row, column by column, ratio by ratio.
public enum Priors {
    /// SSD300's six feature maps, as in the reference's `create_prior_boxes` (note 0.333, not 1/3).
    public static let ssd300: [FeatureMapSpec] = [
        FeatureMapSpec(name: "conv4_3", size: 38, scale: 0.1, aspectRatios: [1, 2, 0.5]),
        FeatureMapSpec(name: "conv7", size: 19, scale: 0.2, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv8_2", size: 10, scale: 0.375, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv9_2", size: 5, scale: 0.55, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv10_2", size: 3, scale: 0.725, aspectRatios: [1, 2, 0.5]),
        FeatureMapSpec(name: "conv11_2", size: 1, scale: 0.9, aspectRatios: [1, 2, 0.5]),
    ]

    /// SSD512's seven feature maps: the tutorial's rule with the paper's 512 layout.
    public static let ssd512: [FeatureMapSpec] = [
        FeatureMapSpec(name: "conv4_3", size: 64, scale: 0.07, aspectRatios: [1, 2, 0.5]),
        FeatureMapSpec(name: "conv7", size: 32, scale: 0.15, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv8_2", size: 16, scale: 0.30, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv9_2", size: 8, scale: 0.45, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv10_2", size: 4, scale: 0.60, aspectRatios: [1, 2, 3, 0.5, 0.333]),
        FeatureMapSpec(name: "conv11_2", size: 2, scale: 0.75, aspectRatios: [1, 2, 0.5]),
        FeatureMapSpec(name: "conv12_2", size: 1, scale: 0.90, aspectRatios: [1, 2, 0.5]),
    ]

    /// Priors in centre-size form, (count, 4) flattened, clamped to [0, 1] as the reference
    /// does. Computed in Double (the reference's Python floats), then rounded to f32.
    public static func centreSize(_ maps: [FeatureMapSpec] = ssd300) -> [Float] {
        var out: [Float] = []
        for (k, m) in maps.enumerated() {
            for i in 0..<m.size {
                for j in 0..<m.size {
                    let cx = (Double(j) + 0.5) / Double(m.size)
                    let cy = (Double(i) + 0.5) / Double(m.size)
                    for ratio in m.aspectRatios {
                        let r = ratio.squareRoot()
                        out += [cx, cy, m.scale * r, m.scale / r].map { Float($0) }
                        if ratio == 1 {
                            let extra = k + 1 < maps.count ? (m.scale * maps[k + 1].scale).squareRoot() : 1
                            out += [cx, cy, extra, extra].map { Float($0) }
                        }
                    }
                }
            }
        }
        return out.map { min(max($0, 0), 1) }
    }
}

/// torchvision's `DefaultBoxGenerator` (`torchvision.models.detection.anchor_utils`): the
/// default boxes of its SSD models, in its order and with its float arithmetic.
///
/// Scales s_k = min + (max − min)·k/(m − 1) for the m maps, then 1.0 (unless given). Per map,
/// width-height pairs (s_k, s_k), (s′_k, s′_k) with s′_k = √(s_k·s_k+1), then for each ratio r
/// (s_k√r, s_k/√r) and (s_k/√r, s_k√r) — computed in Double (Python floats), rounded to f32,
/// clamped to [0, 1] when `clip`. Centres ((j + 0.5)/f, (i + 0.5)/f) in f32 (f the map's side,
/// or image/step when `steps` are given), row by row, column by column, pair by pair.
/// Square feature maps and images only.
public struct DefaultBoxes: Equatable, Sendable {
    /// Per feature map, the ratios besides 1 (each gives two pairs, r and 1/r).
    public var aspectRatios: [[Int]]
    /// Per feature map, its side (the maps are square).
    public var featureMapSizes: [Int]
    public var minRatio: Double
    public var maxRatio: Double
    /// Explicit scales (one more than the maps); nil: estimated from `minRatio`/`maxRatio`.
    public var scales: [Double]?
    /// Tiling steps in pixels; nil: each map's own side.
    public var steps: [Int]?
    /// Side of the (square) input image in pixels: the pixel form's scale, and the grid when `steps` are given.
    public var imageSize: Int
    public var clip: Bool

    public init(aspectRatios: [[Int]], featureMapSizes: [Int], minRatio: Double = 0.15, maxRatio: Double = 0.9,
                scales: [Double]? = nil, steps: [Int]? = nil, imageSize: Int, clip: Bool = true) {
        precondition(aspectRatios.count == featureMapSizes.count, "one list of aspect ratios per feature map")
        precondition(steps == nil || steps!.count == featureMapSizes.count, "one step per feature map")
        self.aspectRatios = aspectRatios
        self.featureMapSizes = featureMapSizes
        self.minRatio = minRatio
        self.maxRatio = maxRatio
        self.scales = scales
        self.steps = steps
        self.imageSize = imageSize
        self.clip = clip
    }

    /// `ssdlite320_mobilenet_v3_large`'s: `DefaultBoxGenerator([[2, 3]] × 6, min_ratio=0.2,
    /// max_ratio=0.95)` on maps of 20, 10, 5, 3, 2, 1 of a 320 image — 3234 boxes.
    public static let ssdlite320 = DefaultBoxes(aspectRatios: Array(repeating: [2, 3], count: 6),
                                                featureMapSizes: [20, 10, 5, 3, 2, 1], minRatio: 0.2, maxRatio: 0.95,
                                                imageSize: 320)

    /// The scales, as `DefaultBoxGenerator.__init__` computes them (m + 1 values).
    public var resolvedScales: [Double] {
        if let scales { return scales }
        let m = featureMapSizes.count
        if m == 1 { return [minRatio, maxRatio] }
        let range = maxRatio - minRatio
        return (0..<m).map { k in minRatio + range * Double(k) / (Double(m) - 1.0) } + [1.0]
    }

    /// 2 + 2 × (number of ratios) per location, per map.
    public var boxesPerLocation: [Int] { aspectRatios.map { 2 + 2 * $0.count } }

    public var count: Int { zip(featureMapSizes, boxesPerLocation).reduce(0) { $0 + $1.0 * $1.0 * $1.1 } }

    /// Each map's width-height pairs, in f32, clamped when `clip` (`_generate_wh_pairs`).
    public func widthHeightPairs() -> [[(Float, Float)]] {
        let s = resolvedScales
        return aspectRatios.indices.map { k in
            let extra = (s[k] * s[k + 1]).squareRoot()
            var pairs: [(Double, Double)] = [(s[k], s[k]), (extra, extra)]
            for r in aspectRatios[k] {
                let root = Double(r).squareRoot()
                let w = s[k] * root, h = s[k] / root
                pairs += [(w, h), (h, w)]
            }
            return pairs.map { (w, h) in
                let w32 = Float(w), h32 = Float(h)
                return clip ? (min(max(w32, 0), 1), min(max(h32, 0), 1)) : (w32, h32)
            }
        }
    }

    /// Fractional centre-size boxes (count, 4) flattened: torchvision's `default_boxes`.
    public func centreSize() -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(4 * count)
        for (k, pairs) in widthHeightPairs().enumerated() {
            let f = featureMapSizes[k]
            // (arange + 0.5) / f_k in f32; with steps, f_k = image / step (a Python float).
            let fk: Float = steps.map { Float(Double(imageSize) / Double($0[k])) } ?? Float(f)
            for i in 0..<f {
                let cy = (Float(i) + 0.5) / fk
                for j in 0..<f {
                    let cx = (Float(j) + 0.5) / fk
                    for (w, h) in pairs { out += [cx, cy, w, h] }
                }
            }
        }
        return out
    }

    /// Boundary boxes in pixels of the image, (count, 4) flattened, as `DefaultBoxGenerator.forward`
    /// returns them: ((c − 0.5·wh)·size, (c + 0.5·wh)·size) in f32.
    public func boundaryPixels() -> [Float] {
        let cxcy = centreSize()
        let size = Float(imageSize)
        var out = [Float](repeating: 0, count: cxcy.count)
        for b in 0..<(cxcy.count / 4) {
            let i = 4 * b
            let hw = 0.5 * cxcy[i + 2], hh = 0.5 * cxcy[i + 3]
            out[i] = (cxcy[i] - hw) * size
            out[i + 1] = (cxcy[i + 1] - hh) * size
            out[i + 2] = (cxcy[i] + hw) * size
            out[i + 3] = (cxcy[i + 1] + hh) * size
        }
        return out
    }
}

/// Where a detector's priors (anchors, default boxes) come from: the tutorial's
/// `create_prior_boxes` or torchvision's `DefaultBoxGenerator`. Both give fractional
/// centre-size boxes, the form `MultiBoxLoss` and `Detector` take.
public enum AnchorGenerator: Equatable, Sendable {
    case tutorial([FeatureMapSpec])
    case torchvisionDefaultBoxes(DefaultBoxes)

    /// SSD300's priors (the tutorial's).
    public static let ssd300 = AnchorGenerator.tutorial(Priors.ssd300)
    /// `ssdlite320_mobilenet_v3_large`'s default boxes.
    public static let ssdlite320 = AnchorGenerator.torchvisionDefaultBoxes(.ssdlite320)

    /// (count, 4) fractional centre-size boxes, flattened.
    public func centreSize() -> [Float] {
        switch self {
        case let .tutorial(maps): return Priors.centreSize(maps)
        case let .torchvisionDefaultBoxes(boxes): return boxes.centreSize()
        }
    }

    /// Boxes per location of each feature map (what the prediction heads must output).
    public var boxesPerLocation: [Int] {
        switch self {
        case let .tutorial(maps): return maps.map(\.boxesPerLocation)
        case let .torchvisionDefaultBoxes(boxes): return boxes.boxesPerLocation
        }
    }

    /// Side of each (square) feature map.
    public var featureMapSizes: [Int] {
        switch self {
        case let .tutorial(maps): return maps.map(\.size)
        case let .torchvisionDefaultBoxes(boxes): return boxes.featureMapSizes
        }
    }

    /// Number of boxes.
    public var count: Int { zip(featureMapSizes, boxesPerLocation).reduce(0) { $0 + $1.0 * $1.0 * $1.1 } }
}
