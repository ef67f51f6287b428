import Foundation

/// Box arithmetic on flat arrays of boxes, four floats per box, fractional coordinates.
/// Two forms, as in the reference: boundary `(x_min, y_min, x_max, y_max)` ("xy") and
/// centre-size `(c_x, c_y, w, h)` ("cxcy"). Each formula keeps the reference's operation
/// order, so results agree with PyTorch to the last bit where the inputs do.
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
        let i = 4 * b
        out[o] = (cxcy[i] - priors[i]) / (priors[i + 2] / 10)
        out[o + 1] = (cxcy[i + 1] - priors[i + 1]) / (priors[i + 3] / 10)
        out[o + 2] = logf(cxcy[i + 2] / priors[i + 2]) * 5
        out[o + 3] = logf(cxcy[i + 3] / priors[i + 3]) * 5
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
