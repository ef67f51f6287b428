import CWinograd
import Foundation

// The per-tile pieces of Winograd F(4×4, 3×3): gathering tiles out of an activation in any
// layout, the data / output / adjoint transforms, and writing output tiles back.
//
// Everything works on eight channels at once (`SIMD8<Float>`, one lane per channel): the
// channels of a pixel are what the blocked layouts keep contiguous, and the Winograd-domain
// matrices are stored [tiles × channels] so a transformed tile is eight contiguous floats per ξ.


typealias F8 = SIMD8<Float>

/// Whether the tile transforms run the AVX2 + FMA versions of the CWinograd target (decided
/// once, from the CPU; SSD_WINOGRAD_PORTABLE=1 forces the portable Swift ones, for testing).
let winogradUsesAVX2: Bool = cwino_has_avx2_fma() != 0
    && ProcessInfo.processInfo.environment["SSD_WINOGRAD_PORTABLE"] != "1"

@inline(__always)
private func floats(_ p: UnsafePointer<F8>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}

@inline(__always)
private func floats(_ p: UnsafeMutablePointer<F8>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
}

/// Which tiles a pass covers and where it reads and writes them. One pass maps an activation
/// `src` (C_in channels, H×W, `inLayout`) to `dst` (C_out channels, Ho×Wo, `outLayout`); output
/// tile (ty, tx) reads the 6×6 input window at (4ty − padH, 4tx − padW). Padding may be negative
/// (the backward-data pass of a convolution padded by more than 2 crops instead of padding).
struct WinogradGeometry {
    let batch: Int
    let inChannels, inHeight, inWidth: Int
    let inLayout: ActivationLayout
    let outChannels, outHeight, outWidth: Int
    let outLayout: ActivationLayout
    let padH, padW: Int
    let tilesH, tilesW: Int

    init(batch: Int, inChannels: Int, inHeight: Int, inWidth: Int, inLayout: ActivationLayout,
         outChannels: Int, outHeight: Int, outWidth: Int, outLayout: ActivationLayout, padH: Int, padW: Int) {
        self.batch = batch
        self.inChannels = inChannels
        self.inHeight = inHeight
        self.inWidth = inWidth
        self.inLayout = inLayout
        self.outChannels = outChannels
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.outLayout = outLayout
        self.padH = padH
        self.padW = padW
        tilesH = (outHeight + 3) / 4
        tilesW = (outWidth + 3) / 4
    }

    /// Tiles over the whole batch.
    var tiles: Int { batch * tilesH * tilesW }

    /// Image and output origin of tile `t` (tiles are numbered image by image, row by row).
    @inline(__always)
    func tile(_ t: Int) -> (n: Int, y: Int, x: Int) {
        let perImage = tilesH * tilesW
        let n = t / perImage, r = t - n * perImage
        let ty = r / tilesW
        return (n, ty * 4, (r - ty * tilesW) * 4)
    }
}

/// Reads the `rows`×`cols` window at (y0, x0) of channels c0 ..< c0 + 8 of image `n` into `d`
/// (row-major, one `F8` per pixel), with zeros outside the image and for channels ≥ `C`.
@inline(__always)
func winogradGather(_ src: UnsafePointer<Float>, channels C: Int, height H: Int, width W: Int, layout: ActivationLayout,
                    n: Int, c0: Int, y0: Int, x0: Int, rows: Int, cols: Int, into d: UnsafeMutablePointer<F8>) {
    let yLo = max(0, -y0), yHi = min(rows, H - y0)
    let xLo = max(0, -x0), xHi = min(cols, W - x0)
    let full = yLo == 0 && xLo == 0 && yHi == rows && xHi == cols
    if !full { d.update(repeating: F8(), count: rows * cols) }
    if yLo >= yHi || xLo >= xHi { return }
    let block = layout.channelBlock
    if block % 8 == 0 {
        // Eight channels of one block: eight contiguous floats per pixel (c0 is a multiple of 8,
        // and C of the block, so every lane is a real channel).
        let base = layout.channelBase(n: n, c: c0, channels: C, plane: H * W).base
        for y in yLo..<yHi {
            let row = src + base + ((y0 + y) * W + x0) * block
            for x in xLo..<xHi {
                d[y * cols + x] = UnsafeRawPointer(row + x * block).loadUnaligned(as: F8.self)
            }
        }
        return
    }
    if full { d.update(repeating: F8(), count: rows * cols) }  // lanes past C stay zero
    for lane in 0..<min(8, C - c0) {
        let (base, step) = layout.channelBase(n: n, c: c0 + lane, channels: C, plane: H * W)
        for y in yLo..<yHi {
            let row = src + base + ((y0 + y) * W + x0) * step
            for x in xLo..<xHi { d[y * cols + x][lane] = row[x * step] }
        }
    }
}

/// Writes the valid part of a 4×4 output tile `v` (row-major `F8`s) at (y0, x0), channels
/// c0 ..< min(c0 + 8, C), of image `n`.
@inline(__always)
func winogradScatter(_ v: UnsafePointer<F8>, into dst: UnsafeMutablePointer<Float>, channels C: Int, height H: Int,
                     width W: Int, layout: ActivationLayout, n: Int, c0: Int, y0: Int, x0: Int) {
    let yHi = min(4, H - y0), xHi = min(4, W - x0)
    let block = layout.channelBlock
    if block % 8 == 0 {
        let base = layout.channelBase(n: n, c: c0, channels: C, plane: H * W).base
        for y in 0..<yHi {
            let row = dst + base + ((y0 + y) * W + x0) * block
            for x in 0..<xHi { UnsafeMutableRawPointer(row + x * block).storeBytes(of: v[y * 4 + x], as: F8.self) }
        }
        return
    }
    for lane in 0..<min(8, C - c0) {
        let (base, step) = layout.channelBase(n: n, c: c0 + lane, channels: C, plane: H * W)
        for y in 0..<yHi {
            let row = dst + base + ((y0 + y) * W + x0) * step
            for x in 0..<xHi { row[x * step] = v[y * 4 + x][lane] }
        }
    }
}

