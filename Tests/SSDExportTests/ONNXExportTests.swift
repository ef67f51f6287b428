import Foundation
import SSDDetection
import SSDEngine
import SSDExport
import SSDLayers
import SwiftProtobuf
import XCTest

/// The structure of exported graphs: inputs, outputs, dynamic batch, opset, initializers that
/// are exactly the weights, a graph in which every value is defined before it is read, and the
/// errors for bad descriptions, weights and settings. (The numbers are checked against ONNX
/// Runtime and OpenVINO by tools/onnx-check.)
final class ONNXExportTests: XCTestCase {
    static let names = ["circle", "square"]

    func compact() throws -> SSDModel { try SSDModel(.compact, classCount: 3, seed: 7) }

    func dims(_ info: Onnx_ValueInfoProto) -> [String] {
        info.type.tensorType.shape.dim.map { d in
            switch d.value {
            case let .dimValue(v)?: return String(v)
            case let .dimParam(p)?: return p
            case nil: return "?"
            }
        }
    }

    func testCompactGraphHasImagesInAndLocsAndLogitsOutWithDynamicBatch() throws {
        let export = try ONNXExport(model: try compact(), classNames: Self.names)
        let m = export.model
        XCTAssertEqual(m.irVersion, 8)
        XCTAssertEqual(m.opsetImport.map(\.version), [17])
        XCTAssertEqual(m.opsetImport.map(\.domain), [""])
        XCTAssertEqual(m.graph.input.map(\.name), ["images"])
        XCTAssertEqual(dims(m.graph.input[0]), ["N", "3", "300", "300"])
        XCTAssertEqual(m.graph.output.map(\.name), ["locs", "class_logits"])
        XCTAssertEqual(m.graph.output.map(dims), [["N", "8732", "4"], ["N", "8732", "3"]])
        XCTAssertEqual(m.graph.output.map(\.type.tensorType.elemType), [1, 1])
        // 6 sources × 2 heads, 15 VGG + 8 auxiliary convolutions, each with its batch norm but the heads.
        let ops = m.graph.node.map(\.opType)
        XCTAssertEqual(ops.filter { $0 == "Conv" }.count, 12 + 15 + 8)
        XCTAssertEqual(ops.filter { $0 == "BatchNormalization" }.count, 15 + 8)
        XCTAssertEqual(ops.filter { $0 == "MaxPool" }.count, 5)
        XCTAssertEqual(ops.filter { $0 == "ReduceSumSquare" }.count, 1, "conv4_3's L2 norm")
        let pool3 = m.graph.node.filter { $0.opType == "MaxPool" }[2]
        XCTAssertEqual(pool3.attribute.first { $0.name == "ceil_mode" }?.i, 1, "pool3 is in ceil mode")
        XCTAssertFalse(ops.contains("NonMaxSuppression"))
    }

    func testInitializersAreExactlyTheWeightsUnderTheirStateDictNames() throws {
        let model = try compact()
        let export = try ONNXExport(model: model, classNames: Self.names)
        let state = Dictionary(uniqueKeysWithValues: model.stateTensors)
        var seen = Set<String>()
        for t in export.model.graph.initializer {
            XCTAssertTrue(seen.insert(t.name).inserted, "\(t.name) twice")
            if t.name.hasPrefix("ssd_export.") { continue }
            guard let tensor = state[t.name] else { return XCTFail("\(t.name) is neither a state tensor nor an exporter constant") }
            XCTAssertEqual(t.dims.map(Int.init), tensor.shape, t.name)
            XCTAssertEqual(t.rawData, Data(buffer: UnsafeBufferPointer(start: tensor.data, count: tensor.count)), t.name)
        }
        // Every parameter and batch-norm statistic is in the graph, once.
        XCTAssertEqual(Set(export.stateTensorNames), Set(state.keys))
        XCTAssertEqual(export.stateTensorNames.count, state.count)
        XCTAssertEqual(export.parameterCount, model.stateTensors.map(\.1.count).reduce(0, +))
        XCTAssertTrue(seen.contains("rescale_factors"))
        XCTAssertTrue(seen.contains("base.bn4_3.running_var"))
    }

