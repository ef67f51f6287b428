import Foundation
import SSDEngine
import SSDLayers

/// A single-shot detector built from a `ModelDescription`: the trunk's layers applied in order,
/// the feature maps it names fed (through their side layer, if any) to their localisation and
/// class heads, whose outputs are stacked into (N, n_priors, 4) offsets and (N, n_priors,
/// n_classes) scores in the priors' order.
///
/// Forward, backward, parameters, buffers, state_dict names and optimizer groups all follow
/// from the description; nothing here knows which model it is. Buffers are planned at the first
/// call of a batch size and reused after: a training step allocates nothing in the network.
public final class SSDModel {
    public let configuration: SSDConfiguration
    /// What this network is: layers, sources, priors, loss and post-processing.
    public let architecture: ModelDescription
    public var classCount: Int { configuration.classCount }
    public var kind: ModelKind { configuration.model }
    public let backend: Backend
    /// (n_priors, 4) centre-size priors, in prediction order.
    public var priorsCxcy: [Float] { architecture.priorsCxcy }
    public var inputSize: Int { architecture.inputSize }

    private let trunk: [Layer]
    /// Per source: its side layer (SSD300's L2 norm) or nil.
    private let sides: [Layer?]
    private let heads: [PredictionHead]
    /// Per trunk layer: the sources reading its output.
    private let tapsByLayer: [Int: [Int]]

    /// (N, n_priors, 4) and (N, n_priors, n_classes): the last forward's outputs.
    public private(set) var locs = Tensor(shape: [0])
    public private(set) var scores = Tensor(shape: [0])
    private var input: Tensor?

    /// Backward buffers, planned once per batch size. The chain of activation gradients through
    /// the trunk needs two live buffers at a time, so two slots sized for the largest activation
    /// serve every layer through views (and serve the heads as scratch before the chain starts).
    private var gradientSlots: [Tensor] = []
    private var gradientViews: [ViewKey: Tensor] = [:]
    private struct ViewKey: Hashable { let slot: Int; let shape: [Int]; let layout: ActivationLayout }
    /// d loss / d feature per source, and d loss / d (trunk output) for sources with a side layer.
    private var featureGrads: [Tensor] = []
    private var sideGrads: [Tensor?] = []

    /// Builds the network the configuration names, initialised as its description says (the
    /// tutorial's: PyTorch's default for the VGG base, Xavier-uniform for new layers).
    public convenience init(configuration: SSDConfiguration, algorithm: ConvolutionAlgorithm = .direct,
                            backend: Backend = DNNLBackend(), seed: UInt64 = 0) throws {
        try configuration.validate()
        try self.init(architecture: configuration.architecture, configuration: configuration, algorithm: algorithm,
                      backend: backend, seed: seed)
    }

    /// A network built from any description (tests build small ones); its configuration names
    /// the description's kind and class count.
    public convenience init(architecture: ModelDescription, algorithm: ConvolutionAlgorithm = .direct,
                            backend: Backend = DNNLBackend(), seed: UInt64 = 0) throws {
        try self.init(architecture: architecture,
                      configuration: SSDConfiguration(model: architecture.kind, classCount: architecture.classCount),
                      algorithm: algorithm, backend: backend, seed: seed)
    }

    private init(architecture: ModelDescription, configuration: SSDConfiguration, algorithm: ConvolutionAlgorithm,
                 backend: Backend, seed: UInt64) throws {
        self.configuration = configuration
        self.architecture = architecture
        self.backend = backend
        var rng = SeededRandom(seed: seed)
        let builder = LayerBuilder(algorithm: algorithm, backend: backend)
        trunk = try architecture.trunk.map { try builder.build($0, rng: &rng) }
        sides = try architecture.sources.map { source in try source.side.map { try builder.build($0, rng: &rng) } }
        var heads: [PredictionHead] = []
        var taps: [Int: [Int]] = [:]
        for (index, source) in architecture.sources.enumerated() {
            guard trunk.indices.contains(source.layer) else {
                throw ModelError.configuration("\(architecture.kind): source \(source.name) reads trunk layer \(source.layer) of \(trunk.count)")
            }
            // The forward stacks each map's predictions as the trunk reaches it: the priors'
            // order must be the trunk's.
            guard index == 0 || architecture.sources[index - 1].layer <= source.layer else {
                throw ModelError.configuration("\(architecture.kind): source \(source.name) comes before an earlier source's layer")
            }
            taps[source.layer, default: []].append(index)
            let loc = try builder.build(source.locationHead, rng: &rng)
            let cls = try builder.build(source.classHead, rng: &rng)
            heads.append(PredictionHead(loc: loc, cls: cls, boxes: source.boxesPerLocation, classes: configuration.classCount))
        }
        self.heads = heads
        self.tapsByLayer = taps
    }

