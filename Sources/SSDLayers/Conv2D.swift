import SSDEngine

/// The activation a layer applies to its output, with PyTorch's definitions (see
/// `ActivationFunction` for the formulas and the gradients at the kinks).
public enum Activation: String, Sendable, CaseIterable {
    case none
    /// `nn.ReLU`
    case relu
    /// `nn.ReLU6`: min(max(x, 0), 6)
    case relu6
    /// `nn.Hardswish`: x · relu6(x + 3) / 6
    case hardswish
    /// `nn.Hardsigmoid`: relu6(x + 3) / 6
    case hardsigmoid

    /// The point-wise function, nil for `.none`.
    public var function: ActivationFunction? {
        switch self {
        case .none: return nil
        case .relu: return .relu
        case .relu6: return .relu6
        case .hardswish: return .hardswish
        case .hardsigmoid: return .hardsigmoid
        }
    }
}

/// A 2-D convolution with an optional bias and activation: PyTorch's `nn.Conv2d(in, out, k,
/// stride, padding, dilation, groups, bias)` followed by the activation's module.
///
/// The input may come in any layout the backend accepts; the output is in `outputLayout`
/// (NCHW by default; a model chains layers in the backend's preferred blocked layout).
/// `output` is planned at the first forward of an input shape and reused after. A ReLU is fused
/// into the backend's kernel where it can be; the other activations run after the convolution
/// on a kept pre-activation buffer (planned with `output`), which their backward reads.
public final class Conv2D: Layer {
    /// (Cout, Cin/groups, kh, kw)
    public let weight: Parameter
    /// (Cout), or nil for a convolution built with `bias: false` (torchvision's convolutions
    /// before a batch normalisation). Implicitly unwrapped so that code written for biased
    /// convolutions reads `conv.bias.value` unchanged.
    public let bias: Parameter!
    public let inputChannels: Int
    public let outputChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let dilation: Int
    /// Channel groups: 1 dense, `inputChannels` depthwise.
    public let groups: Int
    public let activation: Activation
    public let outputLayout: ActivationLayout
    /// The algorithm asked of the backend; changing it re-plans at the next call.
    public var algorithm: ConvolutionAlgorithm { didSet { if algorithm != oldValue { kernels = [:] } } }
    public let backend: Backend
    /// Training (forward and backward) or inference (forward only: the backend may plan
    /// inference kernels and keep the weights prepared until they change). Each mode keeps
    /// its own plan, so switching back and forth (evaluation during training) re-plans nothing.
    public var isTraining = true

    /// The plan of each mode (key: `isTraining`).
    private var kernels: [Bool: ConvolutionKernel] = [:]
    private var kernel: ConvolutionKernel? {
        get { kernels[isTraining] }
        set { kernels[isTraining] = newValue }
    }
    /// (N, Cout, Ho, Wo) in `outputLayout`: the last forward's result.
    public private(set) var output = Tensor(shape: [0])
    /// (N, Cout, Ho, Wo): the convolution before an activation other than ReLU (empty otherwise).
    private var preActivation = Tensor(shape: [0])

