import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SwiftProtobuf

/// An SSD model as an ONNX model, built by walking the model's `ModelDescription`: every
/// `LayerSpec` of the trunk becomes ONNX nodes, each feature source (through its side layer)
/// feeds its localisation and class heads, and the heads' outputs are permuted, flattened and
/// concatenated in the priors' order exactly as `SSDModel.forward` stacks them. Nothing here
/// knows which model it is.
///
/// The graph (opset `ONNXExport.opset`, IR version `ONNXExport.irVersion`):
/// - input `images`: (N, 3, S, S) float32, RGB in [0, 1] resized to S×S and normalised per
///   channel as (x − mean) / std with the description's `inputMean` / `inputStd` (recorded in
///   the metadata); N is dynamic (`dim_param` "N").
/// - output `locs`: (N, priors, 4) float32, the offsets against the priors, as `SSDModel` gives them.
/// - output `class_logits`: (N, priors, classes) float32, the class scores *before* softmax —
///   what `SSDModel.forward` returns as `scores` (class 0 is the background).
/// - with post-processing (`PostProcessingGraph`), also `detection_boxes` (D, 4),
///   `detection_labels` (D) int64, `detection_scores` (D) and `detection_batch_index` (D) int64.
///
/// Batch normalisation is exported as `BatchNormalization` nodes (inference form) over the
/// weights file's own tensors, not folded: every initializer that comes from the weights keeps
/// its state_dict name and its exact bits, and ONNX Runtime and OpenVINO fold it into the
/// convolution when they load the model (as `ssd` does in evaluation mode). Exporter-made
/// constants (priors, shapes, thresholds) are named `ssd_export.*`.
public struct ONNXExport {
    /// The opset every node is written for (HardSwish needs 14; Reduce* still take `axes` as
    /// an attribute before 18).
    public static let opset = 17
    /// ONNX IR version 8: the one that goes with opset 17.
    public static let irVersion = 8

    /// The ONNX model.
    public let model: Onnx_ModelProto
    /// Nodes in the graph.
    public var nodeCount: Int { model.graph.node.count }
    /// Values (floats) taken from the weights file: parameters and batch-norm statistics.
    public let parameterCount: Int
    /// The state_dict names of the tensors written as initializers.
    public let stateTensorNames: [String]

    /// Exports `model` (its description and weights) with `classNames` (labels 1…classes−1)
    /// and, when `postProcessing` is given, decoding and per-class NMS in the graph.
    /// Throws `ExportError` when a tensor is missing or misshapen, the description's feature maps
    /// do not give its prior count, or a setting is out of range.
    public init(model: SSDModel, classNames: [String], postProcessing: DetectionSettings? = nil) throws {
        try self.init(description: model.architecture,
                      tensors: Dictionary(model.stateTensors, uniquingKeysWith: { first, _ in first }),
                      classNames: classNames, postProcessing: postProcessing)
    }

    /// Exports the network `description` describes with the weights `tensors` (by state_dict
    /// name, PyTorch shapes: what `SSDModel.stateTensors` holds). Tensors the description does
    /// not name are ignored (an optimizer's state, say); those it names must be there.
    public init(description: ModelDescription, tensors: [String: Tensor], classNames: [String],
                postProcessing: DetectionSettings? = nil) throws {
        guard classNames.count == description.classCount - 1 else {
            throw ExportError.inconsistentDescription("\(classNames.count) class names for \(description.classCount - 1) classes")
        }
        guard description.priorsCxcy.count % 4 == 0, description.inputMean.count == 3, description.inputStd.count == 3 else {
            throw ExportError.inconsistentDescription("\(description.kind): priors must be 4 numbers each and the input mean and std 3 each")
        }
        var walker = DescriptionWalker(state: tensors)
        let s = description.inputSize
        let (locs, logits) = try walker.network(description)
        var outputs = [
            valueInfo(locs, elementType: .float, dims: [.named("N"), .fixed(description.priorCount), .fixed(4)]),
            valueInfo(logits, elementType: .float, dims: [.named("N"), .fixed(description.priorCount), .fixed(description.classCount)]),
        ]
        if let settings = postProcessing {
            outputs += try PostProcessingGraph.append(to: &walker.graph, images: DescriptionWalker.input, locs: locs, logits: logits,
                                                      priorsCxcy: description.priorsCxcy, classCount: description.classCount,
                                                      settings: settings)
        }
        var graph = Onnx_GraphProto()
        graph.name = "ssd_\(description.kind)"
        graph.node = walker.graph.nodes
        graph.initializer = walker.graph.initializers
        graph.input = [valueInfo(DescriptionWalker.input, elementType: .float, dims: [.named("N"), .fixed(3), .fixed(s), .fixed(s)])]
        graph.output = outputs
        var proto = Onnx_ModelProto()
        proto.irVersion = Int64(Self.irVersion)
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Int64(Self.opset)
        proto.opsetImport = [opset]
        proto.producerName = "ssd"
        proto.producerVersion = "1"
        proto.docString = "SSD (\(description.kind)) exported by `ssd export onnx`; see the metadata for the input it expects."
        proto.graph = graph
        proto.metadataProps = Self.metadata(description, classNames: classNames, postProcessing: postProcessing).map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        self.model = proto
        parameterCount = walker.parameterCount
        stateTensorNames = walker.usedStateNames
    }

