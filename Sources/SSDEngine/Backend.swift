/// The narrow interface between layers and whatever computes convolutions, pooling and
/// element-wise ops. Layers see only these protocols; `DNNLBackend` implements them over
/// oneDNN, `NaiveBackend` with plain loops (the reference twin every fast kernel is tested
/// against). Another backend (cuDNN, Accelerate) would implement the same four entry points.
///
/// Tensors crossing this interface are f32; weights are OIHW (PyTorch's layout); activations
/// are NCHW or, where the backend prefers it (`preferredLayout`), blocked nChw{b}c with the
/// block the backend picks for the host, so that
/// consecutive layers hand each other data without reordering. A backend may keep still other
/// layouts inside a kernel.
public protocol Backend: AnyObject {
    /// A short name for logs ("onednn", "naive").
    var name: String { get }
    /// The layout this backend computes fastest on for activations with `channels` channels.
    func preferredLayout(channels: Int) -> ActivationLayout
    /// A convolution kernel planned for one shape and pair of activation layouts; reuse it for
    /// every call of that shape. With `activation` the forward writes f(conv + bias) where the
    /// backend can fuse it (the kernel's `fusedActivation` says whether it did; a training
    /// kernel fuses at most a ReLU, whose output alone gives its derivative). An
    /// `inference` kernel is planned for forward calls only (its backward throws) and may keep a
    /// prepared copy of the weights between calls (see `forward(…weightsVersion:…)`).
    func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout,
                     output: ActivationLayout, activation: ActivationFunction?, inference: Bool) throws -> ConvolutionKernel
    /// A max-pooling kernel planned for one shape; input and output share `layout`. An
    /// `inference` kernel keeps no arg-max positions and its backward throws.
    func maxPooling(_ shape: PoolingShape, layout: ActivationLayout, inference: Bool) throws -> PoolingKernel
    /// Copies `source` into `destination` (same shape), converting between their layouts.
    func reorder(_ source: Tensor, into destination: Tensor) throws
    /// In place: `x = max(x, 0)` over `count` elements.
    func reluForward(_ x: UnsafeMutablePointer<Float>, count: Int) throws
    /// In place: `grad *= (output > 0)`, where `output` is the ReLU's output.
    func reluBackward(output: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) throws
    /// `output[i] = f(input[i])` over `count` elements, with PyTorch's formula for `f` (see
    /// `ActivationFunction`). `output` may be `input` (in place). Layout-agnostic.
    func activationForward(_ f: ActivationFunction, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           count: Int) throws
    /// In place: `grad[i] = grad[i] · f′(input[i])`, where `input` holds the forward's
    /// *pre-activation* values; at the kinks f′ takes PyTorch's values (see `ActivationFunction`).
    func activationBackward(_ f: ActivationFunction, input: UnsafePointer<Float>, grad: UnsafeMutablePointer<Float>,
                            count: Int) throws
    /// Row-major `C = alpha * op(A) * op(B) + beta * C`, `op(A)` M×K, `op(B)` K×N.
    func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) throws
}

extension Backend {
    /// A convolution kernel with or without a fused ReLU.
    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout,
                            output: ActivationLayout, fusedReLU: Bool, inference: Bool) throws -> ConvolutionKernel {
        try convolution(shape, algorithm: algorithm, input: input, output: output, activation: fusedReLU ? .relu : nil,
                        inference: inference)
    }

    /// A convolution kernel for training (forward and backward).
    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm, input: ActivationLayout,
                            output: ActivationLayout, fusedReLU: Bool) throws -> ConvolutionKernel {
        try convolution(shape, algorithm: algorithm, input: input, output: output, fusedReLU: fusedReLU, inference: false)
    }

    /// A max-pooling kernel for training (forward and backward).
    public func maxPooling(_ shape: PoolingShape, layout: ActivationLayout) throws -> PoolingKernel {
        try maxPooling(shape, layout: layout, inference: false)
    }

    /// A convolution on NCHW activations without fused activation.
    public func convolution(_ shape: ConvolutionShape, algorithm: ConvolutionAlgorithm) throws -> ConvolutionKernel {
        try convolution(shape, algorithm: algorithm, input: .nchw, output: .nchw, fusedReLU: false)
    }

    /// Max pooling on NCHW activations.
    public func maxPooling(_ shape: PoolingShape) throws -> PoolingKernel { try maxPooling(shape, layout: .nchw) }
}

