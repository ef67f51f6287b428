import SSDEngine

/// Layers applied one after another: PyTorch's `nn.Sequential`. Its parameters and buffers are
/// its children's, in order (their state_dict names are the children's own: give each child
/// its full prefix, e.g. `features.3.block.0.0`).
///
/// The backward runs through the chain, each layer writing the gradient of its input into a
/// buffer the one before reads. The gradients of the boundaries between layers live in two
/// ping-pong storages (boundary i in storage i mod 2), sized for the largest boundary and
/// viewed per shape: planned at the first backward of an input shape, reused after.
public final class Sequential: Layer {
    public let layers: [Layer]
    /// Setting it sets every child's (training mode or evaluation mode).
    public var isTraining: Bool { didSet { for l in layers { l.isTraining = isTraining } } }
    /// The last forward's result: the last layer's output (the input itself when empty).
    public private(set) var output = Tensor(shape: [0])

    /// The input of every layer at the last forward.
    private var inputs: [Tensor] = []
    /// d loss / d (input of layer i), i ≥ 1: views over the two storages.
    private var boundaryGrads: [Tensor?] = []
    private var storage: [Tensor] = [Tensor(shape: [0]), Tensor(shape: [0])]

    /// The mode is the first child's (training for new layers).
    public init(_ layers: [Layer]) {
        self.layers = layers
        isTraining = layers.first?.isTraining ?? true
        inputs.reserveCapacity(layers.count)
    }

    public var parameters: [Parameter] { layers.flatMap(\.parameters) }
    public var sublayers: [Layer] { layers }
    public var buffers: [Buffer] { layers.flatMap(\.buffers) }

    /// Returns the last layer's output.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        inputs.removeAll(keepingCapacity: true)
        var t = x
        for layer in layers {
            inputs.append(t)
            t = try layer.forward(t)
        }
        output = t
        return t
    }

    /// The gradient buffer of boundary i (the input of layer i, i ≥ 1), planned for its shape.
    private func boundaryGrad(_ i: Int) -> Tensor {
        let x = inputs[i]
        if let g = boundaryGrads[i], g.shape == x.shape, g.layout == x.layout, g.data == storage[i % 2].data { return g }
        let g = Tensor(viewing: storage[i % 2], shape: x.shape, layout: x.layout)
        boundaryGrads[i] = g
        return g
    }

    private func planGradients() {
        if boundaryGrads.count != layers.count { boundaryGrads = Array(repeating: nil, count: layers.count) }
        for parity in 0..<2 {
            let need = stride(from: 2 - parity, to: layers.count, by: 2).map { inputs[$0].count }.max() ?? 0
            if storage[parity].count < need { storage[parity] = Tensor(shape: [need]) }
        }
    }

    /// Backward through the chain, last layer first. `input` is the last forward's input.
    /// The children may overwrite `outputGrad` (the last layer receives it).
    public func backward(input: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        guard !layers.isEmpty else {
            if let inputGrad {
                try inputGrad.requireShape(outputGrad.shape, layout: outputGrad.layout, "sequential input gradient")
                inputGrad.copy(from: outputGrad)
            }
            return
        }
        guard inputs.count == layers.count, inputs[0] === input || (inputs[0].shape == input.shape && inputs[0].layout == input.layout)
        else { throw EngineError.invalidArgument("sequential backward without a forward of input \(input.shape)") }
        planGradients()
        var g = outputGrad
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let dx: Tensor? = i == 0 ? inputGrad : boundaryGrad(i)
            try layers[i].backward(input: i == 0 ? input : inputs[i], outputGrad: g, inputGrad: dx)
            if let dx { g = dx }
        }
    }
}

/// y = x + body(x): torchvision's `InvertedResidual` when `use_res_connect` (stride 1, equal
/// input and output channels). The body's output must have the input's shape and layout; the
/// output does too. Parameters and buffers are the body's.
public final class Residual: Layer {
    public let body: Layer
    /// Setting it sets the body's.
    public var isTraining: Bool { didSet { body.isTraining = isTraining } }
    /// (N, C, H, W) in the input's layout: the last forward's result.
    public private(set) var output = Tensor(shape: [0])
    /// The output gradient handed to the body, which may overwrite it (the skip needs the original).
    private var bodyGrad = Tensor(shape: [0])

    public init(_ body: Layer) {
        self.body = body
        isTraining = body.isTraining
    }

    public var parameters: [Parameter] { body.parameters }
    public var sublayers: [Layer] { [body] }
    public var buffers: [Buffer] { body.buffers }

    /// Returns the layer's `output` buffer.
    @discardableResult
    public func forward(_ x: Tensor) throws -> Tensor {
        let b = try body.forward(x)
        try b.requireShape(x.shape, layout: x.layout, "residual body output")
        if output.shape != x.shape || output.layout != x.layout { output = Tensor(shape: x.shape, layout: x.layout) }
        Profiler.measure("residual add") { add(x.data, b.data, into: output.data, count: x.count) }
        return output
    }

    /// d loss/d x = outputGrad + body's d loss/d x. Leaves `outputGrad` as it found it (the
    /// body works on a copy).
    public func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        try outputGrad.requireShape(x.shape, layout: x.layout, "residual output gradient")
        if let inputGrad { try inputGrad.requireShape(x.shape, layout: x.layout, "residual input gradient") }
        try planBodyGrad(outputGrad)
        try body.backward(input: x, outputGrad: bodyGrad, inputGrad: inputGrad)
        if let inputGrad { add(inputGrad.data, outputGrad.data, into: inputGrad.data, count: x.count) }
    }

    private func planBodyGrad(_ g: Tensor) throws {
        if bodyGrad.shape != g.shape || bodyGrad.layout != g.layout { bodyGrad = Tensor(shape: g.shape, layout: g.layout) }
        bodyGrad.copy(from: g)
    }
}
