import CFreeType
import Foundation
import SSDData

/// Size of a string set in a font at one pixel size, in whole pixels.
public struct TextMetrics: Sendable, Equatable {
    /// Sum of the glyph advances, rounded up; 0 for the empty string.
    public var width: Int
    /// The font's ascent above the baseline (the same for every non-empty string).
    public var ascent: Int
    /// The font's descent below the baseline, positive (the same for every non-empty string).
    public var descent: Int
    /// `ascent + descent`: the height of the line box; 0 for the empty string.
    public var height: Int { ascent + descent }

    public init(width: Int, ascent: Int, descent: Int) {
        self.width = width
        self.ascent = ascent
        self.descent = descent
    }
}

/// A rendered string as an 8-bit coverage mask (`alpha[y * width + x]`, 0 = transparent),
/// `metrics.width` × `metrics.height` pixels with the baseline at row `metrics.ascent`.
public struct TextMask: Sendable {
    public var metrics: TextMetrics
    public var alpha: [UInt8]
    public var width: Int { metrics.width }
    public var height: Int { metrics.height }
}

/// How text is turned before drawing.
public enum TextOrientation: Sendable {
    /// Left to right.
    case horizontal
    /// Bottom to top (rotated 90° counter-clockwise), as a y-axis title.
    case upward
}

/// A TrueType font loaded with FreeType that measures strings and draws them anti-aliased.
///
/// Not safe to share between threads (FreeType faces carry state); make one per thread.
public final class FontRenderer {
    /// DejaVu Sans as installed by Debian's fonts-dejavu-core.
    public static let defaultPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    /// DejaVu Sans Bold as installed by Debian's fonts-dejavu-core.
    public static let defaultBoldPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

    /// The file the font was loaded from.
    public let path: String
    /// The pixel size used when a call does not give one (the reference labels use 15).
    public let pixelSize: Int

    private var library: FT_Library?
    private var face: FT_Face?
    private var currentSize = 0

    /// Loads the font at `path`. Throws `GraphicsError.fontNotFound` when there is no file there,
    /// `.fontUnloadable` when FreeType cannot read it as a font, `.invalidArgument` for a
    /// `pixelSize` outside 1...1000.
    public init(path: String = FontRenderer.defaultPath, pixelSize: Int = 15) throws {
        self.path = path
        self.pixelSize = pixelSize
        guard (1...1000).contains(pixelSize) else {
            throw GraphicsError.invalidArgument("font pixel size \(pixelSize) is outside 1...1000")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw GraphicsError.fontNotFound(path: path)
        }
        var newLibrary: FT_Library?
        let initError = FT_Init_FreeType(&newLibrary)
        guard initError == 0, let newLibrary else { throw GraphicsError.freeType(operation: "initialise", code: Int(initError)) }
        library = newLibrary
        var newFace: FT_Face?
        let faceError = FT_New_Face(newLibrary, path, 0, &newFace)
        guard faceError == 0, let newFace else {
            throw GraphicsError.fontUnloadable(path: path, code: Int(faceError))
        }
        face = newFace
        try setSize(pixelSize)
    }

    deinit {
        if let face { FT_Done_Face(face) }
        if let library { FT_Done_FreeType(library) }
    }

    private func setSize(_ size: Int) throws {
        guard size != currentSize else { return }
        guard (1...1000).contains(size) else {
            throw GraphicsError.invalidArgument("font pixel size \(size) is outside 1...1000")
        }
        let error = FT_Set_Pixel_Sizes(face, 0, FT_UInt(size))
        guard error == 0 else { throw GraphicsError.freeType(operation: "set pixel size \(size)", code: Int(error)) }
        currentSize = size
    }

    /// Clamps a requested size into 1...1000 and selects it; nil if FreeType refuses.
    private func select(_ size: Int?) -> Bool {
        (try? setSize(min(max(size ?? pixelSize, 1), 1000))) != nil
    }

    private var lineMetrics: (ascent: Int, descent: Int) {
        guard let metrics = face?.pointee.size?.pointee.metrics else { return (0, 0) }
        let ascent = (Int(metrics.ascender) + 63) >> 6
        let descent = (-Int(metrics.descender) + 63) >> 6
        return (max(ascent, 0), max(descent, 0))
    }