    func testSerializedBytesParseBackAndEveryValueIsDefinedBeforeItIsRead() throws {
        let export = try ONNXExport(model: try compact(), classNames: Self.names, postProcessing: .demo)
        let data = try export.serializedData()
        let parsed = try Onnx_ModelProto(serializedBytes: data)
        XCTAssertEqual(parsed, export.model)
        var defined = Set(parsed.graph.input.map(\.name) + parsed.graph.initializer.map(\.name))
        for node in parsed.graph.node {
            for input in node.input where !input.isEmpty {
                XCTAssertTrue(defined.contains(input), "\(node.name) (\(node.opType)) reads \(input) before it is defined")
            }
            for output in node.output { XCTAssertTrue(defined.insert(output).inserted, "\(output) defined twice") }
        }
        for output in parsed.graph.output { XCTAssertTrue(defined.contains(output.name), "output \(output.name) is never computed") }
    }

    func testSSDLiteMapsEveryLayerKind() throws {
        let model = try SSDModel(.ssdlite320, classCount: 3, seed: 1)
        let export = try ONNXExport(model: model, classNames: Self.names)
        let nodes = export.model.graph.node, ops = nodes.map(\.opType)
        // Every convolution of the description (squeeze-and-excitation's two included) is one Conv.
        func convolutions(_ spec: LayerSpec) -> Int {
            switch spec {
            case .convolution: return 1
            case .squeezeExcitation: return 2
            case .maxPool, .l2Norm: return 0
            case let .sequence(body), let .residual(body): return body.map(convolutions).reduce(0, +)
            }
        }
        let d = model.architecture
        let expected = (d.trunk + d.sources.flatMap { [$0.locationHead, $0.classHead] }).map(convolutions).reduce(0, +)
        XCTAssertEqual(ops.filter { $0 == "Conv" }.count, expected)
        for op in ["HardSwish", "HardSigmoid", "GlobalAveragePool", "Clip", "Add", "Relu"] {
            XCTAssertTrue(ops.contains(op), "no \(op)")
        }
        let hardSigmoid = try XCTUnwrap(nodes.first { $0.opType == "HardSigmoid" })
        XCTAssertEqual(try XCTUnwrap(hardSigmoid.attribute.first { $0.name == "alpha" }).f, 1.0 / 6, accuracy: 1e-7,
                       "PyTorch's hardsigmoid is relu6(x + 3) / 6, ONNX's default slope is 0.2")
        let bn = try XCTUnwrap(nodes.first { $0.opType == "BatchNormalization" })
        XCTAssertEqual(try XCTUnwrap(bn.attribute.first { $0.name == "epsilon" }).f, 0.001, accuracy: 1e-9)
        let depthwise = nodes.filter { $0.opType == "Conv" && ($0.attribute.first { $0.name == "group" }?.i ?? 1) > 1 }
        XCTAssertFalse(depthwise.isEmpty)
        XCTAssertEqual(dims(export.model.graph.output[0]), ["N", "3234", "4"])
        XCTAssertEqual(dims(export.model.graph.input[0]), ["N", "3", "320", "320"])
    }

