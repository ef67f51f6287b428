import SSDData

/// An 8-bit RGB colour.
public struct RGBColor: Sendable, Equatable, Hashable {
    public var red: UInt8
    public var green: UInt8
    public var blue: UInt8

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// Parses `#rrggbb` or `rrggbb` (either case); nil for anything else.
    public init?(hex: String) {
        var digits = Substring(hex)
        if digits.hasPrefix("#") { digits = digits.dropFirst() }
        guard digits.count == 6, let value = UInt32(digits, radix: 16) else { return nil }
        self.init(red: UInt8((value >> 16) & 0xFF), green: UInt8((value >> 8) & 0xFF), blue: UInt8(value & 0xFF))
    }

    public static let white = RGBColor(red: 255, green: 255, blue: 255)
    public static let black = RGBColor(red: 0, green: 0, blue: 0)

    /// `#rrggbb` in lower case.
    public var hexString: String {
        func pair(_ v: UInt8) -> String { let s = String(v, radix: 16); return s.count == 1 ? "0" + s : s }
        return "#" + pair(red) + pair(green) + pair(blue)
    }
}

/// Converts a coordinate to an integer pixel index without trapping: NaN becomes `Int.min / 4`
/// (off any image), and values beyond ±2^40 are clamped there (still off any image).
@inline(__always)
func pixelIndex(_ value: Double) -> Int {
    guard !value.isNaN else { return Int.min / 4 }
    let limit = 1_099_511_627_776.0
    return Int(min(max(value.rounded(.down), -limit), limit))
}

/// Drawing primitives on `RGBImage`. Every primitive clips to the image: coordinates may be
/// negative or far outside it, and nothing outside the image is touched.
extension RGBImage {
    /// The colour at (`x`, `y`), or nil outside the image.
    public func color(x: Int, y: Int) -> RGBColor? {
        guard x >= 0, y >= 0, x < width, y < height else { return nil }
        let i = 3 * (y * width + x)
        return RGBColor(red: pixels[i], green: pixels[i + 1], blue: pixels[i + 2])
    }

