import Foundation

/// The one softmax of the package, over a row of class scores, as PyTorch's `F.softmax` and
/// `F.cross_entropy` compute it: shifted by the row's maximum, m, so every exponential is ≤ 1.
/// The detector's probabilities, the loss's cross entropies and its gradients all come from
/// here, so they agree to the bit.
public enum Softmax {
    /// The row's maximum m and Σ exp(x − m), in float32, summed in class order.
    @inline(__always)
    public static func shiftAndSum(_ row: UnsafePointer<Float>, count: Int) -> (max: Float, sum: Float) {
        var m = row[0]
        for c in 1..<count { m = max(m, row[c]) }
        var s: Float = 0
        for c in 0..<count { s += expf(row[c] - m) }
        return (m, s)
    }

    /// −log softmax(row)[target] = log Σ exp(x − m) + m − x_target.
    @inline(__always)
    public static func crossEntropy(_ row: UnsafePointer<Float>, count: Int, target: Int) -> Float {
        let (m, s) = shiftAndSum(row, count: count)
        return (logf(s) + m) - row[target]
    }

    /// softmax(row) / divisor into `out` (the same count): exp(x − m) / Σ exp(x − m) / divisor.
    @inline(__always)
    public static func probabilities(_ row: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>,
                                     dividedBy divisor: Float = 1) {
        let (m, s) = shiftAndSum(row, count: count)
        if divisor == 1 {
            for c in 0..<count { out[c] = expf(row[c] - m) / s }
        } else {
            for c in 0..<count { out[c] = expf(row[c] - m) / s / divisor }
        }
    }
}