    func testPostProcessingOutputsAndTheSettingsThresholds() throws {
        var settings = DetectionSettings.demo
        settings.minScore = 0.3
        settings.maxOverlap = 0.4
        settings.topK = 7
        let export = try ONNXExport(model: try compact(), classNames: Self.names, postProcessing: settings)
        let g = export.model.graph
        XCTAssertEqual(g.output.map(\.name), ["locs", "class_logits", "detection_boxes", "detection_labels", "detection_scores",
                                              "detection_batch_index"])
        XCTAssertEqual(g.output.map(\.type.tensorType.elemType), [1, 1, 1, 7, 1, 7])
        XCTAssertEqual(g.output.dropFirst(2).map(dims), [["detections", "4"], ["detections"], ["detections"], ["detections"]])
        let nms = try XCTUnwrap(g.node.first { $0.opType == "NonMaxSuppression" })
        func floatConstant(_ name: String) -> Float? {
            g.initializer.first { $0.name == name }.map { $0.rawData.withUnsafeBytes { $0.load(as: Float.self) } }
        }
        func intConstant(_ name: String) -> Int64? { g.initializer.first { $0.name == name }?.int64Data.first }
        XCTAssertEqual(intConstant(nms.input[2]), 7, "at most top k per class")
        XCTAssertEqual(floatConstant(nms.input[3]), 0.4, "IoU threshold = max overlap")
        XCTAssertEqual(floatConstant(nms.input[4]), 0.3, "score threshold = min score")
        let metadata = Dictionary(uniqueKeysWithValues: export.model.metadataProps.map { ($0.key, $0.value) })
        let post = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata["ssd.postprocess"]).utf8)) as? [String: Any])
        XCTAssertEqual(post["top_k"] as? Int, 7)
        XCTAssertEqual(post["box_coding"] as? String, "tutorial")
    }

    func testTorchvisionPostProcessingTakesCandidatesPerClass() throws {
        let model = try SSDModel(.ssdlite320, classCount: 3, seed: 1)
        let export = try ONNXExport(model: model, classNames: Self.names, postProcessing: model.architecture.demoDetection)
        let ops = export.model.graph.node.map(\.opType)
        XCTAssertEqual(ops.filter { $0 == "TopK" }.count, 2, "the candidates per class, then the final ordering")
        XCTAssertTrue(ops.contains("Min"), "the log-scale clamp")
        XCTAssertTrue(export.model.graph.node.contains { $0.opType == "Clip" && $0.output[0].hasPrefix("clipped") },
                      "boxes clipped to the image")
    }

    func testMetadataCarriesTheInputNormalisationAndClassNames() throws {
        let export = try ONNXExport(model: try compact(), classNames: Self.names)
        let metadata = Dictionary(uniqueKeysWithValues: export.model.metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(metadata["ssd.model"], "compact")
        XCTAssertEqual(metadata["ssd.input_size"], "300")
        XCTAssertEqual(try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata["ssd.classes"]).utf8)) as? [String], Self.names)
        let mean = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata["ssd.input_mean"]).utf8)) as? [Double])
        XCTAssertEqual(mean.count, 3)
        XCTAssertEqual(mean[0], 0.485, accuracy: 1e-6)
        XCTAssertNotNil(metadata["ssd.input_std"])
        XCTAssertNil(metadata["ssd.postprocess"])
    }

    func testBadWeightsDescriptionsAndSettingsAreNamedErrors() throws {
        let model = try compact()
        var tensors = Dictionary(uniqueKeysWithValues: model.stateTensors)
        let d = model.architecture
        XCTAssertThrowsError(try ONNXExport(description: d, tensors: tensors, classNames: ["one"])) {
            XCTAssertEqual($0 as? ExportError, .inconsistentDescription("1 class names for 2 classes"))
        }
        tensors["base.bn1_1.running_mean"] = nil
        XCTAssertThrowsError(try ONNXExport(description: d, tensors: tensors, classNames: Self.names)) {
            XCTAssertEqual($0 as? ExportError, .missingTensor("base.bn1_1.running_mean"))
        }
        tensors = Dictionary(uniqueKeysWithValues: model.stateTensors)
        tensors["rescale_factors"] = Tensor(shape: [1, 7, 1, 1])
        XCTAssertThrowsError(try ONNXExport(description: d, tensors: tensors, classNames: Self.names)) {
            guard case let .shapeMismatch(name, _, got)? = $0 as? ExportError else { return XCTFail("\($0)") }
            XCTAssertEqual(name, "rescale_factors")
            XCTAssertEqual(got, [1, 7, 1, 1])
        }
        tensors = Dictionary(uniqueKeysWithValues: model.stateTensors)
        var fewerPriors = d
        fewerPriors.priorsCxcy.removeLast(4)
        XCTAssertThrowsError(try ONNXExport(description: fewerPriors, tensors: tensors, classNames: Self.names)) {
            XCTAssertEqual($0 as? ExportError, .inconsistentDescription("compact: the feature maps place 8732 priors, the description has 8731"))
        }
        var badSource = d
        badSource.sources[1].layer = 99
        XCTAssertThrowsError(try ONNXExport(description: badSource, tensors: tensors, classNames: Self.names)) {
            XCTAssertTrue("\($0)".contains("reads trunk layer 99"), "\($0)")
        }
        for (settings, what) in [(DetectionSettings(topK: 0), "top k"), (DetectionSettings(maxOverlap: 1.5), "max overlap"),
                                 (DetectionSettings(minScore: .nan), "min score"), (DetectionSettings(candidatesPerClass: 0), "candidates")] {
            XCTAssertThrowsError(try ONNXExport(description: d, tensors: tensors, classNames: Self.names, postProcessing: settings)) {
                guard case let .invalidSettings(message)? = $0 as? ExportError else { return XCTFail("\($0)") }
                XCTAssertTrue(message.contains(what), message)
            }
        }
    }

    func testTensorsTheDescriptionDoesNotNameAreIgnored() throws {
        let model = try compact()
        var tensors = Dictionary(uniqueKeysWithValues: model.stateTensors)
        tensors["optimizer.exp_avg.base.conv1_1.weight"] = Tensor(shape: [2])
        let export = try ONNXExport(description: model.architecture, tensors: tensors, classNames: Self.names)
        XCTAssertFalse(export.model.graph.initializer.contains { $0.name.hasPrefix("optimizer.") })
    }
}