    /// `name` is the state_dict prefix: parameters become `name.weight` and, with `bias`,
    /// `name.bias`. The channels must divide by `groups` (checked at the first forward).
    public init(name: String, inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias hasBias: Bool = true,
                activation: Activation = .none, outputLayout: ActivationLayout = .nchw,
                algorithm: ConvolutionAlgorithm = .direct, backend: Backend) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.activation = activation
        self.outputLayout = outputLayout
        self.algorithm = algorithm
        self.backend = backend
        weight = Parameter(name: name + ".weight", role: .weight,
                           shape: [outputChannels, inputChannels / max(groups, 1), kernelSize, kernelSize])
        bias = hasBias ? Parameter(name: name + ".bias", role: .bias, shape: [outputChannels]) : nil
    }

    /// The weight, then the bias if there is one (state_dict order).
    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    /// The activation applied after the backend's kernel: any but a ReLU the kernel did not fuse
    /// (an inference kernel may fuse them all; a training one, only a ReLU).
    private func separateActivation(_ k: ConvolutionKernel?) -> ActivationFunction? {
        guard let f = activation.function, f != .relu, k?.fusedActivation != f else { return nil }
        return f
    }
    private var name: String { String(weight.name.dropLast(".weight".count)) }

    /// The implementation the backend chose for the current plan ("none" before the first call).
    public var implementation: String { kernel?.implementation ?? "none" }

    /// The output shape for an input shape (N, Cin, H, W).
    public func outputShape(for input: [Int]) throws -> [Int] { try geometry(for: input).outputShape }

    private func geometry(for input: [Int]) throws -> ConvolutionShape {
        guard input.count == 4, input[1] == inputChannels else {
            throw EngineError.shapeMismatch(what: "\(name) input", expected: [input.first ?? 0, inputChannels, -1, -1], got: input)
        }
        let g = ConvolutionShape(batch: input[0], inChannels: inputChannels, outChannels: outputChannels,
                                 inHeight: input[2], inWidth: input[3], kernelSize: (kernelSize, kernelSize),
                                 stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation),
                                 groups: groups)
        try g.validate()
        return g
    }

    private func plan(_ x: Tensor) throws -> ConvolutionKernel {
        if let k = kernel, k.shape.inputShape == x.shape, k.inputLayout == x.layout { return k }
        let g = try geometry(for: x.shape)
        let k = try backend.convolution(g, algorithm: algorithm, input: x.layout, output: outputLayout,
                                        activation: activation.function, inference: !isTraining)
        kernel = k
        if output.shape != g.outputShape || output.layout != outputLayout {
            output = Tensor(shape: g.outputShape, layout: outputLayout)
        }
        if separateActivation(k) != nil && (preActivation.shape != g.outputShape || preActivation.layout != outputLayout) {
            preActivation = Tensor(shape: g.outputShape, layout: outputLayout)
        }
        return k
    }

    /// output = activation(x ⋆ weight + bias). Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        let k = try plan(x)
        let f = separateActivation(k)
        let target = f == nil ? output : preActivation
        let b = bias.map { UnsafePointer($0.value.data) }
        try Profiler.measure("\(name) forward") {
            if isTraining {
                try k.forward(input: x.data, weight: weight.value.data, bias: b, output: target.data)
            } else {
                try k.forward(input: x.data, weight: weight.value.data, weightsVersion: weight.value.version,
                              bias: b, output: target.data)
            }
            if activation == .relu && !k.fusedReLU { try backend.reluForward(output.data, count: output.count) }
            if let f { try backend.activationForward(f, input: preActivation.data, output: output.data, count: output.count) }
        }
        return output
    }

    /// Backward from `outputGrad` (the output's shape and layout) and the forward's input `x`.
    /// With an activation, first multiplies `outputGrad` in place by its derivative (a ReLU's
    /// from the forward's output, the others' from the kept pre-activation). Accumulates
    /// d loss/d weight and d loss/d bias; when `inputGrad` is given (x's shape and layout),
    /// writes d loss/d x into it.
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        let k = try plan(x)
        try outputGrad.requireShape(k.shape.outputShape, layout: outputLayout, "\(name) output gradient")
        if activation == .relu {
            try Profiler.measure("\(name) relu backward") {
                try backend.reluBackward(output: output.data, grad: outputGrad.data, count: output.count)
            }
        } else if let f = separateActivation(k) {
            try Profiler.measure("\(name) \(f) backward") {
                try backend.activationBackward(f, input: preActivation.data, grad: outputGrad.data, count: output.count)
            }
        }
        try Profiler.measure("\(name) backward weights") {
            try k.backwardWeights(input: x.data, outputGrad: outputGrad.data, weightGrad: weight.grad.data,
                                  biasGrad: bias?.grad.data)
        }
        guard let inputGrad else { return }
        try inputGrad.requireShape(x.shape, layout: x.layout, "\(name) input gradient")
        try Profiler.measure("\(name) backward data") {
            try k.backwardData(outputGrad: outputGrad.data, weight: weight.value.data, inputGrad: inputGrad.data)
        }
    }
}

