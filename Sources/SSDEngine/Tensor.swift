import Foundation

/// Errors raised by the engine. Each names what it is about, so the CLI can print one clear line.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    /// Two shapes that must agree do not.
    case shapeMismatch(what: String, expected: [Int], got: [Int])
    /// A value outside what the operation accepts.
    case invalidArgument(String)
    /// oneDNN (or another backend) refused an operation.
    case backend(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(what, expected, got):
            return "\(what): expected shape \(expected), got \(got)"
        case let .invalidArgument(message):
            return message
        case let .backend(message):
            return "backend: \(message)"
        }
    }
}

/// How the elements of a 4-D (N, C, H, W) activation are laid out in memory.
///
/// The block size of a blocked layout is whatever the backend chose for the host (oneDNN
/// picks 8 on AVX2 and 16 on AVX-512); nothing in the engine assumes one.
public enum ActivationLayout: Hashable, Sendable, CustomStringConvertible {
    /// PyTorch's row-major NCHW: the layout at the model's edges.
    case nchw
    /// oneDNN's nChw{b}c: channels in blocks of `b`, the `b` of a pixel contiguous. Needs C % b == 0.
    /// Element (n, c, y, x) is at ((n·C/b + c/b)·H·W + y·W + x)·b + c % b.
    case blocked(Int)

    /// Channels stored together per pixel: 1 for NCHW, `b` for nChw{b}c.
    @inlinable
    public var channelBlock: Int {
        switch self {
        case .nchw: return 1
        case let .blocked(b): return b
        }
    }

    /// Offset of channel `c`, pixel 0 of image `n`, and the step from one pixel to the next.
    @inlinable
    public func channelBase(n: Int, c: Int, channels: Int, plane: Int) -> (base: Int, pixelStride: Int) {
        switch self {
        case .nchw: return ((n * channels + c) * plane, 1)
        case let .blocked(b): return ((n * (channels / b) + c / b) * plane * b + c % b, b)
        }
    }

    /// Whether a 4-D tensor of `shape` can have this layout.
    public func admits(_ shape: [Int]) -> Bool {
        switch self {
        case .nchw: return true
        case let .blocked(b): return b > 0 && shape.count == 4 && shape[1] % b == 0
        }
    }

    /// oneDNN's name for it: "nchw", "nChw8c", "nChw16c".
    public var description: String {
        switch self {
        case .nchw: return "nchw"
        case let .blocked(b): return "nChw\(b)c"
        }
    }
}

/// A dense f32 tensor: row-major (C) order — NCHW for images and feature maps, OIHW for
/// convolution weights, PyTorch's layouts, so weights and fixtures map one to one — or, for
/// activations inside the network, a blocked layout the backend chose (`layout`).
///
/// Storage is 64-byte aligned (oneDNN's AVX-512 kernels prefer it). A tensor owns its storage
/// or is a view over another tensor's (kept alive by the view), which lets a model reuse one
/// buffer for the gradients of many layers. A `Tensor` is a reference type: layers hand out
/// their planned buffers, and whoever holds one sees the values the last step wrote into it.
public final class Tensor: @unchecked Sendable {
    /// Extents, outermost first (logical NCHW order whatever the layout).
    public let shape: [Int]
    /// Number of elements (product of `shape`).
    public let count: Int
    /// The memory order of the elements.
    public let layout: ActivationLayout
    /// The elements, `count` of them.
    public let data: UnsafeMutablePointer<Float>
    /// The tensor whose storage this one views, if any.
    private let owner: Tensor?
    /// Changes whenever the values are rewritten through `fill`, `copy(from:)` or
    /// `markModified()` (loads and optimizer steps call it): kernels that keep a prepared copy
    /// of a weight tensor (reordered, transformed) reuse it while the version stays the same.
    /// Unique across tensors, so a new tensor never matches an old tensor's cache.
    public private(set) var version: UInt64 = Tensor.nextVersion()

