import SSDEngine

/// A 2-D convolution with bias, NCHW in and out: PyTorch's `nn.Conv2d(in, out, k, stride,
/// padding, dilation)`.
///
/// Buffers are planned once per input shape: `output` (N, Cout, Ho, Wo) and `inputGrad`
/// (N, Cin, H, W) are owned by the layer and reused by every call of that shape.
public final class Conv2D {
    /// (Cout, Cin, kh, kw)
    public let weight: Parameter
    /// (Cout)
    public let bias: Parameter
    public let inputChannels: Int
    public let outputChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let dilation: Int
    /// The algorithm asked of the backend; changing it re-plans at the next call.
    public var algorithm: ConvolutionAlgorithm { didSet { if algorithm != oldValue { kernel = nil } } }
    public let backend: Backend

    private var kernel: ConvolutionKernel?
    /// (N, Cout, Ho, Wo): the last forward's result.
    public private(set) var output = Tensor(shape: [0])
    /// (N, Cin, H, W): the last backward's input gradient.
    public private(set) var inputGrad = Tensor(shape: [0])

    /// `name` is the state_dict prefix: parameters become `name.weight` and `name.bias`.
    public init(name: String, inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: Int = 0, dilation: Int = 1, algorithm: ConvolutionAlgorithm = .direct, backend: Backend) {
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.algorithm = algorithm
        self.backend = backend
        weight = Parameter(name: name + ".weight", shape: [outputChannels, inputChannels, kernelSize, kernelSize])
        bias = Parameter(name: name + ".bias", shape: [outputChannels])
    }

    public var parameters: [Parameter] { [weight, bias] }

    /// The implementation the backend chose for the current plan ("none" before the first call).
    public var implementation: String { kernel?.implementation ?? "none" }

    /// The output shape for an input shape (N, Cin, H, W).
    public func outputShape(for input: [Int]) throws -> [Int] { try geometry(for: input).outputShape }

    private func geometry(for input: [Int]) throws -> ConvolutionShape {
        guard input.count == 4, input[1] == inputChannels else {
            throw EngineError.shapeMismatch(what: "\(weight.name.dropLast(7)) input",
                                            expected: [input.first ?? 0, inputChannels, -1, -1], got: input)
        }
        let g = ConvolutionShape(batch: input[0], inChannels: inputChannels, outChannels: outputChannels,
                                 inHeight: input[2], inWidth: input[3], kernelSize: (kernelSize, kernelSize),
                                 stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation))
        try g.validate()
        return g
    }

    private func plan(_ input: [Int]) throws -> ConvolutionKernel {
        if let k = kernel, k.shape.inputShape == input { return k }
        let g = try geometry(for: input)
        let k = try backend.convolution(g, algorithm: algorithm)
        kernel = k
        if output.shape != g.outputShape { output = Tensor(shape: g.outputShape) }
        return k
    }

    /// output = x ⋆ weight + bias. Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        let k = try plan(x.shape)
        try k.forward(input: x.data, weight: weight.value.data, bias: bias.value.data, output: output.data)
        return output
    }

    /// Accumulates d loss/d weight and d loss/d bias from `outputGrad` (N, Cout, Ho, Wo) and the
    /// forward's input `x`; when `computeInputGrad`, also writes `inputGrad` and returns it.
    @discardableResult
    public func backward(input x: Tensor, outputGrad: Tensor, computeInputGrad: Bool = true) throws -> Tensor? {
        let k = try plan(x.shape)
        try outputGrad.requireShape(k.shape.outputShape, "\(weight.name.dropLast(7)) output gradient")
        try k.backwardWeights(input: x.data, outputGrad: outputGrad.data, weightGrad: weight.grad.data,
                              biasGrad: bias.grad.data)
        guard computeInputGrad else { return nil }
        if inputGrad.shape != x.shape { inputGrad = Tensor(shape: x.shape) }  // first backward of this shape
        try k.backwardData(outputGrad: outputGrad.data, weight: weight.value.data, inputGrad: inputGrad.data)
        return inputGrad
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
        try grad.requireShape(output.shape, "ReLU gradient")
        try backend.reluBackward(output: output.data, grad: grad.data, count: output.count)
    }
}

/// Max pooling, NCHW: PyTorch's `nn.MaxPool2d(kernel, stride, padding, ceil_mode)`.
public final class MaxPool2D {
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let ceilMode: Bool
    public let backend: Backend
    private var kernel: PoolingKernel?
    /// (N, C, Ho, Wo)
    public private(set) var output = Tensor(shape: [0])
    /// (N, C, H, W)
    public private(set) var inputGrad = Tensor(shape: [0])

    public init(kernelSize: Int, stride: Int, padding: Int = 0, ceilMode: Bool = false, backend: Backend) {
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.ceilMode = ceilMode
        self.backend = backend
    }

    private func plan(_ input: [Int]) throws -> PoolingKernel {
        if let k = kernel, k.shape.inputShape == input { return k }
        guard input.count == 4 else {
            throw EngineError.invalidArgument("max pooling needs an (N, C, H, W) input, got \(input)")
        }
        let g = PoolingShape(batch: input[0], channels: input[1], inHeight: input[2], inWidth: input[3],
                             kernel: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
        try g.validate()
        let k = try backend.maxPooling(g)
        kernel = k
        if output.shape != g.outputShape { output = Tensor(shape: g.outputShape) }
        return k
    }

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        let k = try plan(x.shape)
        try k.forward(input: x.data, output: output.data)
        return output
    }

    /// Routes `outputGrad` to the arg-max of each window of the last forward; returns `inputGrad`.
    @discardableResult
    public func backward(outputGrad: Tensor) throws -> Tensor {
        guard let k = kernel else { throw EngineError.invalidArgument("max pooling backward before forward") }
        try outputGrad.requireShape(k.shape.outputShape, "max pooling output gradient")
        if inputGrad.shape != k.shape.inputShape { inputGrad = Tensor(shape: k.shape.inputShape) }
        try k.backward(outputGrad: outputGrad.data, inputGrad: inputGrad.data)
        return inputGrad
    }
}
