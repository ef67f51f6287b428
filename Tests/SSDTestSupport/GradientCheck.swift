import SSDEngine
import XCTest

/// Σ r·y in Double: a scalar "loss" whose gradient with respect to y is r.
public func weightedSum(_ y: Tensor, _ r: Tensor) -> Double {
    var s = 0.0
    for i in 0..<y.count { s += Double(y.data[i]) * Double(r.data[i]) }
    return s
}

/// Central finite differences of `loss()` with respect to up to `samples` elements of `x`,
/// compared with `analytic` (d loss / d x). Passes when every sampled element agrees within
/// `tolerance` relative to the largest analytic gradient (f32 forward passes limit how tight
/// this can be).
public func checkGradient(_ what: String, x: Tensor, analytic: Tensor, epsilon: Float = 1e-2, samples: Int = 40,
                          tolerance: Double = 1e-3, seed: UInt64 = 99, file: StaticString = #filePath, line: UInt = #line,
                          loss: () throws -> Double) rethrows {
    precondition(x.count == analytic.count)
    var rng = SeededRandom(seed: seed)
    var scale = 0.0
    for i in 0..<analytic.count { scale = max(scale, Double(abs(analytic.data[i]))) }
    XCTAssertGreaterThan(scale, 0, "\(what): analytic gradient is all zero", file: file, line: line)
    var worst = 0.0
    let indices = x.count <= samples ? Array(0..<x.count) : (0..<samples).map { _ in Int(rng.next() % UInt64(x.count)) }
    for i in indices {
        let saved = x.data[i]
        x.data[i] = saved + epsilon
        let plus = try loss()
        x.data[i] = saved - epsilon
        let minus = try loss()
        x.data[i] = saved
        let numeric = (plus - minus) / (2 * Double(epsilon))
        worst = max(worst, abs(numeric - Double(analytic.data[i])) / scale)
    }
    print("[measure] gradient check \(what): worst error relative to gradient scale \(worst)")
    XCTAssertLessThanOrEqual(worst, tolerance, "\(what): finite differences disagree", file: file, line: line)
}
