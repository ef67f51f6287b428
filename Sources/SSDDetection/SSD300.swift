import Foundation
import SSDEngine
import SSDLayers

/// SSD300 exactly as the reference builds it: a VGG16 base (pool3 in ceil mode, pool5
/// 3×3/1/1, conv6 3×3 dilation 6, conv7 1×1), auxiliary convolutions conv8_1…conv11_2,
/// conv4_3 L2-normalised with learnable scales, and loc/class prediction convolutions on six
/// feature maps, stacked into (N, 8732, 4) offsets and (N, 8732, n_classes) scores.
///
/// Parameters carry the reference's state_dict names. Buffers are planned on the first call
/// for a batch size and reused after: a training step allocates nothing else in the network.
public final class SSD300 {
    public let configuration: SSDConfiguration
    public var classCount: Int { configuration.classCount }
    public let backend: Backend
    /// (8732, 4) centre-size priors, in prediction order.
    public let priorsCxcy: [Float]

    /// The base in order: convolution blocks (each ending in a ReLU) and pools.
    private enum Step { case conv(ConvBlock), pool(MaxPool2D) }
    private let baseSteps: [Step]
    private let conv4_3: ConvBlock
    private let conv7: ConvBlock
    private let l2norm: L2Norm
    /// conv8_1, conv8_2, …, conv11_2; each *_2 output is a prediction source.
    private let auxConvs: [ConvBlock]
    private let heads: [PredictionHead]

    /// (N, 8732, 4) and (N, 8732, n_classes): the last forward's outputs.
    public private(set) var locs = Tensor(shape: [0])
    public private(set) var scores = Tensor(shape: [0])
    private var input: Tensor?

    /// Backward buffers, planned once per batch size. The chain of activation gradients
    /// through the base and auxiliary layers needs only two live buffers at a time, so two
    /// slots sized for the largest activation serve every layer through views — and serve as
    /// scratch for the heads (before the chain starts) and the L2 norm (in the slot conv4_3's
    /// input gradient is about to overwrite).
    private var gradientSlots: [Tensor] = []
    private var gradientViews: [ViewKey: Tensor] = [:]
    private struct ViewKey: Hashable { let slot: Int; let shape: [Int]; let layout: ActivationLayout }
    /// d loss / d feature per prediction source.
    private var featureGrads: [Tensor] = []

