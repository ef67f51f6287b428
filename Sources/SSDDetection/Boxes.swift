import Foundation

/// Box arithmetic on flat arrays of boxes, four floats per box, fractional coordinates.
/// Two forms, as in the reference: boundary `(x_min, y_min, x_max, y_max)` ("xy") and
/// centre-size `(c_x, c_y, w, h)` ("cxcy"). Each formula keeps the reference's operation
/// order, so results agree with PyTorch to the last bit where the inputs do.
///
/// A single box elsewhere (a detection, an evaluated object) is a `Box` (SSDBoxes); these stay
/// on flat arrays because they run over every prior (matching, decoding, NMS), where one array
/// of 4·n floats beats n structs built and torn down. `iou` here and `Box.iou` are the same
/// arithmetic in the same order, so they agree to the last bit.
public enum Boxes {
    /// Boundary → centre-size: ((x_min + x_max)/2, (y_min + y_max)/2, x_max − x_min, y_max − y_min).
    public static func xyToCxcy(_ xy: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: xy.count)
        for b in 0..<(xy.count / 4) {
            let i = 4 * b
            out[i] = (xy[i + 2] + xy[i]) / 2
            out[i + 1] = (xy[i + 3] + xy[i + 1]) / 2
            out[i + 2] = xy[i + 2] - xy[i]
            out[i + 3] = xy[i + 3] - xy[i + 1]
        }
        return out
    }

    /// Centre-size → boundary: (c − wh/2, c + wh/2).
    public static func cxcyToXy(_ cxcy: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: cxcy.count)
        for b in 0..<(cxcy.count / 4) {
            let i = 4 * b
            out[i] = cxcy[i] - cxcy[i + 2] / 2
            out[i + 1] = cxcy[i + 1] - cxcy[i + 3] / 2
            out[i + 2] = cxcy[i] + cxcy[i + 2] / 2
            out[i + 3] = cxcy[i + 1] + cxcy[i + 3] / 2
        }
        return out
    }

    /// Encodes centre-size boxes as offsets from priors (same count), with the reference's
    /// 10 and 5 scalings: ((c − p_c)/(p_wh/10), log(wh/p_wh)·5).
    public static func encode(_ cxcy: [Float], priors: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: cxcy.count)
        for b in 0..<(cxcy.count / 4) { encodeOne(cxcy, b, priors: priors, into: &out, at: 4 * b) }
        return out
    }

    @inline(__always)
    static func encodeOne(_ cxcy: [Float], _ b: Int, priors: [Float], into out: inout [Float], at o: Int) {
        encodeOne(cxcy, b, priors: priors, prior: b, into: &out, at: o)
    }

    /// Box `b` of `cxcy` encoded against prior `p` of `priors`, into `out[o..<o+4]`.
    @inline(__always)
    static func encodeOne(_ cxcy: [Float], _ b: Int, priors: [Float], prior p: Int, into out: inout [Float], at o: Int) {
        let i = 4 * p, j = 4 * b
        out[o] = (cxcy[j] - priors[i]) / (priors[i + 2] / 10)
        out[o + 1] = (cxcy[j + 1] - priors[i + 1]) / (priors[i + 3] / 10)
        out[o + 2] = logf(cxcy[j + 2] / priors[i + 2]) * 5
        out[o + 3] = logf(cxcy[j + 3] / priors[i + 3]) * 5
    }

    /// Inverse of `encode`: (g·p_wh/10 + p_c, exp(g/5)·p_wh).
    public static func decode(_ offsets: UnsafePointer<Float>, count: Int, priors: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: 4 * count)
        for b in 0..<count {
            let i = 4 * b
            out[i] = offsets[i] * priors[i + 2] / 10 + priors[i]
            out[i + 1] = offsets[i + 1] * priors[i + 3] / 10 + priors[i + 1]
            out[i + 2] = expf(offsets[i + 2] / 5) * priors[i + 2]
            out[i + 3] = expf(offsets[i + 3] / 5) * priors[i + 3]
        }
        return out
    }

    /// Intersection over union of boundary box `i` of `a` and box `j` of `b`.
    @inline(__always)
    public static func iou(_ a: [Float], _ i: Int, _ b: [Float], _ j: Int) -> Float {
        let p = 4 * i, q = 4 * j
        let w = max(min(a[p + 2], b[q + 2]) - max(a[p], b[q]), 0)
        let h = max(min(a[p + 3], b[q + 3]) - max(a[p + 1], b[q + 1]), 0)
        let inter = w * h
        let areaA = (a[p + 2] - a[p]) * (a[p + 3] - a[p + 1])
        let areaB = (b[q + 2] - b[q]) * (b[q + 3] - b[q + 1])
        return inter / (areaA + areaB - inter)
    }

    /// The (a.count/4) × (b.count/4) matrix of IoUs between boundary boxes, row-major.
    public static func jaccard(_ a: [Float], _ b: [Float]) -> [Float] {
        let na = a.count / 4, nb = b.count / 4
        var out = [Float](repeating: 0, count: na * nb)
        for i in 0..<na { for j in 0..<nb { out[i * nb + j] = iou(a, i, b, j) } }
        return out
    }
}

