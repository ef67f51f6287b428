import Foundation

/// The photometric distortions torchvision's functional `adjust_brightness`, `adjust_contrast`,
/// `adjust_saturation` and `adjust_hue` apply to 8-bit PIL images, reproduced exactly.
///
/// The first three are PIL's `ImageEnhance` blends `degenerate + factor·(image − degenerate)`
/// computed in single precision, clipped to 0…255 and truncated (PIL's `ImagingBlend`). The
/// degenerate image is black (brightness), the rounded mean of the greyscale image (contrast),
/// or the greyscale image itself (saturation); greyscale is PIL's `L` conversion,
/// (19595·R + 38470·G + 7471·B + 2¹⁵) >> 16. Hue shifts the H plane of PIL's HSV conversion by
/// trunc(factor·255) modulo 256 and converts back, as torchvision does.
public enum Photometric {
    /// PIL's ITU-R 601-2 luma of one pixel.
    @inline(__always) public static func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
        let red: Int = Int(r) * 19595, green: Int = Int(g) * 38470, blue: Int = Int(b) * 7471
        return UInt8((red + green + blue + 0x8000) >> 16)
    }

    @inline(__always) static func blend(_ degenerate: UInt8, _ value: UInt8, _ alpha: Float) -> UInt8 {
        let t = Float(Int(degenerate)) + alpha * Float(Int(value) - Int(degenerate))
        if t <= 0 { return 0 }
        if t >= 255 { return 255 }
        return UInt8(t)
    }

    /// Brightness: a blend with black.
    public static func adjustBrightness(_ image: inout RGBImage, factor: Double) {
        let alpha = Float(factor)
        var table = [UInt8](repeating: 0, count: 256)
        for v in 0..<256 { table[v] = blend(0, UInt8(v), alpha) }
        apply(table, to: &image)
    }

    /// Contrast: a blend with the greyscale image's mean, rounded half up.
    public static func adjustContrast(_ image: inout RGBImage, factor: Double) {
        var total = 0
        let n = image.width * image.height
        image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n { total += Int(luma(p[3 * i], p[3 * i + 1], p[3 * i + 2])) }
        }
        let mean = UInt8(min(255, Int(Double(total) / Double(max(n, 1)) + 0.5)))
        let alpha = Float(factor)
        var table = [UInt8](repeating: 0, count: 256)
        for v in 0..<256 { table[v] = blend(mean, UInt8(v), alpha) }
        apply(table, to: &image)
    }

    /// Saturation: a blend with the image's own greyscale version.
    public static func adjustSaturation(_ image: inout RGBImage, factor: Double) {
        let alpha = Float(factor)
        let n = image.width * image.height
        image.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let l = luma(p[3 * i], p[3 * i + 1], p[3 * i + 2])
                p[3 * i] = blend(l, p[3 * i], alpha)
                p[3 * i + 1] = blend(l, p[3 * i + 1], alpha)
                p[3 * i + 2] = blend(l, p[3 * i + 2], alpha)
            }
        }
    }

    /// Hue: `factor` in [−0.5, 0.5] of a turn, applied through PIL's 8-bit HSV round trip.
    /// Uses tables of the divisions and products PIL computes per pixel (same values, bit for bit).
    public static func adjustHue(_ image: inout RGBImage, factor: Double) {
        let shift = UInt8(truncatingIfNeeded: Int32(factor * 255))
        let n = image.width * image.height
        let tables = HueTables.shared
        tables.quotient.withUnsafeBufferPointer { quotient in
        tables.saturation.withUnsafeBufferPointer { saturation in
        tables.pTable.withUnsafeBufferPointer { pTable in
        tables.qFactor.withUnsafeBufferPointer { qFactor in
        tables.tFactor.withUnsafeBufferPointer { tFactor in
        tables.sector.withUnsafeBufferPointer { sector in
        image.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let r = p[3 * i], g = p[3 * i + 1], b = p[3 * i + 2]
                let maxc = max(r, max(g, b)), minc = min(r, min(g, b))
                if maxc == minc { continue }  // grey: s = 0 maps back to (v, v, v) unchanged
                let cr = Int(maxc) - Int(minc)
                let rc = quotient[(Int(maxc) - Int(r)) << 8 | cr]
                let gc = quotient[(Int(maxc) - Int(g)) << 8 | cr]
                let bc = quotient[(Int(maxc) - Int(b)) << 8 | cr]
                var hue: Float
                if r == maxc {
                    hue = bc - gc
                } else if g == maxc {
                    hue = Float(2.0 + Double(rc) - Double(bc))
                } else {
                    hue = Float(4.0 + Double(gc) - Double(rc))
                }
                let wrapped = Double(hue) / 6.0 + 1.0
                hue = Float(wrapped >= 1.0 ? wrapped - 1.0 : wrapped)
                let h = clip8(Int(Double(hue) * 255.0)) &+ shift
                let s = saturation[cr << 8 | Int(maxc)]
                let v = maxc
                if s == 0 { p[3 * i] = v; p[3 * i + 1] = v; p[3 * i + 2] = v; continue }
                let hs = Int(h) << 8 | Int(s)
                let pv = pTable[Int(s) << 8 | Int(v)]
                let qv = roundHalfAway(Double(v) * qFactor[hs])
                let tv = roundHalfAway(Double(v) * tFactor[hs])
                switch sector[Int(h)] {
                case 0: p[3 * i] = v; p[3 * i + 1] = tv; p[3 * i + 2] = pv
                case 1: p[3 * i] = qv; p[3 * i + 1] = v; p[3 * i + 2] = pv
                case 2: p[3 * i] = pv; p[3 * i + 1] = v; p[3 * i + 2] = tv
                case 3: p[3 * i] = pv; p[3 * i + 1] = qv; p[3 * i + 2] = v
                case 4: p[3 * i] = tv; p[3 * i + 1] = pv; p[3 * i + 2] = v
                default: p[3 * i] = v; p[3 * i + 1] = pv; p[3 * i + 2] = qv
                }
            }
        }}}}}}}
    }

    /// C's `round` for a non-negative value, clipped to a byte (exact: x − trunc(x) is exact).
    @inline(__always) static func roundHalfAway(_ x: Double) -> UInt8 {
        let whole = x.rounded(.towardZero)
        return clip8(Int(whole) + (x - whole >= 0.5 ? 1 : 0))
    }

    /// Per-pixel quantities of PIL's HSV conversions that depend on two bytes only.
    final class HueTables: @unchecked Sendable {
        static let shared = HueTables()
        /// Float(d) / Float(cr) at d << 8 | cr.
        let quotient: [Float]
        /// The saturation byte clip8(Int(Double(cr / maxc) · 255)) at cr << 8 | maxc.
        let saturation: [UInt8]
        /// p = round(v · (1 − fs)) at s << 8 | v.
        let pTable: [UInt8]
        /// 1 − fs·f (as PIL computes it) at h << 8 | s: q = round(v · this).
        let qFactor: [Double]
        /// 1 − fs·(1 − f) at h << 8 | s: t = round(v · this).
        let tFactor: [Double]
        /// floor(h · 6 / 255) mod 6 per h.
        let sector: [Int]

        init() {
            var quotient = [Float](repeating: 0, count: 65536), saturation = [UInt8](repeating: 0, count: 65536)
            var pTable = [UInt8](repeating: 0, count: 65536)
            var qFactor = [Double](repeating: 0, count: 65536), tFactor = [Double](repeating: 0, count: 65536)
            var sector = [Int](repeating: 0, count: 256)
            for a in 0..<256 {
                for b in 1..<256 { quotient[a << 8 | b] = Float(a) / Float(b) }
                for maxc in 1..<256 where a <= maxc {
                    saturation[a << 8 | maxc] = Photometric.clip8(Int(Double(Float(a) / Float(maxc)) * 255.0))
                }
            }
            for h in 0..<256 {
                let i = Int((Double(Float(h)) * 6.0 / 255.0).rounded(.down))
                let f = Float(Double(Float(h)) * 6.0 / 255.0 - Double(Float(i)))
                sector[h] = i % 6
                for s in 0..<256 {
                    let fs = Float(Double(Float(s)) / 255.0)
                    qFactor[h << 8 | s] = 1.0 - Double(fs * f)
                    tFactor[h << 8 | s] = 1.0 - Double(fs) * (1.0 - Double(f))
                    if h == 0 {
                        for v in 0..<256 {
                            pTable[s << 8 | v] = Photometric.clip8(Int((Double(Float(v)) * (1.0 - Double(fs))).rounded(.toNearestOrAwayFromZero)))
                        }
                    }
                }
            }
            (self.quotient, self.saturation, self.pTable, self.qFactor, self.tFactor, self.sector) =
                (quotient, saturation, pTable, qFactor, tFactor, sector)
        }
    }

    static func apply(_ table: [UInt8], to image: inout RGBImage) {
        table.withUnsafeBufferPointer { t in
            image.pixels.withUnsafeMutableBufferPointer { p in
                for i in 0..<p.count { p[i] = t[Int(p[i])] }
            }
        }
    }

    @inline(__always) static func clip8(_ v: Int) -> UInt8 { v <= 0 ? 0 : (v >= 255 ? 255 : UInt8(v)) }

    /// PIL's `rgb2hsv_row`, with its mix of single and double precision.
    public static func rgbToHSV(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> (UInt8, UInt8, UInt8) {
        let maxc = max(r, max(g, b)), minc = min(r, min(g, b))
        if maxc == minc { return (0, 0, maxc) }
        let cr = Float(Int(maxc) - Int(minc))
        let s = cr / Float(maxc)
        let rc = Float(Int(maxc) - Int(r)) / cr
        let gc = Float(Int(maxc) - Int(g)) / cr
        let bc = Float(Int(maxc) - Int(b)) / cr
        var h: Float
        if r == maxc {
            h = bc - gc
        } else if g == maxc {
            h = Float(2.0 + Double(rc) - Double(bc))
        } else {
            h = Float(4.0 + Double(gc) - Double(rc))
        }
        // fmod(x, 1) for x = h/6 + 1 in [5/6, 2): exact as a subtraction.
        let wrapped = Double(h) / 6.0 + 1.0
        h = Float(wrapped >= 1.0 ? wrapped - 1.0 : wrapped)
        return (clip8(Int(Double(h) * 255.0)), clip8(Int(Double(s) * 255.0)), maxc)
    }

    /// PIL's `hsv2rgb`, with its mix of single and double precision.
    public static func hsvToRGB(_ h: UInt8, _ s: UInt8, _ v: UInt8) -> (UInt8, UInt8, UInt8) {
        if s == 0 { return (v, v, v) }
        let i = Int((Double(Float(h)) * 6.0 / 255.0).rounded(.down))
        let f = Float(Double(Float(h)) * 6.0 / 255.0 - Double(Float(i)))
        let fs = Float(Double(Float(s)) / 255.0)
        let vv = Double(Float(v))
        let p = clip8(Int((vv * (1.0 - Double(fs))).rounded(.toNearestOrAwayFromZero)))
        let q = clip8(Int((vv * (1.0 - Double(fs * f))).rounded(.toNearestOrAwayFromZero)))
        let t = clip8(Int((vv * (1.0 - Double(fs) * (1.0 - Double(f)))).rounded(.toNearestOrAwayFromZero)))
        switch i % 6 {
        case 0: return (v, t, p)
        case 1: return (q, v, p)
        case 2: return (p, v, t)
        case 3: return (p, q, v)
        case 4: return (t, p, v)
        default: return (v, p, q)
        }
    }
}