extension ConvolutionKernel {
    /// Whether the forward applies a ReLU.
    public var fusedReLU: Bool { fusedActivation == .relu }

    /// By default the version is ignored and the weights are prepared anew at every call.
    public func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, weightsVersion: UInt64,
                        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) throws {
        try forward(input: input, weight: weight, bias: bias, output: output)
    }
}

/// Which convolution algorithm a kernel should use.
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// Direct convolution: closest to PyTorch's numbers (about 1e-6 relative per layer).
    case direct
    /// Winograd F(4,3) where the backend supports it (3×3, stride 1, no dilation); direct elsewhere.
    case winograd
    /// The backend's choice.
    case auto
}

/// The geometry of one 2-D convolution, batch included.
public struct ConvolutionShape: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var inChannels: Int
    public var outChannels: Int
    public var inHeight: Int
    public var inWidth: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var paddingHeight: Int
    public var paddingWidth: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    /// Channel groups (PyTorch's `groups`): input and output channels split into `groups`
    /// equal parts, output part g seeing input part g only. 1: dense; `inChannels`:
    /// depthwise (with `outChannels == inChannels`).
    public var groups: Int

    public init(batch: Int, inChannels: Int, outChannels: Int, inHeight: Int, inWidth: Int,
                kernelSize: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        self.groups = groups
        self.batch = batch
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.inHeight = inHeight
        self.inWidth = inWidth
        (kernelHeight, kernelWidth) = kernelSize
        (strideHeight, strideWidth) = stride
        (paddingHeight, paddingWidth) = padding
        (dilationHeight, dilationWidth) = dilation
    }

    /// Output height, as PyTorch computes it (floor).
    public var outHeight: Int {
        (inHeight + 2 * paddingHeight - dilationHeight * (kernelHeight - 1) - 1) / strideHeight + 1
    }
    /// Output width, as PyTorch computes it (floor).
    public var outWidth: Int {
        (inWidth + 2 * paddingWidth - dilationWidth * (kernelWidth - 1) - 1) / strideWidth + 1
    }
    /// (N, Cin, H, W)
    public var inputShape: [Int] { [batch, inChannels, inHeight, inWidth] }
    /// (Cout, Cin/groups, kh, kw): PyTorch's weight, which is also oneDNN's goihw
    /// (groups, Cout/groups, Cin/groups, kh, kw) in the same memory.
    public var weightShape: [Int] { [outChannels, inChannels / max(groups, 1), kernelHeight, kernelWidth] }
    /// True for a depthwise convolution (one input and one output channel per group).
    public var isDepthwise: Bool { groups > 1 && groups == inChannels && groups == outChannels }
    /// (N, Cout, Ho, Wo)
    public var outputShape: [Int] { [batch, outChannels, outHeight, outWidth] }

    /// True where Winograd F(4,3) applies (dense 3×3 stride 1: never for grouped convolutions).
    public var winogradEligible: Bool {
        groups == 1 && kernelHeight == 3 && kernelWidth == 3 && strideHeight == 1 && strideWidth == 1
            && dilationHeight == 1 && dilationWidth == 1
    }

    /// Throws unless every extent is positive and the output is non-empty.
    public func validate() throws {
        let all = [batch, inChannels, outChannels, inHeight, inWidth, kernelHeight, kernelWidth,
                   strideHeight, strideWidth, dilationHeight, dilationWidth]
        guard all.allSatisfy({ $0 > 0 }), paddingHeight >= 0, paddingWidth >= 0 else {
            throw EngineError.invalidArgument("convolution with a non-positive extent: \(self)")
        }
        guard groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw EngineError.invalidArgument("convolution channels must divide by groups: \(self)")
        }
        guard outHeight > 0, outWidth > 0 else {
            throw EngineError.invalidArgument("convolution output would be empty: \(self)")
        }
    }

    public var description: String {
        "conv(N\(batch) \(inChannels)→\(outChannels) \(inHeight)×\(inWidth) k\(kernelHeight)×\(kernelWidth)"
            + " s\(strideHeight) p\(paddingHeight) d\(dilationHeight)\(groups > 1 ? " g\(groups)" : ""))"
    }
}