/// torchvision's `BoxCoder` (`models/detection/_utils.py`) on fractional centre-size priors:
/// encode (g_c − p_c)·w_xy / p_wh and w_wh·log(g_wh / p_wh), with the object's centre and size
/// taken as torchvision takes them from a boundary box (x₁ + 0.5·(x₂ − x₁), x₂ − x₁); decode
/// (d/w_xy)·p_wh + p_c and exp(min(d/w_wh, maxLogScale))·p_wh, back to boundary c ∓ 0.5·wh.
/// SSD's weights (10, 10, 5, 5) make this the tutorial's coding up to rounding, plus the clamp
/// of the log scale at log(1000/16) (the tutorial's decode has none). Everything is scale
/// invariant, so fractions give pixels' codes up to rounding.
public struct BoxCoder: Equatable, Sendable {
    /// (w_x, w_y, w_w, w_h).
    public var weights: [Float]
    /// Decoded log scales are clamped above at this (torchvision's `bbox_xform_clip`).
    public var maxLogScale: Float

    public init(weights: [Float], maxLogScale: Float = Float(log(1000.0 / 16))) {
        precondition(weights.count == 4, "four weights (x, y, w, h)")
        self.weights = weights
        self.maxLogScale = maxLogScale
    }

    /// torchvision's SSD coder: `BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))`.
    public static let ssd = BoxCoder(weights: [10, 10, 5, 5])

    /// Encodes boundary box `o` of `boundary` against centre-size prior `p` of `priorsCxcy`
    /// into `out[at..<at+4]`.
    @inline(__always)
    public func encode(_ boundary: [Float], _ o: Int, priorsCxcy: [Float], _ p: Int, into out: inout [Float], at: Int) {
        let j = 4 * o, i = 4 * p
        let w = boundary[j + 2] - boundary[j], h = boundary[j + 3] - boundary[j + 1]
        let cx = boundary[j] + 0.5 * w, cy = boundary[j + 1] + 0.5 * h
        out[at] = weights[0] * (cx - priorsCxcy[i]) / priorsCxcy[i + 2]
        out[at + 1] = weights[1] * (cy - priorsCxcy[i + 1]) / priorsCxcy[i + 3]
        out[at + 2] = weights[2] * logf(w / priorsCxcy[i + 2])
        out[at + 3] = weights[3] * logf(h / priorsCxcy[i + 3])
    }

    /// Every boundary box of `boundary` encoded against the prior of the same index.
    public func encode(_ boundary: [Float], priorsCxcy: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: boundary.count)
        for b in 0..<(boundary.count / 4) { encode(boundary, b, priorsCxcy: priorsCxcy, b, into: &out, at: 4 * b) }
        return out
    }

    /// Decodes `count` offsets against the priors into boundary boxes (count, 4) flattened.
    public func decode(_ offsets: UnsafePointer<Float>, count: Int, priorsCxcy: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: 4 * count)
        for b in 0..<count {
            let i = 4 * b
            let dx = offsets[i] / weights[0], dy = offsets[i + 1] / weights[1]
            let dw = min(offsets[i + 2] / weights[2], maxLogScale), dh = min(offsets[i + 3] / weights[3], maxLogScale)
            let cx = dx * priorsCxcy[i + 2] + priorsCxcy[i], cy = dy * priorsCxcy[i + 3] + priorsCxcy[i + 1]
            let hw = 0.5 * (expf(dw) * priorsCxcy[i + 2]), hh = 0.5 * (expf(dh) * priorsCxcy[i + 3])
            out[i] = cx - hw
            out[i + 1] = cy - hh
            out[i + 2] = cx + hw
            out[i + 3] = cy + hh
        }
        return out
    }
}

/// How offsets relate to priors: the tutorial's `cxcy_to_gcxgcy` / `gcxgcy_to_cxcy`, or a
/// torchvision `BoxCoder`.
public enum BoxCoding: Equatable, Sendable {
    case tutorial
    case torchvision(BoxCoder)

    /// Boundary boxes decoded from `count` offsets.
    public func decode(_ offsets: UnsafePointer<Float>, count: Int, priorsCxcy: [Float]) -> [Float] {
        switch self {
        case .tutorial: return Boxes.cxcyToXy(Boxes.decode(offsets, count: count, priors: priorsCxcy))
        case let .torchvision(coder): return coder.decode(offsets, count: count, priorsCxcy: priorsCxcy)
        }
    }
}