/// ReLU, in place: the forward overwrites its input with max(x, 0); the backward masks the
/// gradient where that output is not positive.
public struct ReLU {
    public let backend: Backend
    public init(backend: Backend) { self.backend = backend }

    /// x ← max(x, 0)
    public func forward(_ x: Tensor) throws { try backend.reluForward(x.data, count: x.count) }

    /// grad ← grad · (output > 0)
    public func backward(output: Tensor, grad: Tensor) throws {
        try grad.requireShape(output.shape, layout: output.layout, "ReLU gradient")
        try backend.reluBackward(output: output.data, grad: grad.data, count: output.count)
    }
}

/// Max pooling: PyTorch's `nn.MaxPool2d(kernel, stride, padding, ceil_mode)`, in the input's
/// layout.
public final class MaxPool2D: Layer {
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let ceilMode: Bool
    public let backend: Backend
    /// Training (keeps the arg-max positions for the backward) or inference; each mode keeps
    /// its own plan.
    public var isTraining = true
    private var kernels: [Bool: PoolingKernel] = [:]
    private var kernel: PoolingKernel? {
        get { kernels[isTraining] }
        set { kernels[isTraining] = newValue }
    }
    /// (N, C, Ho, Wo), in the input's layout.
    public private(set) var output = Tensor(shape: [0])

    public init(kernelSize: Int, stride: Int, padding: Int = 0, ceilMode: Bool = false, backend: Backend) {
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.ceilMode = ceilMode
        self.backend = backend
    }

    private func plan(_ x: Tensor) throws -> PoolingKernel {
        if let k = kernel, k.shape.inputShape == x.shape, k.layout == x.layout { return k }
        guard x.shape.count == 4 else {
            throw EngineError.invalidArgument("max pooling needs an (N, C, H, W) input, got \(x.shape)")
        }
        let input = x.shape
        let g = PoolingShape(batch: input[0], channels: input[1], inHeight: input[2], inWidth: input[3],
                             kernel: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
        try g.validate()
        let k = try backend.maxPooling(g, layout: x.layout, inference: !isTraining)
        kernel = k
        if output.shape != g.outputShape || output.layout != x.layout { output = Tensor(shape: g.outputShape, layout: x.layout) }
        return k
    }

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        let k = try plan(x)
        try Profiler.measure("maxpool \(k.shape.inHeight)×\(k.shape.inWidth) forward") {
            try k.forward(input: x.data, output: output.data)
        }
        return output
    }

    public var parameters: [Parameter] { [] }

    /// The `Layer` form: pooling has no parameters, so without `inputGrad` there is nothing to do.
    public func backward(input: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        if let inputGrad { try backward(outputGrad: outputGrad, inputGrad: inputGrad) }
    }

    /// Routes `outputGrad` to the arg-max of each window of the last forward, writing
    /// `inputGrad` (the forward input's shape and layout).
    public func backward(outputGrad: Tensor, inputGrad: Tensor) throws {
        guard let k = kernel else { throw EngineError.invalidArgument("max pooling backward before forward") }
        try outputGrad.requireShape(k.shape.outputShape, layout: k.layout, "max pooling output gradient")
        try inputGrad.requireShape(k.shape.inputShape, layout: k.layout, "max pooling input gradient")
        try Profiler.measure("maxpool \(k.shape.inHeight)×\(k.shape.inWidth) backward") {
            try k.backward(outputGrad: outputGrad.data, inputGrad: inputGrad.data)
        }
    }
}