    /// Builds the network with the reference's initialisation of new layers (Xavier-uniform
    /// weights and zero biases for auxiliary and prediction convolutions, scales 20) and
    /// PyTorch's default initialisation for the base (replace it with VGG16 weights to train
    /// as the reference does).
    public init(configuration: SSDConfiguration, algorithm: ConvolutionAlgorithm = .direct,
                backend: Backend = DNNLBackend(), seed: UInt64 = 0) throws {
        try configuration.validate()
        self.configuration = configuration
        self.backend = backend
        self.priorsCxcy = Priors.centreSize()
        let w = configuration.width, norm = configuration.batchNorm
        // Inside the network activations stay in the backend's preferred layout (for oneDNN the
        // blocked layout it picks on the host), with bias and ReLU fused into each convolution
        // where the backend can.
        func conv(_ name: String, _ i: Int, _ o: Int, _ k: Int, stride: Int = 1, padding: Int = 0,
                  dilation: Int = 1) -> ConvBlock {
            ConvBlock(name, i, o, k, stride: stride, padding: padding, dilation: dilation, batchNorm: norm,
                      algorithm: algorithm, backend: backend)
        }
        func pool(_ k: Int = 2, _ s: Int = 2, padding: Int = 0, ceil: Bool = false) -> Step {
            .pool(MaxPool2D(kernelSize: k, stride: s, padding: padding, ceilMode: ceil, backend: backend))
        }
        conv4_3 = conv("base.conv4_3", w(512), w(512), 3, padding: 1)
        conv7 = conv("base.conv7", w(1024), w(1024), 1)
        baseSteps = [
            .conv(conv("base.conv1_1", 3, w(64), 3, padding: 1)), .conv(conv("base.conv1_2", w(64), w(64), 3, padding: 1)), pool(),
            .conv(conv("base.conv2_1", w(64), w(128), 3, padding: 1)), .conv(conv("base.conv2_2", w(128), w(128), 3, padding: 1)),
            pool(),
            .conv(conv("base.conv3_1", w(128), w(256), 3, padding: 1)), .conv(conv("base.conv3_2", w(256), w(256), 3, padding: 1)),
            .conv(conv("base.conv3_3", w(256), w(256), 3, padding: 1)), pool(ceil: true),
            .conv(conv("base.conv4_1", w(256), w(512), 3, padding: 1)), .conv(conv("base.conv4_2", w(512), w(512), 3, padding: 1)),
            .conv(conv4_3), pool(),
            .conv(conv("base.conv5_1", w(512), w(512), 3, padding: 1)), .conv(conv("base.conv5_2", w(512), w(512), 3, padding: 1)),
            .conv(conv("base.conv5_3", w(512), w(512), 3, padding: 1)), pool(3, 1, padding: 1),
            .conv(conv("base.conv6", w(512), w(1024), 3, padding: 6, dilation: 6)), .conv(conv7),
        ]
        l2norm = L2Norm(channels: w(512))
        auxConvs = [
            conv("aux_convs.conv8_1", w(1024), w(256), 1), conv("aux_convs.conv8_2", w(256), w(512), 3, stride: 2, padding: 1),
            conv("aux_convs.conv9_1", w(512), w(128), 1), conv("aux_convs.conv9_2", w(128), w(256), 3, stride: 2, padding: 1),
            conv("aux_convs.conv10_1", w(256), w(128), 1), conv("aux_convs.conv10_2", w(128), w(256), 3),
            conv("aux_convs.conv11_1", w(256), w(128), 1), conv("aux_convs.conv11_2", w(128), w(256), 3),
        ]
        let sources: [(String, Int)] = [("conv4_3", w(512)), ("conv7", w(1024)), ("conv8_2", w(512)), ("conv9_2", w(256)),
                                        ("conv10_2", w(256)), ("conv11_2", w(256))]
        var offset = 0
        var heads: [PredictionHead] = []
        for (spec, (name, channels)) in zip(Priors.ssd300, sources) {
            heads.append(PredictionHead(featureName: name, inputChannels: channels, boxes: spec.boxesPerLocation,
                                        classes: configuration.classCount, priorOffset: offset, algorithm: algorithm,
                                        backend: backend))
            offset += spec.size * spec.size * spec.boxesPerLocation
        }
        self.heads = heads

        var rng = SeededRandom(seed: seed)
        for case let .conv(c) in baseSteps {
            Initializer.pytorchDefault(weight: c.conv.weight.value, bias: c.conv.bias.value, rng: &rng)
        }
        for c in auxConvs.map(\.conv) + heads.flatMap({ [$0.loc, $0.cls] }) {
            Initializer.xavierUniform(c.weight.value, rng: &rng)
            c.bias.value.zero()
        }
    }

    /// The reference network with `classCount` classes (21 for Pascal VOC).
    public convenience init(classCount: Int, algorithm: ConvolutionAlgorithm = .direct, backend: Backend = DNNLBackend(),
                            seed: UInt64 = 0) {
        precondition(classCount >= 2, "SSD300 needs background plus at least one class")
        // The reference configuration always validates.
        try! self.init(configuration: SSDConfiguration(classCount: classCount), algorithm: algorithm, backend: backend,
                       seed: seed)
    }

    private var blocks: [ConvBlock] {
        baseSteps.compactMap { if case let .conv(c) = $0 { return c } else { return nil } } + auxConvs
    }
    private var headConvs: [Conv2D] { heads.map(\.loc) + heads.map(\.cls) }

    /// Every convolution layer: the base, the auxiliary convolutions, then the heads.
    public var convolutions: [Conv2D] { blocks.map(\.conv) + headConvs }