    private static let loadRender: FT_Int32 = 1 << 2  // FT_LOAD_RENDER

    /// Measures `text` at `pixelSize` (default: the renderer's). Sizes are clamped to 1...1000.
    public func measure(_ text: String, pixelSize: Int? = nil) -> TextMetrics {
        guard !text.isEmpty, select(pixelSize), let face else { return TextMetrics(width: 0, ascent: 0, descent: 0) }
        var advance = 0
        for scalar in text.unicodeScalars {
            guard FT_Load_Char(face, FT_ULong(scalar.value), 0) == 0, let glyph = face.pointee.glyph else { continue }
            advance += Int(glyph.pointee.advance.x)
        }
        let (ascent, descent) = lineMetrics
        return TextMetrics(width: (advance + 63) >> 6, ascent: ascent, descent: descent)
    }

    /// Renders `text` into a coverage mask (see `TextMask`); glyph parts beyond the line box are cut.
    public func mask(_ text: String, pixelSize: Int? = nil) -> TextMask {
        let metrics = measure(text, pixelSize: pixelSize)
        var alpha = [UInt8](repeating: 0, count: metrics.width * metrics.height)
        guard metrics.width > 0, metrics.height > 0, let face else { return TextMask(metrics: metrics, alpha: alpha) }
        var pen = 0  // 26.6 fixed point
        for scalar in text.unicodeScalars {
            guard FT_Load_Char(face, FT_ULong(scalar.value), FontRenderer.loadRender) == 0,
                  let glyph = face.pointee.glyph else { continue }
            let bitmap = glyph.pointee.bitmap
            let originX = ((pen + 32) >> 6) + Int(glyph.pointee.bitmap_left)
            let originY = metrics.ascent - Int(glyph.pointee.bitmap_top)
            let rows = Int(bitmap.rows), columns = Int(bitmap.width), pitch = Int(bitmap.pitch)
            // 8-bit grey coverage is what FT_LOAD_RENDER produces for outline fonts (mode 2).
            if let buffer = bitmap.buffer, bitmap.pixel_mode == 2 {
                for row in 0..<rows {
                    let y = originY + row
                    guard y >= 0, y < metrics.height else { continue }
                    let rowStart = pitch >= 0 ? row * pitch : (rows - 1 - row) * (-pitch)
                    for column in 0..<columns {
                        let x = originX + column
                        guard x >= 0, x < metrics.width else { continue }
                        let value = buffer[rowStart + column]
                        let index = y * metrics.width + x
                        if value > alpha[index] { alpha[index] = value }
                    }
                }
            }
            pen += Int(glyph.pointee.advance.x)
        }
        return TextMask(metrics: metrics, alpha: alpha)
    }

    /// Draws `text` with the top-left corner of its line box at (`x`, `y`) (so the baseline is at
    /// `y + ascent`; upward text occupies `height` × `width` pixels from there), blending `color` by
    /// the glyph coverage. Clipped to the image. Returns the metrics of the string.
    @discardableResult
    public func draw(_ text: String, on image: inout RGBImage, x: Int, y: Int, color: RGBColor,
                     pixelSize: Int? = nil, orientation: TextOrientation = .horizontal) -> TextMetrics {
        let rendered = mask(text, pixelSize: pixelSize)
        image.blend(rendered, x: x, y: y, color: color, orientation: orientation)
        return rendered.metrics
    }
}

extension RGBImage {
    /// Blends a text mask at (`x`, `y`) (top-left of the drawn area) in `color`, clipped.
    public mutating func blend(_ mask: TextMask, x: Int, y: Int, color: RGBColor,
                               orientation: TextOrientation = .horizontal) {
        guard mask.width > 0, mask.height > 0 else { return }
        for row in 0..<mask.height {
            for column in 0..<mask.width {
                let value = mask.alpha[row * mask.width + column]
                guard value > 0 else { continue }
                switch orientation {
                case .horizontal: blendPixel(x: x &+ column, y: y &+ row, color: color, alpha: value)
                case .upward: blendPixel(x: x &+ row, y: y &+ (mask.width - 1 - column), color: color, alpha: value)
                }
            }
        }
    }
}