    /// The model's protobuf encoding (what a `.onnx` file holds).
    public func serializedData() throws -> Data { try model.serializedData() }

    /// The metadata written into `metadata_props`, in key order: model kind, class names (a
    /// JSON array for labels 1…), input size, mean and std, the normalisation in words, the
    /// outputs, and the post-processing settings when present.
    static func metadata(_ d: ModelDescription, classNames: [String], postProcessing: DetectionSettings?) -> [(String, String)] {
        func json(_ value: Any) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        var m: [String: String] = [
            "ssd.model": d.kind.rawValue,
            "ssd.classes": json(classNames),
            "ssd.input_size": String(d.inputSize),
            "ssd.input_mean": json(d.inputMean.map(Double.init)),
            "ssd.input_std": json(d.inputStd.map(Double.init)),
            "ssd.input": "images: (N, 3, \(d.inputSize), \(d.inputSize)) float32, RGB scaled to [0, 1], resized to "
                + "\(d.inputSize)x\(d.inputSize) (bilinear), then (x - input_mean[c]) / input_std[c] per channel",
            "ssd.priors": String(d.priorCount),
            "ssd.outputs": "locs: (N, priors, 4) offsets against the priors; class_logits: (N, priors, classes) before softmax, "
                + "class 0 = background, label i = ssd.classes[i - 1]",
        ]
        if let s = postProcessing {
            m["ssd.postprocess"] = json(PostProcessingGraph.describe(s))
            m["ssd.outputs"]! += "; detection_boxes: (D, 4) x_min, y_min, x_max, y_max as fractions of the image; "
                + "detection_labels: (D) int64 (1…classes-1); detection_scores: (D); detection_batch_index: (D) int64, "
                + "the image each detection belongs to; sorted by descending score"
        }
        return m.keys.sorted().map { ($0, m[$0]!) }
    }
}

/// Walks a description into ONNX nodes over the model's state tensors, tracking each value's
/// channels and spatial size so that the prior count can be checked against the description.
struct DescriptionWalker {
    static let input = "images"
    var graph = GraphBuilder()
    let state: [String: Tensor]
    private(set) var parameterCount = 0
    private(set) var usedStateNames: [String] = []

    init(state: [String: Tensor]) { self.state = state }

    /// A value flowing through the trunk: its name, channels and (square) spatial side.
    struct Value { var name: String; var channels: Int; var side: Int }