    /// The reference network (`.ssd300`, 21 classes for Pascal VOC) or any other kind.
    public convenience init(_ kind: ModelKind = .ssd300, classCount: Int, algorithm: ConvolutionAlgorithm = .direct,
                            backend: Backend = DNNLBackend(), seed: UInt64 = 0) throws {
        try self.init(configuration: SSDConfiguration(model: kind, classCount: classCount), algorithm: algorithm,
                      backend: backend, seed: seed)
    }

    /// The loss this model trains with, in its description's convention.
    public func makeLoss() -> MultiBoxLoss { MultiBoxLoss(priorsCxcy: priorsCxcy, convention: architecture.loss) }

    /// Every layer, walked depth first (composites, then their parts).
    public var layers: [Layer] {
        func walk(_ l: Layer) -> [Layer] { [l] + l.sublayers.flatMap(walk) }
        return (sides.compactMap { $0 } + trunk + heads.map(\.loc) + heads.map(\.cls)).flatMap(walk)
    }

    /// Every convolution layer: trunk, then heads.
    public var convolutions: [Conv2D] { layers.compactMap { $0 as? Conv2D } }

    /// Every parameter in state_dict order: side layers (`rescale_factors`), the trunk, then the
    /// localisation heads and the class heads.
    public var parameters: [Parameter] {
        (sides.compactMap { $0 } + trunk + heads.map(\.loc) + heads.map(\.cls)).flatMap(\.parameters)
    }

    /// Non-learned state saved with the weights: batch normalisation's running statistics.
    public var buffers: [Buffer] {
        (sides.compactMap { $0 } + trunk + heads.map(\.loc) + heads.map(\.cls)).flatMap(\.buffers)
    }

    /// Training mode (batch statistics in batch normalisation) or evaluation mode.
    public var isTraining: Bool = true {
        didSet {
            for l in sides.compactMap({ $0 }) + trunk + heads.map(\.loc) + heads.map(\.cls) { l.isTraining = isTraining }
        }
    }

    /// Whether evaluation mode folds each batch norm into its convolution (the default: one
    /// pass instead of three). Off, evaluation runs convolution, batch norm and activation apart.
    public var foldsBatchNorm = true {
        didSet { for case let block as ConvolutionBlock in layers { block.foldsBatchNorm = foldsBatchNorm } }
    }

    /// Parameters by state_dict name.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// The convolution algorithm of every layer; changing it re-plans at the next call.
    public func setAlgorithm(_ algorithm: ConvolutionAlgorithm) {
        for c in convolutions { c.algorithm = algorithm }
    }

