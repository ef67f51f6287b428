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