    /// Every parameter in the reference's state_dict order: `rescale_factors`, the base, the
    /// auxiliary convolutions, then the loc and class prediction convolutions.
    public var parameters: [Parameter] {
        l2norm.parameters + blocks.flatMap(\.parameters) + headConvs.flatMap(\.parameters)
    }

    /// Non-learned state saved with the weights: batch normalisation's running statistics.
    public var buffers: [(String, Tensor)] { blocks.compactMap(\.norm).flatMap(\.buffers).map { ($0.name, $0.value) } }

    /// Training mode (batch statistics in batch normalisation) or evaluation mode.
    public var isTraining: Bool = true {
        didSet {
            for n in blocks.compactMap(\.norm) { n.isTraining = isTraining }
            for c in convolutions { c.isTraining = isTraining }
            for case let .pool(p) in baseSteps { p.isTraining = isTraining }
        }
    }

    /// Parameters by state_dict name.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// The convolution algorithm of every layer; changing it re-plans at the next call.
    public func setAlgorithm(_ algorithm: ConvolutionAlgorithm) {
        for c in convolutions { c.algorithm = algorithm }
    }

    /// Forward pass on `images` (N, 3, 300, 300), normalised RGB. Returns the model's `locs`
    /// (N, 8732, 4) and `scores` (N, 8732, n_classes) buffers.
    @discardableResult
    public func forward(_ images: Tensor) throws -> (locs: Tensor, scores: Tensor) {
        guard images.shape.count == 4, images.dim(1) == 3, images.dim(2) == 300, images.dim(3) == 300, images.dim(0) > 0 else {
            throw EngineError.shapeMismatch(what: "SSD300 input", expected: [images.shape.first ?? 1, 3, 300, 300],
                                            got: images.shape)
        }
        let n = images.dim(0)
        if locs.shape != [n, priorsCxcy.count / 4, 4] {
            locs = Tensor(shape: [n, priorsCxcy.count / 4, 4])
            scores = Tensor(shape: [n, priorsCxcy.count / 4, classCount])
        }
        input = images
        var x = images
        for step in baseSteps {
            switch step {
            case let .conv(c): x = try c.forward(x)
            case let .pool(p): x = try p.forward(x)
            }
        }
        var features = [try l2norm.forward(conv4_3.output), conv7.output]
        for (index, c) in auxConvs.enumerated() {
            x = try c.forward(x)
            if index % 2 == 1 { features.append(x) }  // conv8_2, conv9_2, conv10_2, conv11_2
        }
        for (head, feature) in zip(heads, features) { try head.forward(feature, locs: locs, scores: scores) }
        return (locs, scores)
    }

    /// A gradient buffer shaped like `t`, viewing slot 0 or 1.
    private func gradient(_ slot: Int, like t: Tensor) -> Tensor {
        let key = ViewKey(slot: slot, shape: t.shape, layout: t.layout)
        if let v = gradientViews[key] { return v }
        let v = Tensor(viewing: gradientSlots[slot], shape: t.shape, layout: t.layout)
        gradientViews[key] = v
        return v
    }

    /// Sizes the backward buffers for the last forward's batch (once per batch size).
    private func planBackward(_ sources: [Tensor]) {
        let activations = baseSteps.map { step -> Int in
            switch step {
            case let .conv(c): return c.output.count
            case let .pool(p): return p.output.count
            }
        } + auxConvs.map(\.output.count)
        let largest = max(activations.max() ?? 0, sources.map(\.count).max() ?? 0)
        if gradientSlots.map(\.count) != [largest, largest] {
            gradientSlots = [Tensor(shape: [largest]), Tensor(shape: [largest])]
            gradientViews = [:]
        }
        if featureGrads.map(\.shape) != sources.map(\.shape) || featureGrads.map(\.layout) != sources.map(\.layout) {
            featureGrads = sources.map { Tensor(shape: $0.shape, layout: $0.layout) }
        }
    }