    /// Forward pass on `images` (N, 3, S, S), normalised RGB, S the model's input size. Returns
    /// the model's `locs` (N, n_priors, 4) and `scores` (N, n_priors, n_classes) buffers.
    @discardableResult
    public func forward(_ images: Tensor) throws -> (locs: Tensor, scores: Tensor) {
        let s = inputSize
        guard images.shape.count == 4, images.dim(1) == 3, images.dim(2) == s, images.dim(3) == s, images.dim(0) > 0 else {
            throw EngineError.shapeMismatch(what: "\(kind) input", expected: [images.shape.first ?? 1, 3, s, s],
                                            got: images.shape)
        }
        let n = images.dim(0), priors = architecture.priorCount
        if locs.shape != [n, priors, 4] {
            locs = Tensor(shape: [n, priors, 4])
            scores = Tensor(shape: [n, priors, classCount])
        }
        input = images
        var x = images
        var offset = 0
        for (index, layer) in trunk.enumerated() {
            x = try layer.forward(x)
            for source in tapsByLayer[index] ?? [] {
                let feature = try sides[source]?.forward(x) ?? x
                let count = feature.dim(2) * feature.dim(3) * heads[source].boxes
                guard offset + count <= priors else {
                    throw ModelError.configuration("\(kind): feature map \(architecture.sources[source].name) \(feature.shape) places more priors than the \(priors) described")
                }
                try heads[source].forward(feature, locs: locs, scores: scores, priorOffset: offset)
                offset += count
            }
        }
        guard offset == priors else {
            throw ModelError.configuration("\(kind): the feature maps place \(offset) priors, the description has \(priors)")
        }
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

    /// The feature each source's head read in the last forward.
    private func feature(_ source: Int) -> Tensor {
        sides[source]?.output ?? trunk[architecture.sources[source].layer].output
    }

    /// The feature maps the heads read in the last forward, in prediction order, in the layout
    /// the network keeps them in.
    public var featureMaps: [Tensor] { architecture.sources.indices.map(feature) }

    /// Sizes the backward buffers for the last forward's batch (once per batch size).
    private func planBackward() {
        let features = architecture.sources.indices.map(feature)
        let largest = max(trunk.map(\.output.count).max() ?? 0, features.map(\.count).max() ?? 0)
        if gradientSlots.map(\.count) != [largest, largest] {
            gradientSlots = [Tensor(shape: [largest]), Tensor(shape: [largest])]
            gradientViews = [:]
        }
        if featureGrads.map(\.shape) != features.map(\.shape) || featureGrads.map(\.layout) != features.map(\.layout) {
            featureGrads = features.map { Tensor(shape: $0.shape, layout: $0.layout) }
            sideGrads = architecture.sources.enumerated().map { index, source in
                sides[index] == nil ? nil : Tensor(shape: trunk[source.layer].output.shape, layout: trunk[source.layer].output.layout)
            }
        }
    }

    /// Backward pass from d loss / d locs and d loss / d scores of the last forward:
    /// accumulates every parameter's gradient.
    public func backward(gradLocs: Tensor, gradScores: Tensor) throws {
        guard let images = input else { throw EngineError.invalidArgument("\(kind) backward before forward") }
        try gradLocs.requireShape(locs.shape, "gradient of locs")
        try gradScores.requireShape(scores.shape, "gradient of scores")
        planBackward()
        for (i, head) in heads.enumerated() {
            let f = feature(i)
            try head.backward(f, gradLocs: gradLocs, gradScores: gradScores, featureGrad: featureGrads[i],
                              scratch: gradient(0, like: f))
        }
        // The trunk, last to first; a layer whose output feeds sources also receives their gradients.
        var grad: Tensor?
        var slot = 0
        for index in stride(from: trunk.count - 1, through: 0, by: -1) {
            let output = trunk[index].output
            for source in tapsByLayer[index] ?? [] {
                var g = featureGrads[source]
                if let side = sides[source], let sideGrad = sideGrads[source] {
                    try side.backward(input: output, outputGrad: g, inputGrad: sideGrad)
                    g = sideGrad
                }
                if let grad { add(g, into: grad) } else { grad = g }
            }
            guard let outputGrad = grad else { continue }  // layers after the last source learn nothing
            let layerInput = index == 0 ? images : trunk[index - 1].output
            let inputGrad = index == 0 ? nil : gradient(slot, like: layerInput)
            try trunk[index].backward(input: layerInput, outputGrad: outputGrad, inputGrad: inputGrad)
            grad = inputGrad
            slot = 1 - slot
        }
    }

    /// Zeroes every parameter's gradient.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// Every saved tensor: the parameters, then the buffers.
    public var stateTensors: [(String, Tensor)] { parameters.map { ($0.name, $0.value) } + buffers.map { ($0.name, $0.value) } }

    /// Loads every parameter (and buffer) from a safetensors file under its state_dict name.
    /// Every one must be present with its exact shape; the error names the first that is not.
    public func load(_ file: SafetensorsFile) throws {
        for (name, tensor) in stateTensors { try file.load(name, into: tensor) }
    }

    /// Loads weights from a safetensors file at `url`.
    public func load(contentsOf url: URL) throws { try load(try SafetensorsFile(url: url)) }

    /// A model built as a checkpoint's metadata describes, with its weights loaded.
    public static func load(contentsOf url: URL, algorithm: ConvolutionAlgorithm = .direct,
                            backend: Backend = DNNLBackend()) throws -> SSDModel {
        let file = try SafetensorsFile(url: url)
        let model = try SSDModel(configuration: SSDConfiguration(metadata: file.metadata, file: file), algorithm: algorithm,
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
