/// The transform matrices of Winograd's minimal filtering algorithm F(4, 3), built by the
/// (modified) Toom–Cook construction from five finite interpolation points and the point at
/// infinity.
///
/// One-dimensional correlation of a 6-sample window `d` with a 3-tap filter `g` is
/// `y = Aᵀ [(G g) ⊙ (Bᵀ d)]` (4 outputs); the 2-D algorithm nests it: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
///
/// Construction: with points p₀…p₄ and ∞,
/// - `Aᵀ[i][j] = p_j^i` (j < 5), `Aᵀ[i][5] = [i = 3]` — evaluating the product polynomial;
/// - `G[j][k] = s_j · p_j^k` (j < 5), `G[5] = (0, 0, 1)` — evaluating the filter polynomial,
///   row j scaled by `s_j`;
/// - `Bᵀ` is then fixed by requiring the identity above for every d and g: for each s = i + k,
///   Σ_j p_j^s s_j Bᵀ[j][l] + [s = 5] Bᵀ[5][l] = [l = s], i.e. the first five rows are the
///   inverse Vandermonde matrix divided by s_j and the last row removes the p^5 terms.
///
/// The row scaling `s_j` moves each point's Lagrange normaliser 1/f_j (f_j = Π_{l≠j}(p_j − p_l))
/// between G and Bᵀ: it changes nothing in exact arithmetic but does change rounding in f32.
/// Everything is computed in Double and rounded to Float once.
/// Where the Lagrange normaliser 1/f_j of each finite Winograd interpolation point goes.
public enum WinogradScaling: String, Sendable, CaseIterable {
    /// In G (Lavin & Gray's choice): Bᵀ has integer entries for integer points.
    case filter
    /// In Bᵀ: G is a plain Vandermonde matrix.
    case data
    /// Split as 1/√|f_j| on each side (sign kept in G).
    case balanced
}

struct WinogradMatrices: Sendable, CustomStringConvertible {
    typealias Scaling = WinogradScaling

    let points: [Double]
    let scaling: Scaling
    /// Bᵀ, 6×6 row-major.
    let bt: [Double]
    /// G, 6×3 row-major.
    let g: [Double]
    /// Aᵀ, 4×6 row-major.
    let at: [Double]

    /// Lavin & Gray's points 0, ±1, ±2.
    static let lavinPoints: [Double] = [0, 1, -1, 2, -2]
    /// The points used by default, chosen by measurement against the Double twin
    /// (`WinogradTests.testPointSetAccuracy`, 64→64 at 38×38, mean of three data sets, forward
    /// relative error): {0, ±1, ½, −2} 2.4–2.8e-6 and its mirror {0, ±1, 2, −½} 2.3e-6, against
    /// 5.8–6.7e-6 for Lavin's {0, ±1, ±2}, 6–7e-6 for {0, ±1, ±½}, 4e-6 for {0, ±1, ±3/2}:
    /// one large and one small point balance the Vandermonde conditioning. Where 1/f goes
    /// changed the error by less than the spread between data sets.
    static let defaultPoints: [Double] = [0, 1, -1, 0.5, -2]
    static let defaultScaling: Scaling = .filter
    static let standard = WinogradMatrices(points: defaultPoints, scaling: defaultScaling)

    init(points: [Double], scaling: Scaling) {
        precondition(points.count == 5 && Set(points).count == 5, "F(4,3) needs five distinct finite points")
        self.points = points
        self.scaling = scaling
        var f = [Double](repeating: 1, count: 5)
        for j in 0..<5 { for l in 0..<5 where l != j { f[j] *= points[j] - points[l] } }
        let s: [Double] = (0..<5).map { j in
            switch scaling {
            case .filter: return 1 / f[j]
            case .data: return 1
            case .balanced: return (f[j] < 0 ? -1 : 1) / abs(f[j]).squareRoot()
            }
        }
        func power(_ x: Double, _ e: Int) -> Double { e == 0 ? 1 : (1..<e).reduce(x) { r, _ in r * x } }
        var at = [Double](repeating: 0, count: 24)
        for i in 0..<4 {
            for j in 0..<5 { at[i * 6 + j] = power(points[j], i) }
            at[i * 6 + 5] = i == 3 ? 1 : 0
        }
        var g = [Double](repeating: 0, count: 18)
        for j in 0..<5 { for k in 0..<3 { g[j * 3 + k] = s[j] * power(points[j], k) } }
        g[5 * 3 + 2] = 1
        // Inverse of the Vandermonde matrix V[s][j] = p_j^s by Gauss–Jordan with partial pivoting.
        var a = [Double](repeating: 0, count: 25), inv = [Double](repeating: 0, count: 25)
        for r in 0..<5 { for j in 0..<5 { a[r * 5 + j] = power(points[j], r) }; inv[r * 5 + r] = 1 }
        for col in 0..<5 {
            var pivot = col
            for r in col..<5 where abs(a[r * 5 + col]) > abs(a[pivot * 5 + col]) { pivot = r }
            for j in 0..<5 { a.swapAt(col * 5 + j, pivot * 5 + j); inv.swapAt(col * 5 + j, pivot * 5 + j) }
            let d = a[col * 5 + col]
            for j in 0..<5 { a[col * 5 + j] /= d; inv[col * 5 + j] /= d }
            for r in 0..<5 where r != col {
                let m = a[r * 5 + col]
                if m == 0 { continue }
                for j in 0..<5 { a[r * 5 + j] -= m * a[col * 5 + j]; inv[r * 5 + j] -= m * inv[col * 5 + j] }
            }
        }
        var bt = [Double](repeating: 0, count: 36)
        for j in 0..<5 { for l in 0..<5 { bt[j * 6 + l] = inv[j * 5 + l] / s[j] } }
        for l in 0..<6 {
            var v: Double = l == 5 ? 1 : 0
            for j in 0..<5 { v -= power(points[j], 5) * s[j] * bt[j * 6 + l] }
            bt[5 * 6 + l] = v
        }
        // Entries that are zero in exact arithmetic come out as ±1e-17 or so: snap them, so the
        // transforms do not carry rounding noise (and stay as sparse as the algebra makes them).
        func clean(_ m: [Double]) -> [Double] { m.map { abs($0) < 1e-12 ? 0 : $0 } }
        self.bt = clean(bt)
        self.g = clean(g)
        self.at = clean(at)
    }

    var description: String {
        let p = points.map { $0 == $0.rounded() ? String(Int($0)) : String($0) }.joined(separator: ", ")
        return "points {\(p), ∞}, 1/f in \(scaling.rawValue)"
    }
}