    /// The whole network: trunk, side layers, heads, stacked; returns the names of `locs` and `class_logits`.
    mutating func network(_ d: ModelDescription) throws -> (locs: String, logits: String) {
        var x = Value(name: Self.input, channels: 3, side: d.inputSize)
        var locParts: [String] = [], clsParts: [String] = [], placed = 0
        for (index, source) in d.sources.enumerated() {
            guard d.trunk.indices.contains(source.layer) else {
                throw ExportError.inconsistentDescription("\(d.kind): source \(source.name) reads trunk layer \(source.layer) of \(d.trunk.count)")
            }
            // The priors are stacked in the trunk's order, as the forward stacks them.
            guard index == 0 || d.sources[index - 1].layer <= source.layer else {
                throw ExportError.inconsistentDescription("\(d.kind): source \(source.name) comes before an earlier source's layer")
            }
        }
        for (index, spec) in d.trunk.enumerated() {
            x = try emit(spec, x)
            for source in d.sources where source.layer == index {
                let feature = try source.side.map { try emit($0, x) } ?? x
                guard feature.channels == source.channels else {
                    throw ExportError.inconsistentDescription("\(d.kind): source \(source.name) has \(feature.channels) channels, "
                                                              + "its description says \(source.channels)")
                }
                locParts.append(try head(source.locationHead, feature, k: 4, boxes: source.boxesPerLocation, what: "\(source.name) loc"))
                clsParts.append(try head(source.classHead, feature, k: d.classCount, boxes: source.boxesPerLocation,
                                         what: "\(source.name) class"))
                placed += feature.side * feature.side * source.boxesPerLocation
            }
        }
        guard placed == d.priorCount else {
            throw ExportError.inconsistentDescription("\(d.kind): the feature maps place \(placed) priors, the description has \(d.priorCount)")
        }
        let locs = graph.op("Concat", locParts, ["axis": .int(1)], named: "locs")
        let logits = graph.op("Concat", clsParts, ["axis": .int(1)], named: "class_logits")
        return (locs, logits)
    }

    /// One head on a feature map: (N, boxes·k, H, W) → (N, H·W·boxes, k), the reference's
    /// `permute(0, 2, 3, 1).view(N, -1, k)`.
    private mutating func head(_ spec: LayerSpec, _ feature: Value, k: Int, boxes: Int, what: String) throws -> String {
        let y = try emit(spec, feature)
        guard y.channels == boxes * k, y.side == feature.side else {
            throw ExportError.inconsistentDescription("\(what) head gives \(y.channels) channels at \(y.side)², expected \(boxes * k) at \(feature.side)²")
        }
        let t = graph.op("Transpose", [y.name], ["perm": .ints([0, 2, 3, 1])])
        return graph.op("Reshape", [t, graph.constant(int64: [0, -1, k], hint: "shape")])
    }

    /// A tensor of the weights by state_dict name, checked against the shape the description implies.
    private mutating func tensor(_ name: String, shape: [Int]) throws -> String {
        guard let t = state[name] else { throw ExportError.missingTensor(name) }
        guard t.shape == shape else {
            throw ExportError.shapeMismatch(name: name, expected: shape, got: t.shape)
        }
        usedStateNames.append(name)
        parameterCount += t.count
        return try graph.initializer(name, t)
    }