/// A convolution planned for one `ConvolutionShape`.
///
/// Contract: `forward` overwrites `output`; `backwardData` overwrites `inputGrad`;
/// `backwardWeights` *adds* into `weightGrad` and `biasGrad` (so gradients accumulate, as in
/// llm.c and PyTorch). Input and input gradient are in `inputLayout`, output and output
/// gradient in `outputLayout`. A fused ReLU is not undone by the backward: mask the output
/// gradient first.
public protocol ConvolutionKernel: AnyObject {
    var shape: ConvolutionShape { get }
    var inputLayout: ActivationLayout { get }
    var outputLayout: ActivationLayout { get }
    /// The activation the forward applies after the bias, or nil.
    var fusedActivation: ActivationFunction? { get }
    /// The implementation the backend chose, e.g. "jit:avx512_core" or "naive".
    var implementation: String { get }
    /// output (N, Cout, Ho, Wo) = input (N, Cin, H, W) ⋆ weight (Cout, Cin/groups, kh, kw) + bias (Cout)
    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) throws
    /// The same, where `weightsVersion` (the weight tensor's `version`) tells the kernel when
    /// the weights changed, so it may reuse its prepared copy of them (default: ignored).
    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, weightsVersion: UInt64,
                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) throws
    /// inputGrad (N, Cin, H, W) = d output / d input applied to outputGrad (N, Cout, Ho, Wo)
    func backwardData(outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      inputGrad: UnsafeMutablePointer<Float>) throws
    /// weightGrad (Cout, Cin/groups, kh, kw) += …, biasGrad (Cout) += …
    func backwardWeights(input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) throws
}

/// The geometry of one 2-D max pooling, batch included. Padding counts as −∞, as in PyTorch.
public struct PoolingShape: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var channels: Int
    public var inHeight: Int
    public var inWidth: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int
    public var ceilMode: Bool

    public init(batch: Int, channels: Int, inHeight: Int, inWidth: Int, kernel: Int, stride: Int,
                padding: Int = 0, ceilMode: Bool = false) {
        self.batch = batch
        self.channels = channels
        self.inHeight = inHeight
        self.inWidth = inWidth
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.ceilMode = ceilMode
    }

    /// PyTorch's output extent: floor or ceil of (in + 2p − k) / s, plus one; in ceil mode the
    /// last window must start inside the input or left padding.
    static func outExtent(_ size: Int, kernel: Int, stride: Int, padding: Int, ceil: Bool) -> Int {
        let span = size + 2 * padding - kernel
        var out = (ceil ? (span + stride - 1) / stride : span / stride) + 1
        if ceil && (out - 1) * stride >= size + padding { out -= 1 }
        return out
    }

    public var outHeight: Int { Self.outExtent(inHeight, kernel: kernel, stride: stride, padding: padding, ceil: ceilMode) }
    public var outWidth: Int { Self.outExtent(inWidth, kernel: kernel, stride: stride, padding: padding, ceil: ceilMode) }
    /// (N, C, H, W)
    public var inputShape: [Int] { [batch, channels, inHeight, inWidth] }
    /// (N, C, Ho, Wo)
    public var outputShape: [Int] { [batch, channels, outHeight, outWidth] }

    public func validate() throws {
        guard batch > 0, channels > 0, inHeight > 0, inWidth > 0, kernel > 0, stride > 0, padding >= 0,
              2 * padding <= kernel, outHeight > 0, outWidth > 0
        else { throw EngineError.invalidArgument("invalid max pooling: \(self)") }
    }

    public var description: String {
        "maxpool(N\(batch) C\(channels) \(inHeight)×\(inWidth) k\(kernel) s\(stride) p\(padding)\(ceilMode ? " ceil" : ""))"
    }
}

/// A max pooling planned for one `PoolingShape`. `backward` uses the arg-max positions of the
/// most recent `forward`, overwriting `inputGrad`.
public protocol PoolingKernel: AnyObject {
    var shape: PoolingShape { get }
    var layout: ActivationLayout { get }
    /// output (N, C, Ho, Wo) = max over each window of input (N, C, H, W)
    func forward(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) throws
    /// inputGrad (N, C, H, W) from outputGrad (N, C, Ho, Wo), routed to each window's arg-max
    func backward(outputGrad: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) throws
}
