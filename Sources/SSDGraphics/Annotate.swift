import SSDBoxes
import SSDData

/// One detection to draw: a `Detection` whose box is in pixels of the image it is drawn on
/// (`PhotoDetections.pixelDetections`), and the name of its class. The label (1-based as in the
/// model, 0 is background) picks the colour; the name is drawn in upper case.
public struct DetectionAnnotation: Sendable, Equatable {
    public var detection: Detection
    public var name: String

    public init(_ detection: Detection, name: String) {
        self.detection = detection
        self.name = name
    }

    public var box: Box { detection.box }
    public var label: Int { detection.label }
    public var score: Float { detection.score }
}

/// The reference's per-class colours.
public enum ClassPalette {
    /// The reference's `distinct_colors`, in order. Class label i (1...20) gets entry i − 1, as
    /// `label_color_map` over the VOC names; the 21st (white) is background's.
    public static let referenceColors: [RGBColor] = [
        "#e6194b", "#3cb44b", "#ffe119", "#0082c8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
        "#d2f53c", "#fabebe", "#008080", "#000080", "#aa6e28", "#fffac8", "#800000", "#aaffc3",
        "#808000", "#ffd8b1", "#e6beff", "#808080", "#FFFFFF",
    ].compactMap { RGBColor(hex: $0) }

    /// The colour of class `label`: the reference's for labels 1...20 and background (0 → white);
    /// labels from 21 on (data sets with more classes) get deterministic colours spread round the
    /// hue circle by the golden angle, saturated and mid-bright so white text stays readable.
    /// Negative labels are treated as background.
    public static func color(forLabel label: Int) -> RGBColor {
        if label <= 0 { return referenceColors[20] }
        if label <= 20 { return referenceColors[label - 1] }
        let hue = (Double(label - 21) * 0.618_033_988_749_895).truncatingRemainder(dividingBy: 1)
        return hsv(hue: hue, saturation: 0.8, value: 0.75)
    }

    /// HSV (each in 0...1) to RGB.
    static func hsv(hue: Double, saturation: Double, value: Double) -> RGBColor {
        let h = hue * 6, sector = Int(h.rounded(.down)) % 6, f = h - h.rounded(.down)
        let p = value * (1 - saturation), q = value * (1 - saturation * f), t = value * (1 - saturation * (1 - f))
        let (r, g, b): (Double, Double, Double)
        switch sector {
        case 0: (r, g, b) = (value, t, p)
        case 1: (r, g, b) = (q, value, p)
        case 2: (r, g, b) = (p, value, t)
        case 3: (r, g, b) = (p, q, value)
        case 4: (r, g, b) = (t, p, value)
        default: (r, g, b) = (value, p, q)
        }
        func byte(_ v: Double) -> UInt8 { UInt8(min(max((v * 255).rounded(), 0), 255)) }
        return RGBColor(red: byte(r), green: byte(g), blue: byte(b))
    }
}

/// Draws detections as the reference's `detect()` does.
///
/// For each detection, with the box corners taken to whole pixels by rounding down
/// (x0, y0, x1, y1):
/// - the outline of the rectangle (x0, y0)–(x1, y1), corners inclusive, and again offset by +1 px,
///   so every side is two pixels wide (columns x0, x0+1 and x1, x1+1; rows y0, y0+1 and y1, y1+1);
/// - a label box filled in the class colour from (x0, y0 − h) to (x0 + w + 4, y0), corners inclusive,
///   where w × h is the size of the upper-cased name at the font's size;
/// - the upper-cased name in white with its top-left at (x0 + 2, y0 − h).
///
/// Choice beyond the reference: when the label box would start above the image (y0 − h < 0) it is
/// put just inside the box instead, from (x0, y0) to (x0 + w + 4, y0 + h). Everything is clipped to
/// the image, so boxes partly or wholly outside it (or with non-finite corners) are safe.
public struct DetectionAnnotator {
    /// The label font; the reference uses a 15-pixel font.
    public let font: FontRenderer
    /// Text colour in the label box (the reference's white).
    public var textColor: RGBColor = .white
    /// Appends the score to the name (e.g. "DOG 0.93"); off, as in the reference.
    public var showsScore = false

    public init(font: FontRenderer) {
        self.font = font
    }

    /// An annotator with the font at `fontPath` (default DejaVu Sans) at 15 px.
    /// Throws `GraphicsError.fontNotFound` / `.fontUnloadable` naming the path.
    public init(fontPath: String = FontRenderer.defaultPath) throws {
        self.font = try FontRenderer(path: fontPath, pixelSize: 15)
    }

    /// The label drawn for `detection`.
    public func labelText(for detection: DetectionAnnotation) -> String {
        let name = detection.name.uppercased()
        guard showsScore else { return name }
        let score = Double(detection.score)
        let shown = score.isFinite ? (score * 100).rounded() / 100 : 0
        return "\(name) \(shown)"
    }

    /// Draws every detection on `image`, in order (later ones on top).
    public func annotate(_ image: inout RGBImage, with detections: [DetectionAnnotation]) {
        for detection in detections { draw(detection, on: &image) }
    }

    /// A copy of `image` with the detections drawn.
    public func annotated(_ image: RGBImage, with detections: [DetectionAnnotation]) -> RGBImage {
        var copy = image
        annotate(&copy, with: detections)
        return copy
    }

    /// Where the label box of `detection` goes: inclusive corners (x0, y0, x1, y1), and the text origin.
    public func labelPlacement(for detection: DetectionAnnotation)
        -> (box: (x0: Int, y0: Int, x1: Int, y1: Int), textX: Int, textY: Int) {
        let metrics = font.measure(labelText(for: detection))
        let x0 = pixelIndex(Double(detection.box.xMin)), y0 = pixelIndex(Double(detection.box.yMin))
        let top = y0 - metrics.height >= 0 ? y0 - metrics.height : y0
        return ((x0, top, x0 + metrics.width + 4, top + metrics.height), x0 + 2, top)
    }

    private func draw(_ detection: DetectionAnnotation, on image: inout RGBImage) {
        // Drawing works in Double pixels (exact for every Float).
        let color = ClassPalette.color(forLabel: detection.label)
        let x0 = pixelIndex(Double(detection.box.xMin)), y0 = pixelIndex(Double(detection.box.yMin))
        let x1 = pixelIndex(Double(detection.box.xMax)), y1 = pixelIndex(Double(detection.box.yMax))
        image.strokeRectangle(x0: x0, y0: y0, x1: x1, y1: y1, color: color)
        image.strokeRectangle(x0: x0 + 1, y0: y0 + 1, x1: x1 + 1, y1: y1 + 1, color: color)
        let text = labelText(for: detection)
        guard !text.isEmpty else { return }
        let placement = labelPlacement(for: detection)
        let box = placement.box
        image.fillRectangle(x0: box.x0, y0: box.y0, x1: box.x1, y1: box.y1, color: color)
        font.draw(text, on: &image, x: placement.textX, y: placement.textY, color: textColor)
    }
}