    /// The ONNX nodes of one layer spec applied to `x`.
    mutating func emit(_ spec: LayerSpec, _ x: Value) throws -> Value {
        switch spec {
        case let .convolution(c):
            return try convolution(c, x)
        case let .maxPool(k, s, p, ceil):
            let span = x.side + 2 * p - k
            guard span >= 0, s > 0 else { throw ExportError.inconsistentDescription("max pool \(k)/\(s) on a \(x.side)² map") }
            // PyTorch's extent: in ceil mode the last window must start inside the input or left padding.
            var out = (ceil ? (span + s - 1) / s : span / s) + 1
            if ceil && (out - 1) * s >= x.side + p { out -= 1 }
            let y = graph.op("MaxPool", [x.name], ["kernel_shape": .ints([k, k]), "strides": .ints([s, s]),
                                                   "pads": .ints([p, p, p, p]), "ceil_mode": .int(ceil ? 1 : 0)])
            return Value(name: y, channels: x.channels, side: out)
        case let .l2Norm(name, channels, _):
            guard channels == x.channels else {
                throw ExportError.inconsistentDescription("\(name): L2 norm of \(channels) channels on \(x.channels)")
            }
            // y = x / ‖x‖ · s, no epsilon (the reference's).
            let norm = graph.op("Sqrt", [graph.op("ReduceSumSquare", [x.name], ["axes": .ints([1]), "keepdims": .int(1)])])
            let scale = try tensor(name, shape: [1, channels, 1, 1])
            return Value(name: graph.op("Mul", [graph.op("Div", [x.name, norm]), scale]), channels: x.channels, side: x.side)
        case let .squeezeExcitation(name, channels, squeeze):
            guard channels == x.channels else {
                throw ExportError.inconsistentDescription("\(name): squeeze-and-excitation of \(channels) channels on \(x.channels)")
            }
            // x · hardsigmoid(fc2(relu(fc1(mean over H, W)))).
            let pooled = Value(name: graph.op("GlobalAveragePool", [x.name]), channels: channels, side: 1)
            let fc1 = try convolution(ConvolutionSpec(name: "\(name).fc1", inputChannels: channels, outputChannels: squeeze,
                                                      kernelSize: 1, activation: .relu), pooled)
            let fc2 = try convolution(ConvolutionSpec(name: "\(name).fc2", inputChannels: squeeze, outputChannels: channels,
                                                      kernelSize: 1, activation: .hardsigmoid), fc1)
            return Value(name: graph.op("Mul", [x.name, fc2.name]), channels: channels, side: x.side)
        case let .sequence(body):
            return try body.reduce(x) { try emit($1, $0) }
        case let .residual(body):
            let y = try body.reduce(x) { try emit($1, $0) }
            guard y.channels == x.channels, y.side == x.side else {
                throw ExportError.inconsistentDescription("residual block changes \(x.channels)×\(x.side)² into \(y.channels)×\(y.side)²")
            }
            return Value(name: graph.op("Add", [x.name, y.name]), channels: x.channels, side: x.side)
        }
    }

    /// Conv (weight, optional bias), then BatchNormalization when the spec has one, then the activation.
    private mutating func convolution(_ c: ConvolutionSpec, _ x: Value) throws -> Value {
        guard c.inputChannels == x.channels, c.groups >= 1, c.inputChannels % c.groups == 0, c.outputChannels % c.groups == 0 else {
            throw ExportError.inconsistentDescription("\(c.name): a convolution of \(c.inputChannels) channels in \(c.groups) groups on \(x.channels)")
        }
        let k = c.kernelSize, extent = c.dilation * (k - 1) + 1
        guard x.side + 2 * c.padding >= extent, c.stride > 0 else {
            throw ExportError.inconsistentDescription("\(c.name): a \(k)×\(k) kernel (dilation \(c.dilation)) on a \(x.side)² map")
        }
        let side = (x.side + 2 * c.padding - extent) / c.stride + 1
        var inputs = [x.name, try tensor("\(c.name).weight", shape: [c.outputChannels, c.inputChannels / c.groups, k, k])]
        if c.bias { inputs.append(try tensor("\(c.name).bias", shape: [c.outputChannels])) }
        var y = graph.op("Conv", inputs, ["kernel_shape": .ints([k, k]), "strides": .ints([c.stride, c.stride]),
                                          "pads": .ints([c.padding, c.padding, c.padding, c.padding]),
                                          "dilations": .ints([c.dilation, c.dilation]), "group": .int(c.groups)])
        if let bn = c.normalization {
            let o = [c.outputChannels]
            let inputs = [y, try tensor("\(bn).weight", shape: o), try tensor("\(bn).bias", shape: o),
                          try tensor("\(bn).running_mean", shape: o), try tensor("\(bn).running_var", shape: o)]
            y = graph.op("BatchNormalization", inputs, ["epsilon": .float(c.epsilon)])
        }
        switch c.activation {
        case .none: break
        case .relu: y = graph.op("Relu", [y])
        case .relu6: y = graph.op("Clip", [y, graph.scalar(0, hint: "zero"), graph.scalar(6, hint: "six")])
        case .hardswish: y = graph.op("HardSwish", [y])
        // PyTorch's relu6(x + 3) / 6; ONNX's default slope is 0.2, not 1/6.
        case .hardsigmoid: y = graph.op("HardSigmoid", [y], ["alpha": .float(1.0 / 6), "beta": .float(0.5)])
        }
        return Value(name: y, channels: c.outputChannels, side: side)
    }
}
