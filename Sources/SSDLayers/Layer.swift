import SSDEngine

/// What a learnable tensor is, so optimizers, initialisers and exporters group parameters by
/// type instead of by name (the reference's optimizer gives biases twice the learning rate).
public enum ParameterRole: String, Sendable, CaseIterable {
    /// A convolution's kernel (Cout, Cin/groups, kh, kw).
    case weight
    /// A convolution's bias (Cout).
    case bias
    /// A per-channel learned scale that is not a normalisation's γ (SSD's `rescale_factors`).
    case scale
    /// A batch normalisation's γ (C).
    case normalizationWeight
    /// A batch normalisation's β (C).
    case normalizationBias

    /// Whether the reference's optimizer puts this parameter in its bias group: every tensor
    /// whose state_dict name ends in `.bias` there, i.e. convolution and normalisation biases.
    public var isBias: Bool { self == .bias || self == .normalizationBias }
}

/// What a saved, non-learned tensor is.
public enum BufferRole: String, Sendable, CaseIterable {
    /// A batch normalisation's running mean (C).
    case runningMean
    /// A batch normalisation's running (unbiased) variance (C).
    case runningVariance
}

/// A non-learned tensor saved with the weights under its state_dict name.
public struct Buffer {
    public let name: String
    public let role: BufferRole
    public let value: Tensor
    public init(name: String, role: BufferRole, value: Tensor) {
        self.name = name
        self.role = role
        self.value = value
    }
}

/// One layer of a network: a forward and a backward, its parameters and buffers under their
/// state_dict paths. Composite layers (a sequence, a residual block) are layers too, so every
/// walk over a model — zeroing, saving, loading, optimizer groups, gradient checks — is a walk
/// over this protocol.
///
/// Contract:
/// - `forward(x)` writes and returns the layer's `output` buffer, planned at the first call of
///   an input shape and layout and reused after (a training step allocates nothing).
/// - `backward(input:outputGrad:inputGrad:)` follows the last `forward` on that same `input`:
///   it *accumulates* every parameter's gradient and, when `inputGrad` is given (the input's
///   shape and layout), *overwrites* it with d loss / d input. It may overwrite `outputGrad`
///   (masks of fused activations are applied in place); `inputGrad` may not alias `input`.
public protocol Layer: AnyObject {
    /// Learnable tensors, in the reference's state_dict order.
    var parameters: [Parameter] { get }
    /// Saved, non-learned tensors, in state_dict order.
    var buffers: [Buffer] { get }
    /// Training mode (batch statistics, kept state for the backward) or evaluation mode.
    var isTraining: Bool { get set }
    /// The last forward's result.
    var output: Tensor { get }
    /// The layers this one is made of (empty for a primitive layer), for walks that look inside.
    var sublayers: [Layer] { get }
    @discardableResult
    func forward(_ x: Tensor) throws -> Tensor
    func backward(input: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws
}

extension Layer {
    public var buffers: [Buffer] { [] }
    public var sublayers: [Layer] { [] }
    /// Zeroes every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }
}
