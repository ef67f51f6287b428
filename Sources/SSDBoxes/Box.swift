/// A boundary box `(x_min, y_min, x_max, y_max)`: fractions of the image as the model gives
/// them, or pixels once scaled (the type does not say which; the holder's documentation does).
///
/// One box on its own — a detection, a ground-truth object in evaluation, a drawn rectangle — is
/// a `Box`. Many boxes on the hot paths (priors, decoded offsets, the loss's ground truth, NMS)
/// stay flat `[Float]` arrays, four floats a box: see `Boxes` in SSDDetection.
///
/// It encodes (`Codable`) as the JSON list `[x_min, y_min, x_max, y_max]`, the form every file
/// of this project uses for a box.
public struct Box: Equatable, Hashable, Sendable {
    public var xMin: Float
    public var yMin: Float
    public var xMax: Float
    public var yMax: Float

    public init(xMin: Float, yMin: Float, xMax: Float, yMax: Float) {
        self.xMin = xMin
        self.yMin = yMin
        self.xMax = xMax
        self.yMax = yMax
    }

    /// The box `(xMin, yMin, xMax, yMax)`.
    @inline(__always)
    public init(_ xMin: Float, _ yMin: Float, _ xMax: Float, _ yMax: Float) {
        self.init(xMin: xMin, yMin: yMin, xMax: xMax, yMax: yMax)
    }

    /// The box of four coordinates `[x_min, y_min, x_max, y_max]`; anything but four is a
    /// programming error (untrusted input goes through `init(validating:)`).
    public init(_ coordinates: [Float]) {
        precondition(coordinates.count == 4, "a box is four numbers (x_min, y_min, x_max, y_max), not \(coordinates.count)")
        self.init(coordinates[0], coordinates[1], coordinates[2], coordinates[3])
    }

    /// The box of `coordinates` when they are four finite numbers; `BoxError` otherwise. Order
    /// and extent are not checked (an evaluation file may hold empty or inverted detections).
    public init(validating coordinates: [Float]) throws {
        guard coordinates.count == 4 else { throw BoxError.notFourNumbers(count: coordinates.count) }
        guard coordinates.allSatisfy(\.isFinite) else { throw BoxError.notFinite(coordinates) }
        self.init(coordinates)
    }

    /// `[x_min, y_min, x_max, y_max]`.
    public var array: [Float] { [xMin, yMin, xMax, yMax] }

    /// x_max − x_min (negative for an inverted box).
    @inline(__always) public var width: Float { xMax - xMin }
    /// y_max − y_min (negative for an inverted box).
    @inline(__always) public var height: Float { yMax - yMin }
    /// width × height, as `(x_max − x_min)·(y_max − y_min)`.
    @inline(__always) public var area: Float { width * height }
    /// Whether all four coordinates are finite.
    public var isFinite: Bool { xMin.isFinite && yMin.isFinite && xMax.isFinite && yMax.isFinite }

    /// Intersection over union, as the reference's `find_jaccard_overlap` (and `Boxes.iou` in
    /// SSDDetection) computes it, operation for operation so results agree to the last bit:
    /// w = max(min(x_max, x_max') − max(x_min, x_min'), 0), h likewise, i = w·h,
    /// IoU = i / (area + area' − i). `self` is the first operand of every `min` and `max`.
    @inline(__always)
    public func iou(_ other: Box) -> Float {
        let w = max(min(xMax, other.xMax) - max(xMin, other.xMin), 0)
        let h = max(min(yMax, other.yMax) - max(yMin, other.yMin), 0)
        let inter = w * h
        return inter / (area + other.area - inter)
    }

    /// The box with x coordinates × `x` and y coordinates × `y` (fractions × the image's width
    /// and height give pixels).
    public func scaled(x: Float, y: Float) -> Box {
        Box(xMin * x, yMin * y, xMax * x, yMax * y)
    }
}

extension Box: CustomStringConvertible {
    /// `[x_min, y_min, x_max, y_max]`, as `array` prints.
    public var description: String { array.description }
}

extension Box: Codable {
    public init(from decoder: Decoder) throws {
        var container = try decoder.unkeyedContainer()
        var coordinates: [Float] = []
        while !container.isAtEnd { coordinates.append(try container.decode(Float.self)) }
        do { try self.init(validating: coordinates) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(contentsOf: array)
    }
}

/// Why coordinates are not a box.
public enum BoxError: Error, Equatable, CustomStringConvertible {
    case notFourNumbers(count: Int)
    case notFinite([Float])
    public var description: String {
        switch self {
        case let .notFourNumbers(count): return "a box is four numbers (x_min, y_min, x_max, y_max), not \(count)"
        case let .notFinite(coordinates): return "box \(coordinates) has a coordinate that is not finite"
        }
    }
}

/// One detected object: its box, a class index (1…n_classes−1; 0 only for the reference's
/// "nothing found" placeholder) and a score. The detector gives fractional boxes; `PhotoDetections`
/// scales them to the photo's pixels, which is what drawing and `ssd detect --json` take.
public struct Detection: Equatable, Hashable, Sendable {
    public var box: Box
    public var label: Int
    public var score: Float
    public init(box: Box, label: Int, score: Float) {
        self.box = box
        self.label = label
        self.score = score
    }

    /// The same detection with its box scaled (`Box.scaled(x:y:)`).
    public func scaled(x: Float, y: Float) -> Detection {
        Detection(box: box.scaled(x: x, y: y), label: label, score: score)
    }
}