    /// Backward pass from d loss / d locs and d loss / d scores of the last forward:
    /// accumulates every parameter's gradient.
    public func backward(gradLocs: Tensor, gradScores: Tensor) throws {
        guard let images = input else { throw EngineError.invalidArgument("SSD300 backward before forward") }
        try gradLocs.requireShape(locs.shape, "gradient of locs")
        try gradScores.requireShape(scores.shape, "gradient of scores")
        let sources = [l2norm.output, conv7.output] + stride(from: 1, to: auxConvs.count, by: 2).map { auxConvs[$0].output }
        planBackward(sources)
        for (i, (head, feature)) in zip(heads, sources).enumerated() {
            try head.backward(feature, gradLocs: gradLocs, gradScores: gradScores, featureGrad: featureGrads[i],
                              scratch: gradient(0, like: feature))
        }
        // Auxiliary convolutions, last to first; each *_2 output also receives its head's gradient.
        var grad = featureGrads[5]
        var slot = 0
        for index in stride(from: auxConvs.count - 1, through: 0, by: -1) {
            let c = auxConvs[index]
            if index % 2 == 1 && index < auxConvs.count - 1 { add(featureGrads[index / 2 + 2], into: grad) }
            let input = index == 0 ? conv7.output : auxConvs[index - 1].output
            let inputGrad = gradient(slot, like: input)
            try c.backward(input: input, outputGrad: grad, inputGrad: inputGrad)
            grad = inputGrad
            slot = 1 - slot
        }
        add(featureGrads[1], into: grad)  // conv7's output feeds conv8_1 and its head
        // The base, last to first.
        for index in stride(from: baseSteps.count - 1, through: 0, by: -1) {
            let stepInput: Tensor
            if index == 0 { stepInput = images } else {
                switch baseSteps[index - 1] {
                case let .conv(c): stepInput = c.output
                case let .pool(p): stepInput = p.output
                }
            }
            let inputGrad = index == 0 ? nil : gradient(slot, like: stepInput)
            switch baseSteps[index] {
            case let .conv(c):
                if c === conv4_3 {
                    // conv4_3's output feeds pool4 and, through the L2 norm, its head.
                    // Its gradient goes through the slot the input gradient will overwrite next.
                    let normGrad = gradient(slot, like: conv4_3.output)
                    try l2norm.backward(input: conv4_3.output, outputGrad: featureGrads[0], inputGrad: normGrad)
                    add(normGrad, into: grad)
                }
                try c.backward(input: stepInput, outputGrad: grad, inputGrad: inputGrad)
            case let .pool(p):
                try p.backward(outputGrad: grad, inputGrad: inputGrad!)
            }
            if let inputGrad { grad = inputGrad }
            slot = 1 - slot
        }
    }

    /// Zeroes every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// Every saved tensor: the parameters, then the buffers.
    public var stateTensors: [(String, Tensor)] { parameters.map { ($0.name, $0.value) } + buffers }

    /// Loads every parameter (and buffer) from a safetensors file under its state_dict name.
    /// Every one must be present with its exact shape; the error names the first that is not.
    public func load(_ file: SafetensorsFile) throws {
        for (name, tensor) in stateTensors { try file.load(name, into: tensor) }
    }

    /// Loads weights from a safetensors file at `url`.
    public func load(contentsOf url: URL) throws { try load(try SafetensorsFile(url: url)) }

    /// A model built as a checkpoint's metadata describes, with its weights loaded.
    public static func load(contentsOf url: URL, algorithm: ConvolutionAlgorithm = .direct,
                            backend: Backend = DNNLBackend()) throws -> SSD300 {
        let file = try SafetensorsFile(url: url)
        let model = try SSD300(configuration: SSDConfiguration(metadata: file.metadata, file: file), algorithm: algorithm,
                               backend: backend)
        try model.load(file)
        return model
    }

    /// Saves every parameter and buffer (F32) with the configuration and `metadata`, atomically.
    public func save(to url: URL, metadata: [String: String] = [:]) throws {
        let m = metadata.merging(configuration.metadata) { _, ours in ours }
        try SafetensorsWriter.write(stateTensors, metadata: m, to: url)
    }
}