    /// Sets one pixel; ignored outside the image.
    public mutating func setPixel(x: Int, y: Int, color: RGBColor) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = color.red
        pixels[i + 1] = color.green
        pixels[i + 2] = color.blue
    }

    /// Blends `color` over one pixel with coverage `alpha` (0 = untouched, 255 = replaced);
    /// ignored outside the image.
    public mutating func blendPixel(x: Int, y: Int, color: RGBColor, alpha: UInt8) {
        guard alpha > 0, x >= 0, y >= 0, x < width, y < height else { return }
        if alpha == 255 { setPixel(x: x, y: y, color: color); return }
        let i = 3 * (y * width + x)
        let a = UInt32(alpha), inverse = 255 - UInt32(alpha)
        pixels[i] = UInt8((UInt32(pixels[i]) * inverse + UInt32(color.red) * a + 127) / 255)
        pixels[i + 1] = UInt8((UInt32(pixels[i + 1]) * inverse + UInt32(color.green) * a + 127) / 255)
        pixels[i + 2] = UInt8((UInt32(pixels[i + 2]) * inverse + UInt32(color.blue) * a + 127) / 255)
    }

    /// Fills the rectangle with corners (`x0`, `y0`) and (`x1`, `y1`), both inclusive (as PIL's
    /// `rectangle(fill=)`); the corners may come in either order.
    public mutating func fillRectangle(x0: Int, y0: Int, x1: Int, y1: Int, color: RGBColor) {
        let left = max(0, min(x0, x1)), right = min(width - 1, max(x0, x1))
        let top = max(0, min(y0, y1)), bottom = min(height - 1, max(y0, y1))
        guard left <= right, top <= bottom else { return }
        for y in top...bottom {
            var i = 3 * (y * width + left)
            for _ in left...right {
                pixels[i] = color.red
                pixels[i + 1] = color.green
                pixels[i + 2] = color.blue
                i += 3
            }
        }
    }

    /// Draws the one-pixel outline of the rectangle with inclusive corners (`x0`, `y0`) and
    /// (`x1`, `y1`), as PIL's `rectangle(outline=)`.
    public mutating func strokeRectangle(x0: Int, y0: Int, x1: Int, y1: Int, color: RGBColor) {
        let left = min(x0, x1), right = max(x0, x1), top = min(y0, y1), bottom = max(y0, y1)
        fillRectangle(x0: left, y0: top, x1: right, y1: top, color: color)
        fillRectangle(x0: left, y0: bottom, x1: right, y1: bottom, color: color)
        fillRectangle(x0: left, y0: top, x1: left, y1: bottom, color: color)
        fillRectangle(x0: right, y0: top, x1: right, y1: bottom, color: color)
    }

    /// Draws a straight segment from (`x0`, `y0`) to (`x1`, `y1`) (pixel centres at integer +0.5
    /// coordinates are not assumed: a point (x, y) lands in pixel (⌊x⌋, ⌊y⌋)), `thickness` pixels
    /// wide as a square brush. With `dash` > 0 every other run of `dash` pixels is skipped.
    /// The segment is clipped to the image first, so huge coordinates cost nothing.
    public mutating func drawLine(x0: Double, y0: Double, x1: Double, y1: Double, color: RGBColor,
                                  thickness: Int = 1, dash: Int = 0) {
        guard [x0, y0, x1, y1].allSatisfy({ $0.isFinite }) else { return }
        let brush = max(1, thickness)
        let margin = Double(brush)
        guard let (ax, ay, bx, by) = clipSegment(x0, y0, x1, y1, xMin: -margin, yMin: -margin,
                                                 xMax: Double(width) + margin, yMax: Double(height) + margin)
        else { return }
        let steps = Int(max(abs(bx - ax), abs(by - ay)).rounded(.up))
        let low = (brush - 1) / 2
        for step in 0...max(steps, 0) {
            if dash > 0, (step / dash) % 2 == 1 { continue }
            let t = steps == 0 ? 0 : Double(step) / Double(steps)
            let px = pixelIndex(ax + (bx - ax) * t), py = pixelIndex(ay + (by - ay) * t)
            fillRectangle(x0: px - low, y0: py - low, x1: px - low + brush - 1, y1: py - low + brush - 1, color: color)
        }
    }
}

/// Liang–Barsky clipping of a segment to a rectangle; nil when nothing of it is inside.
/// A clipped end is computed from the line equation at the boundary it crosses (not from the
/// parameter), so segments with huge coordinates keep their position to the pixel.
func clipSegment(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double,
                 xMin: Double, yMin: Double, xMax: Double, yMax: Double) -> (Double, Double, Double, Double)? {
    let dx = x1 - x0, dy = y1 - y0
    guard dx.isFinite, dy.isFinite else { return nil }
    var t0 = 0.0, t1 = 1.0
    var entering: Int?, leaving: Int?
    let tests = [(-dx, x0 - xMin), (dx, xMax - x0), (-dy, y0 - yMin), (dy, yMax - y0)]
    for (boundary, (p, q)) in tests.enumerated() {
        if p == 0 {
            if q < 0 { return nil }
        } else {
            let r = q / p
            if p < 0 {
                if r > t1 { return nil }
                if r > t0 { t0 = r; entering = boundary }
            } else {
                if r < t0 { return nil }
                if r < t1 { t1 = r; leaving = boundary }
            }
        }
    }
    func point(_ boundary: Int?, start: Bool) -> (Double, Double)? {
        let x: Double, y: Double
        switch boundary {
        case 0?: (x, y) = (xMin, y0 + (xMin - x0) * (dy / dx))
        case 1?: (x, y) = (xMax, y0 + (xMax - x0) * (dy / dx))
        case 2?: (x, y) = (x0 + (yMin - y0) * (dx / dy), yMin)
        case 3?: (x, y) = (x0 + (yMax - y0) * (dx / dy), yMax)
        default: return start ? (x0, y0) : (x1, y1)
        }
        guard x.isFinite, y.isFinite else { return nil }
        return (min(max(x, xMin), xMax), min(max(y, yMin), yMax))
    }
    guard let a = point(entering, start: true), let b = point(leaving, start: false) else { return nil }
    return (a.0, a.1, b.0, b.1)
}