    private static let versionLock = NSLock()
    nonisolated(unsafe) private static var versionCounter: UInt64 = 0
    private static func nextVersion() -> UInt64 {
        versionLock.lock()
        defer { versionLock.unlock() }
        versionCounter += 1
        return versionCounter
    }

    /// Records that the values were rewritten through `data` (see `version`).
    public func markModified() { version = Tensor.nextVersion() }

    /// A zero-filled tensor of the given shape and layout.
    public init(shape: [Int], layout: ActivationLayout = .nchw) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        precondition(layout.admits(shape), "\(layout) needs 4-D with C a multiple of its block: \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.layout = layout
        self.owner = nil
        let bytes = max(self.count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(self.count, 1))
        self.data = raw.assumingMemoryBound(to: Float.self)
    }

    /// A view of the first elements of `base`'s storage with another shape and layout.
    public init(viewing base: Tensor, shape: [Int], layout: ActivationLayout = .nchw) {
        let n = shape.reduce(1, *)
        precondition(n <= base.count, "a view of \(n) elements over \(base.count)")
        precondition(layout.admits(shape), "\(layout) needs 4-D with C a multiple of its block: \(shape)")
        self.shape = shape
        self.count = n
        self.layout = layout
        self.owner = base.owner ?? base
        self.data = base.data
    }

    /// A tensor holding a copy of `values`; `values.count` must equal the product of `shape`.
    public convenience init(shape: [Int], values: [Float]) throws {
        let n = shape.reduce(1, *)
        guard values.count == n else {
            throw EngineError.invalidArgument("tensor of shape \(shape) needs \(n) values, got \(values.count)")
        }
        self.init(shape: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: n) }
    }

    deinit { if owner == nil { UnsafeMutableRawPointer(data).deallocate() } }

    /// Extent of dimension `i`.
    @inlinable public func dim(_ i: Int) -> Int { shape[i] }

    /// The elements as a buffer pointer (no copy).
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: data, count: count)
    }

    /// A copy of the elements as an array.
    public var array: [Float] { Array(buffer) }

    /// Sets every element to `value`.
    public func fill(_ value: Float) {
        data.update(repeating: value, count: count)
        markModified()
    }

    /// Sets every element to zero.
    public func zero() { fill(0) }

    /// Copies the elements of `other`, which must have the same number of elements.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy between tensors of \(other.count) and \(count) elements")
        data.update(from: other.data, count: count)
        markModified()
    }

    /// A new tensor with the same shape, layout and a copy of the values.
    public func clone() -> Tensor {
        let t = Tensor(shape: shape, layout: layout)
        t.copy(from: self)
        return t
    }

    /// Throws `shapeMismatch` unless `shape == expected` (and, when given, the layout agrees).
    public func requireShape(_ expected: [Int], layout: ActivationLayout? = nil, _ what: @autoclosure () -> String) throws {
        if shape != expected { throw EngineError.shapeMismatch(what: what(), expected: expected, got: shape) }
        if let layout, layout != self.layout {
            throw EngineError.invalidArgument("\(what()): expected layout \(layout), got \(self.layout)")
        }
    }

    /// The element at logical NCHW position (n, c, y, x), whatever the layout.
    public func element(_ n: Int, _ c: Int, _ y: Int, _ x: Int) -> Float {
        let plane = shape[2] * shape[3]
        let (base, stride) = layout.channelBase(n: n, c: c, channels: shape[1], plane: plane)
        return data[base + (y * shape[3] + x) * stride]
    }

    /// Whether every element is finite (no NaN, no infinity).
    public var isFinite: Bool { allFinite(data, count: count) }

    /// Sum of squares, accumulated in Double: an L2 norm that does not depend on element order
    /// at f32 precision.
    public func squaredNorm() -> Double {
        var s = 0.0
        for i in 0..<count { let v = Double(data[i]); s += v * v }
        return s
    }
}

/// Whether the `count` values at `values` are all finite (no NaN, no infinity). A product of
/// zero with a non-finite value is NaN, so one multiply-add pass catches both.
public func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    var acc: Float = 0
    for i in 0..<count { acc += values[i] * 0 }
    return acc == 0
}