/// The Float transform matrices, kept in one allocation for the kernels' inner loops.
struct WinogradCoefficients {
    /// Bᵀ 6×6, Aᵀ 4×6, G 6×3, A 6×4, Gᵀ 3×6 (row-major each; A feeds the adjoint of the AVX2
    /// kernels, which all compute L · X · Lᵀ), then the two Kronecker products below.
    let storage: UnsafeMutablePointer<Float>
    var bt: UnsafePointer<Float> { UnsafePointer(storage) }
    var at: UnsafePointer<Float> { UnsafePointer(storage + 36) }
    var g: UnsafePointer<Float> { UnsafePointer(storage + 60) }
    var a: UnsafePointer<Float> { UnsafePointer(storage + 78) }
    var gt: UnsafePointer<Float> { UnsafePointer(storage + 102) }
    /// G ⊗ G, 36×9: U_ξ = Σ_tap K[ξ][tap] g[tap], the filter transform as one small matrix, so
    /// that all the filters transform in one GEMM.
    var kron: UnsafePointer<Float> { UnsafePointer(storage + 120) }
    /// G ⊗ G with its taps reversed (columns tap → 8 − tap): the transform of filters rotated by 180°.
    var kronRotated: UnsafePointer<Float> { UnsafePointer(storage + 120 + 324) }
    let matrices: WinogradMatrices
    /// Whether the AVX2 kernels run (the CPU has them and the kernel was not asked for the
    /// portable path).
    let avx2: Bool

    init(_ m: WinogradMatrices, portable: Bool) {
        matrices = m
        avx2 = winogradUsesAVX2 && !portable
        storage = .allocate(capacity: 120 + 2 * 324)
        for a in 0..<6 {
            for b in 0..<6 {
                for k in 0..<3 {
                    for l in 0..<3 {
                        let value = Float(m.g[a * 3 + k] * m.g[b * 3 + l])  // product in Double, one rounding
                        storage[120 + (a * 6 + b) * 9 + k * 3 + l] = value
                        storage[120 + 324 + (a * 6 + b) * 9 + 8 - (k * 3 + l)] = value
                    }
                }
            }
        }
        for i in 0..<36 { storage[i] = Float(m.bt[i]) }
        for i in 0..<24 { storage[36 + i] = Float(m.at[i]) }
        for i in 0..<18 { storage[60 + i] = Float(m.g[i]) }
        for r in 0..<6 { for c in 0..<4 { storage[78 + r * 4 + c] = Float(m.at[c * 6 + r]) } }
        for r in 0..<3 { for c in 0..<6 { storage[102 + r * 6 + c] = Float(m.g[c * 3 + r]) } }
    }

    func deallocate() { storage.deallocate() }
}

/// out (p×p) = L · x (q×q) · Lᵀ for L row-major (p×q): the portable form of every tile
/// transform. `t`: p·q scratch vectors.
@inline(__always)
func winogradSandwich(_ l: UnsafePointer<Float>, p: Int, q: Int, _ x: UnsafePointer<F8>,
                      _ t: UnsafeMutablePointer<F8>, _ out: UnsafeMutablePointer<F8>) {
    @inline(__always) func coefficient(_ i: Int, _ k: Int) -> Float { l[i * q + k] }
    for i in 0..<p {
        for c in 0..<q {
            var s = F8()
            for k in 0..<q { s += coefficient(i, k) * x[k * q + c] }
            t[i * q + c] = s
        }
    }
    for i in 0..<p {
        for j in 0..<p {
            var s = F8()
            for k in 0..<q { s += t[i * q + k] * coefficient(j, k) }
            out[i * p + j] = s
        }
    }
}

/// v = Bᵀ d B for a 6×6 tile (`t`: 36 scratch vectors).
@inline(__always)
func winogradInputTransform(_ d: UnsafePointer<F8>, _ c: WinogradCoefficients, _ t: UnsafeMutablePointer<F8>,
                            _ v: UnsafeMutablePointer<F8>) {
    if c.avx2 { return cwino_sandwich_6x6(c.bt, floats(d), floats(v)) }
    winogradSandwich(c.bt, p: 6, q: 6, d, t, v)
}

/// y = Aᵀ m A: a 6×6 Winograd-domain tile to its 4×4 outputs (`t`: 24 scratch vectors).
@inline(__always)
func winogradOutputTransform(_ m: UnsafePointer<F8>, _ c: WinogradCoefficients, _ t: UnsafeMutablePointer<F8>,
                             _ y: UnsafeMutablePointer<F8>) {
    if c.avx2 { return cwino_sandwich_4x6(c.at, floats(m), floats(y)) }
    winogradSandwich(c.at, p: 4, q: 6, m, t, y)
}

/// z = A dy Aᵀ: the adjoint of the output transform, a 4×4 output-gradient tile to the 6×6
/// Winograd domain (`t`: 24 scratch vectors).
@inline(__always)
func winogradOutputAdjoint(_ dy: UnsafePointer<F8>, _ c: WinogradCoefficients, _ t: UnsafeMutablePointer<F8>,
                           _ z: UnsafeMutablePointer<F8>) {
    if c.avx2 { return cwino_sandwich_6x4(c.a, floats(dy), floats(z)) }
    winogradSandwich(c.a, p: 6, q: 4, dy, t, z)
}
