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

/// A dense f32 tensor in row-major (C) order: NCHW for images and feature maps, OIHW for
/// convolution weights — PyTorch's layouts, so weights and fixtures map one to one.
///
/// Storage is 64-byte aligned (oneDNN's AVX-512 kernels prefer it) and owned by the tensor.
/// A `Tensor` is a reference type: layers hand out their planned buffers, and whoever holds
/// one sees the values the last step wrote into it.
public final class Tensor: @unchecked Sendable {
    /// Extents, outermost first.
    public let shape: [Int]
    /// Number of elements (product of `shape`).
    public let count: Int
    /// The elements, `count` of them.
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor of the given shape.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let bytes = max(self.count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(self.count, 1))
        self.data = raw.assumingMemoryBound(to: Float.self)
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

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    /// Extent of dimension `i`.
    @inlinable public func dim(_ i: Int) -> Int { shape[i] }

    /// The elements as a buffer pointer (no copy).
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: data, count: count)
    }

    /// A copy of the elements as an array.
    public var array: [Float] { Array(buffer) }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Sets every element to zero.
    public func zero() { fill(0) }

    /// Copies the elements of `other`, which must have the same number of elements.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy between tensors of \(other.count) and \(count) elements")
        data.update(from: other.data, count: count)
    }

    /// A new tensor with the same shape and a copy of the values.
    public func clone() -> Tensor {
        let t = Tensor(shape: shape)
        t.copy(from: self)
        return t
    }

    /// Throws `shapeMismatch` unless `shape == expected`.
    public func requireShape(_ expected: [Int], _ what: @autoclosure () -> String) throws {
        if shape != expected { throw EngineError.shapeMismatch(what: what(), expected: expected, got: shape) }
    }

    /// Sum of squares, accumulated in Double: an L2 norm that does not depend on element order
    /// at f32 precision.
    public func squaredNorm() -> Double {
        var s = 0.0
        for i in 0..<count { let v = Double(data[i]); s += v * v }
        return s
    }
}
