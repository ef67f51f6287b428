/// A point-wise activation with PyTorch's exact definitions (the CPU kernels of
/// `aten/src/ATen/native/cpu/Activation.cpp`, whose vectorised path runs on contiguous f32):
///
/// | f            | f(x)                          | f′(x) used by the backward                         |
/// |--------------|-------------------------------|----------------------------------------------------|
/// | relu         | max(x, 0)                     | 1 for x > 0, else 0                                |
/// | relu6        | min(max(x, 0), 6)             | 1 for 0 < x < 6, else 0 (hardtanh_backward)        |
/// | hardswish    | x · min(max(x + 3, 0), 6) / 6 | 0 for x < −3, x/3 + 1/2 for −3 ≤ x < 3, 1 for x ≥ 3 |
/// | hardsigmoid  | min(max(x + 3, 0), 6) / 6     | 1/6 for −3 < x < 3, else 0                         |
///
/// At the kinks: hardswish′(−3) = −1/2 and hardswish′(3) = 1, as PyTorch's vectorised CPU
/// kernel gives (its scalar tail gives 3/2 at x = 3; its CUDA kernel gives 0 at x = −3); the
/// clamps' gradients are 0 exactly at their bounds. A zero gradient is a select, not a product,
/// so an infinite incoming gradient stays out of masked elements as in PyTorch.
public enum ActivationFunction: String, Sendable, CaseIterable {
    case relu
    case relu6
    case hardswish
    case hardsigmoid

    /// f(x), in PyTorch's operation order (bit for bit).
    @inlinable @inline(__always)
    public func apply(_ x: Float) -> Float {
        switch self {
        case .relu: return x > 0 ? x : 0
        case .relu6: return Swift.min(Swift.max(x, 0), 6)
        case .hardswish: return x * Swift.min(Swift.max(x + 3, 0), 6) / 6
        case .hardsigmoid: return Swift.min(Swift.max(x + 3, 0), 6) / 6
        }
    }

    /// g · f′(x): the incoming gradient g through f at the pre-activation x.
    @inlinable @inline(__always)
    public func gradient(_ g: Float, at x: Float) -> Float {
        switch self {
        case .relu: return x > 0 ? g : 0
        case .relu6: return x > 0 && x < 6 ? g : 0
        case .hardswish: return x < -3 ? 0 : (x >= 3 ? g : g * (x / 3 + 0.5))
        case .hardsigmoid: return x > -3 && x < 3 ? g * (Float(1) / 6) : 0
        }
    }

    /// f on 16 lanes: the same arithmetic as `apply(_: Float)` lane by lane.
    @inlinable @inline(__always)
    public func apply(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let zero = SIMD16<Float>(repeating: 0), six = SIMD16<Float>(repeating: 6)
        switch self {
        case .relu: return x.replacing(with: zero, where: .!(x .> zero))
        case .relu6: return Self.clamp6(x)
        case .hardswish: return x * Self.clamp6(x + 3) / six
        case .hardsigmoid: return Self.clamp6(x + 3) / six
        }
    }

    /// g · f′(x) on 16 lanes.
    @inlinable @inline(__always)
    public func gradient(_ g: SIMD16<Float>, at x: SIMD16<Float>) -> SIMD16<Float> {
        let zero = SIMD16<Float>(repeating: 0)
        switch self {
        case .relu: return g.replacing(with: zero, where: .!(x .> zero))
        case .relu6: return g.replacing(with: zero, where: .!((x .> zero) .& (x .< 6)))
        case .hardswish:
            let inner = g * (x / 3 + 0.5)
            return inner.replacing(with: g, where: x .>= 3).replacing(with: zero, where: x .< -3)
        case .hardsigmoid:
            return (g * (Float(1) / 6)).replacing(with: zero, where: .!((x .> -3) .& (x .< 3)))
        }
    }

    /// min(max(x, 0), 6), lane by lane as `Swift.min(Swift.max(x, 0), 6)` (NaN stays NaN).
    @inlinable @inline(__always)
    static func clamp6(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let low = x.replacing(with: 0, where: x .< 0)
        return low.replacing(with: 6, where: low .> 6)
    }
}

/// Runs `body(offset, isScalar)` over `count` elements in parallel: whole 16-float vectors
/// (`isScalar` false) and the scalar tail (`isScalar` true, one element each).
@inline(__always)
func forEachVector(count: Int, _ body: (Int, Bool) -> Void) {
    let vectors = count / 16, chunk = 1024  // vectors per work item: 64 KiB
    parallelFor((vectors + chunk - 1) / chunk) { range in
        for item in range {
            for v in (item * chunk)..<min(vectors, (item + 1) * chunk) { body(16 * v, false) }
        }
    }
    for i in (16 * vectors)..<count { body(i, true) }
}

extension DNNLBackend {
    public func activationForward(_ f: ActivationFunction, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                  count: Int) throws {
        forEachVector(count: count) { i, scalar in
            if scalar {
                output[i] = f.apply(input[i])
            } else {
                let v = UnsafeRawPointer(input + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(output + i).storeBytes(of: f.apply(v), as: SIMD16<Float>.self)
            }
        }
    }

    public func activationBackward(_ f: ActivationFunction, input: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                                   count: Int) throws {
        forEachVector(count: count) { i, scalar in
            if scalar {
                grad[i] = f.gradient(grad[i], at: input[i])
            } else {
                let x = UnsafeRawPointer(input + i).loadUnaligned(as: SIMD16<Float>.self)
                let g = UnsafeRawPointer(grad + i).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(grad + i).storeBytes(of: f.gradient(g, at: x), as: SIMD16<Float>.self)
            }
        }
    }
}

/// out = a + b over `count` elements (`out` may be `a` or `b`), in parallel on 16-float vectors:
/// the one element-wise sum (residual connections, gradients of a tensor read twice).
public func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
    let vectors = count / 16, chunk = 1024
    parallelFor((vectors + chunk - 1) / chunk) { range in
        for item in range {
            for v in (item * chunk)..<min(vectors, (item + 1) * chunk) {
                let x = UnsafeRawPointer(a + 16 * v).loadUnaligned(as: SIMD16<Float>.self)
                let y = UnsafeRawPointer(b + 16 * v).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(out + 16 * v).storeBytes(of: x + y, as: SIMD16<Float>.self)
            }
        }
    }
    for i in (16 * vectors)..<count { out[i] = a[i] + b[i] }
}

/// y += x, element-wise (same shape and layout).
public func add(_ x: Tensor, into y: Tensor) {
    precondition(x.shape == y.shape && x.layout == y.layout, "adding \(x.shape) \(x.layout) to \(y.shape) \(y.layout)")
    add(x.data, y.data, into: y.data, count: x.count)
}
