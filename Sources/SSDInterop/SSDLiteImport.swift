import Foundation
import SSDDetection
import SSDEngine
import SSDFiles
import SSDLayers

/// What a conversion wrote, and what the user should know about it (printed as notes).
public struct ConversionSummary: Equatable, Sendable {
    public var count: Int
    public var notes: [String]
    public init(count: Int, notes: [String] = []) {
        self.count = count
        self.notes = notes
    }
}

/// The names and shapes of `ssdlite320`'s state dict (torchvision's names), in state_dict order.
public enum SSDLiteNames {
    /// Every parameter and buffer of `SSDModel(.ssdlite320, classCount:)` with its shape.
    public static func expected(classCount: Int) throws -> [(name: String, shape: [Int])] {
        try SSDModel(.ssdlite320, classCount: classCount, backend: NaiveBackend()).stateTensors.map { ($0.0, $0.1.shape) }
    }

    /// Whether a tensor is one of the torchvision state dict's batch-norm step counters, which
    /// nothing here uses.
    static func isStepCounter(_ name: String) -> Bool { name == "num_batches_tracked" || name.hasSuffix(".num_batches_tracked") }

    /// The shape a reduced-tail tensor has in MobileNetV3-Large's full tail: torchvision's
    /// `reduce_divider` halves 160 → 80 and 960 → 480, and so the tail's squeeze width 240 → 120
    /// (672, the C4 block's expansion, is not reduced).
    static func fullTailShape(_ shape: [Int]) -> [Int] { shape.map { [80: 160, 480: 960, 120: 240][$0] ?? $0 } }

    static let floatTypes: [TorchDType] = [.float32, .float16, .bfloat16, .float64]

    static func requireFloat(_ name: String, _ tensor: TorchTensorReference, file: String) throws {
        guard floatTypes.contains(tensor.storage.dtype) else {
            throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)' has dtype \(tensor.storage.dtype.rawValue), expected a float type")
        }
    }

    static func materializeFloats(_ file: TorchFile, _ pairs: [(source: String, target: String, reference: TorchTensorReference)]) throws -> [(String, Tensor)] {
        try pairs.map { pair in
            let tensor = try file.materialize(pair.reference, name: pair.source)
            return (pair.target, try VGGImport.floatTensor(tensor, name: pair.source, file: file.path))
        }
    }

    static func describe(_ names: [String], limit: Int = 3) -> String {
        let shown = names.prefix(limit).map { "'\($0)'" }.joined(separator: ", ")
        return names.count > limit ? "\(shown) and \(names.count - limit) more" : shown
    }
}

/// torchvision's ImageNet `mobilenet_v3_large` classifier → the backbone of `ssdlite320`, as
/// torchvision's `_mobilenet_extractor` lays it out: the first feature extractor is
/// `features[0…12]` plus the C4 block's expansion (`features.13.block.0.*` →
/// `backbone.features.0.13.*`), the second the rest of the C4 block, keeping its indices 1…3
/// (`features.13.block.K.*` → `backbone.features.1.0.K.*`), then `features.14…16` →
/// `backbone.features.1.1…3`. The classifier (`classifier.*`) and the batch-norm step counters
/// (`num_batches_tracked`) are not used.
///
/// The tail: torchvision's ImageNet weights are the *full-tail* network (the C4 block projects
/// to 160 channels, the last two blocks expand to 960, the last convolution is 160 → 960), while
/// `ssdlite320` here is torchvision's network built without backbone weights, which has the
/// *reduced* tail (80, 480; `reduce_tail = weights_backbone is None` in torchvision's
/// `ssdlite.py`), and is the network of torchvision's COCO checkpoint. torchvision given the
/// ImageNet weights builds the full-tail detector instead, which this package does not build.
///
/// Choice: import what fits and say what does not, rather than refuse. Everything up to the C4
/// block's projection — `features.0…12` and the C4 block's expansion, depthwise convolution and
/// squeeze-and-excitation: 1.11M parameters, 69% of `ssdlite320`'s backbone (1.62M) though only 37%
/// of the ImageNet network's (2.97M), and every layer feeding the first detection map — has the same shapes in both tails and is copied
/// exactly. The full tail's tensors (`features.13.block.3`, `features.14…16`) cannot be put in the
/// reduced layers (no slice of a 960-wide layer is a 480-wide one that was trained as such), so
/// they are not imported: those layers keep `ssd train`'s own initialisation, and the
/// conversion prints which tensors those are and why (and records them in the file's metadata,
/// `not_imported`). Refusing would leave no way to start from ImageNet features; quietly
/// importing would hide that the tail starts untrained. A reduced-tail ImageNet state dict
/// (`mobilenet_v3_large(reduced_tail=True)`) fits entirely and is imported entirely.
///
/// Every tensor the mapping reads is checked (present, shape, float dtype) on the pickle's
/// references before any is read; an error names the file and the first tensor at fault.
public enum MobileNetV3Import {
    public enum Tail: String, Sendable {
        /// 80 / 480 channels: what `ssdlite320` has; every tensor is imported.
        case reduced
        /// 160 / 960 channels (torchvision's ImageNet weights): the tail is not imported.
        case full
    }

    /// How a state dict maps onto the backbone.
    public struct Plan {
        /// torchvision name → our name, in our state_dict order, for each tensor imported.
        public var imports: [(source: String, target: String, reference: TorchTensorReference)]
        public var tail: Tail
        /// Our names of the tensors not imported (the full tail's), in state_dict order.
        public var notImported: [String]
        /// torchvision names ignored: the classifier and the step counters.
        public var ignored: [String]
    }

    /// The torchvision `mobilenet_v3_large` name of one of our `backbone.features.*` names.
    public static func torchvisionName(_ ours: String) -> String? {
        let parts = ours.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 5, parts[0] == "backbone", parts[1] == "features", let extractor = Int(parts[2]),
              let index = Int(parts[3]) else { return nil }
        let rest = parts[4...].joined(separator: ".")
        switch (extractor, index) {
        case (0, 0...12): return "features.\(index).\(rest)"
        case (0, 13): return "features.13.block.0.\(rest)"
        case (1, 0): return "features.13.block.\(rest)"
        case (1, 1...3): return "features.\(13 + index).\(rest)"
        default: return nil
        }
    }

    /// Whether a torchvision name lies in the part whose shapes depend on the tail: the C4
    /// block's projection and everything after it.
    public static func isTail(_ torchvisionName: String) -> Bool {
        ["features.13.block.3.", "features.14.", "features.15.", "features.16."].contains { torchvisionName.hasPrefix($0) }
    }

    /// Checks `references` (a torchvision `mobilenet_v3_large` state dict) and maps them.
    public static func plan(_ references: [(name: String, tensor: TorchTensorReference)], file: String) throws -> Plan {
        let expected = try SSDLiteNames.expected(classCount: 2).filter { $0.name.hasPrefix("backbone.features.") }
        var byName: [String: TorchTensorReference] = [:]
        for (name, tensor) in references { byName[name] = tensor }
        var ours: [String: String] = [:]  // torchvision → ours
        for (name, _) in expected {
            guard let source = torchvisionName(name) else {
                throw InteropError.unexpectedContent(file: file, message: "internal: no torchvision name for '\(name)'")
            }
            ours[source] = name
        }
        var ignored: [String] = []
        var unknown: [String] = []
        for (name, _) in references {
            if SSDLiteNames.isStepCounter(name) || name.hasPrefix("classifier.") { ignored.append(name) }
            else if ours[name] == nil { unknown.append(name) }
        }
        let what = "torchvision's mobilenet_v3_large state dict (features.0.0.weight … features.16.1.running_var, classifier.*)"
        guard byName.keys.contains(where: { ours[$0] != nil }) else {
            throw InteropError.unexpectedContent(
                file: file, message: "not a torchvision mobilenet_v3_large state dict: none of its \(references.count) tensors "
                    + "(\(SSDLiteNames.describe(references.map(\.name)))) is one of \(what)")
        }
        if let first = unknown.first {
            let others = unknown.count > 1 ? " (and \(unknown.count - 1) other unknown names)" : ""
            throw InteropError.unexpectedContent(
                file: file, message: "not a torchvision mobilenet_v3_large state dict: tensor '\(first)'\(others) is not one of \(what)")
        }
        func reference(_ source: String, _ target: String) throws -> TorchTensorReference {
            guard let t = byName[source] else {
                throw InteropError.unexpectedContent(
                    file: file, message: "no tensor '\(source)' (for ssdlite320's '\(target)'): not a complete torchvision mobilenet_v3_large state dict")
            }
            try SSDLiteNames.requireFloat(source, t, file: file)
            return t
        }
        // Blocks 0…12 and the C4 block up to its projection: the same in both tails.
        var imports: [(source: String, target: String, reference: TorchTensorReference)] = []
        var tailNames: [(source: String, target: String, shape: [Int])] = []
        for (target, shape) in expected {
            let source = torchvisionName(target)!
            if isTail(source) { tailNames.append((source, target, shape)); continue }
            let t = try reference(source, target)
            guard t.shape == shape else {
                throw InteropError.unexpectedContent(
                    file: file, message: "tensor '\(source)' has shape \(t.shape), expected \(shape) (for ssdlite320's '\(target)'): "
                        + "not torchvision's mobilenet_v3_large")
            }
            imports.append((source, target, t))
        }
        // The tail: reduced (imported) or full (recognised, not imported).
        guard let first = tailNames.first else { return Plan(imports: imports, tail: .reduced, notImported: [], ignored: ignored) }
        let firstShape = try reference(first.source, first.target).shape
        let tail: Tail
        if firstShape == first.shape { tail = .reduced }
        else if firstShape == SSDLiteNames.fullTailShape(first.shape) { tail = .full }
        else {
            throw InteropError.unexpectedContent(
                file: file, message: "tensor '\(first.source)' has shape \(firstShape), expected \(first.shape) (the reduced tail, as ssdlite320 here) "
                    + "or \(SSDLiteNames.fullTailShape(first.shape)) (the full tail of torchvision's ImageNet weights)")
        }
        var notImported: [String] = []
        for (source, target, shape) in tailNames {
            let t = try reference(source, target)
            let want = tail == .reduced ? shape : SSDLiteNames.fullTailShape(shape)
            guard t.shape == want else {
                throw InteropError.unexpectedContent(
                    file: file, message: "tensor '\(source)' has shape \(t.shape), expected \(want) in the \(tail.rawValue) tail that "
                        + "'\(first.source)' \(firstShape) implies")
            }
            if tail == .reduced { imports.append((source, target, t)) } else { notImported.append(target) }
        }
        return Plan(imports: imports, tail: tail, notImported: notImported, ignored: ignored)
    }

    /// The notes a plan calls for.
    public static func notes(_ plan: Plan) -> [String] {
        var notes: [String] = []
        if plan.tail == .full {
            notes.append("the file is the full-tail mobilenet_v3_large (torchvision's ImageNet weights: C4 block out 160, 960 wide), "
                + "ssdlite320 here has the reduced tail (80, 480; torchvision's network without backbone weights, as its COCO checkpoint): "
                + "imported the \(plan.imports.count) tensors that are the same in both (features.0 … features.13.block.2); "
                + "not imported: the \(plan.notImported.count) tensors of features.13.block.3 and features.14 … features.16 "
                + "(ssdlite320's backbone.features.1.0.3, backbone.features.1.1 … backbone.features.1.3), "
                + "which keep ssd train's initialisation")
        }
        let classifier = plan.ignored.filter { $0.hasPrefix("classifier.") }.count
        let counters = plan.ignored.count - classifier
        if classifier > 0 || counters > 0 {
            notes.append("not used: \(classifier) tensors of the ImageNet classifier (classifier.*) and \(counters) num_batches_tracked counters")
        }
        return notes
    }

    /// `ssd convert mobilenet-v3-large`: reads a torchvision `mobilenet_v3_large` `.pth` (a
    /// state dict, or a checkpoint holding one under `model`), writes the tensors that fit
    /// `ssdlite320`'s backbone under its names (never over `input`).
    public static func convertFile(input: URL, output: URL) throws -> ConversionSummary {
        try refuseOverwritingInput(input: input, output: output)
        let file = try TorchFile(url: input)
        let (references, _) = try TorchConversion.modelReferences(file)
        let plan = try plan(references, file: file.path)
        let tensors = try SSDLiteNames.materializeFloats(file, plan.imports)
        var metadata = ["source": "torchvision mobilenet_v3_large (\(plan.tail.rawValue) tail)", "backbone_of": ModelKind.ssdlite320.rawValue]
        if !plan.notImported.isEmpty {
            metadata["not_imported"] = String(decoding: try JSONSerialization.data(withJSONObject: plan.notImported), as: UTF8.self)
        }
        do {
            try SafetensorsWriter.write(tensors, metadata: metadata, to: output)
        } catch let error as EngineError {
            throw InteropError.unexpectedContent(file: output.path, message: error.description)
        }
        return ConversionSummary(count: tensors.count, notes: notes(plan))
    }
}

/// torchvision's `ssdlite320_mobilenet_v3_large` detection checkpoint (its COCO weights, or one
/// made by torchvision's reference scripts: `{'model': state_dict, 'optimizer': …, 'epoch': …}`)
/// → `ssdlite320` weights: the names are already ours; the class count is the class head's
/// (`head.classification_head.module_list.5.1.bias` holds 6 boxes × classes); every name and
/// shape is checked against the model before any tensor is read.
public enum SSDLiteCheckpoint {
    /// torchvision's `_COCO_CATEGORIES` (the labels of its COCO weights), without `__background__`:
    /// labels 1…90, with torchvision's "N/A" for the ids COCO does not use.
    public static let cocoClassNames = [
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light", "fire hydrant", "N/A",
        "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
        "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
        "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup",
        "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
        "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse",
        "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
        "scissors", "teddy bear", "hair drier", "toothbrush",
    ]

    /// The tensor the class count is read from.
    public static let classBias = "head.classification_head.module_list.5.1.bias"

    /// Checks `references` against `ssdlite320` and returns the class count and the tensors in
    /// state_dict order (step counters dropped).
    public static func plan(_ references: [(name: String, tensor: TorchTensorReference)], file: String) throws
        -> (classCount: Int, imports: [(source: String, target: String, reference: TorchTensorReference)]) {
        let tensors = references.filter { !SSDLiteNames.isStepCounter($0.name) }
        var byName: [String: TorchTensorReference] = [:]
        for (name, tensor) in tensors { byName[name] = tensor }
        let what = "not a torchvision ssdlite320_mobilenet_v3_large checkpoint"
        guard let bias = byName[classBias] else {
            throw InteropError.unexpectedContent(
                file: file, message: "\(what): no tensor '\(classBias)' (of \(references.count) tensors: \(SSDLiteNames.describe(references.map(\.name))))")
        }
        let boxes = DefaultBoxes.ssdlite320.boxesPerLocation.last ?? 6
        guard bias.shape.count == 1, bias.shape[0] % boxes == 0, (2...SSDConfiguration.maximumClassCount).contains(bias.shape[0] / boxes) else {
            throw InteropError.unexpectedContent(
                file: file, message: "tensor '\(classBias)' has shape \(bias.shape), expected (\(boxes) × classes) with 2 to "
                    + "\(SSDConfiguration.maximumClassCount) classes")
        }
        let classCount = bias.shape[0] / boxes
        let expected = try SSDLiteNames.expected(classCount: classCount)
        let shapes = Dictionary(uniqueKeysWithValues: expected.map { ($0.name, $0.shape) })
        let unexpected = tensors.map(\.name).filter { shapes[$0] == nil }
        if let first = unexpected.first {
            let others = unexpected.count > 1 ? " (and \(unexpected.count - 1) other unexpected names)" : ""
            throw InteropError.unexpectedContent(
                file: file, message: "\(what): tensor '\(first)'\(others) is not one of its \(expected.count) tensors "
                    + "(backbone.features.*, backbone.extra.*, head.regression_head.*, head.classification_head.*)")
        }
        let missing = expected.map(\.name).filter { byName[$0] == nil }
        if let first = missing.first {
            throw InteropError.unexpectedContent(
                file: file, message: "no tensor '\(first)' (\(missing.count) of ssdlite320's \(expected.count) tensors are missing)")
        }
        var imports: [(source: String, target: String, reference: TorchTensorReference)] = []
        for (name, shape) in expected {
            let t = byName[name]!
            guard t.shape == shape else {
                var message = "tensor '\(name)' has shape \(t.shape), expected \(shape) (ssdlite320 with \(classCount) classes)"
                if name.hasPrefix("backbone.features.1."), t.shape == SSDLiteNames.fullTailShape(shape) {
                    message += ": this is the full-tail network torchvision builds when given ImageNet backbone weights "
                        + "(weights_backbone=IMAGENET1K_V1, its default); ssdlite320 here is the reduced-tail one "
                        + "(weights_backbone=None, as torchvision's COCO checkpoint)"
                }
                throw InteropError.unexpectedContent(file: file, message: message)
            }
            try SSDLiteNames.requireFloat(name, t, file: file)
            imports.append((name, name, t))
        }
        return (classCount, imports)
    }

    /// `ssd convert ssdlite320`: reads a torchvision `ssdlite320_mobilenet_v3_large` checkpoint,
    /// writes `ssdlite320` weights with their metadata (never over `input`). Class names:
    /// `classNamesFile`'s when given (one per class but the background), else torchvision's COCO names
    /// for 91 classes, else none (a note says so: `ssd detect` then needs 21 classes, VOC's).
    public static func convertFile(input: URL, output: URL, classNamesFile: URL? = nil) throws -> ConversionSummary {
        try refuseOverwritingInput(input: input, output: output)
        let file = try TorchFile(url: input)
        let (references, checkpointMetadata) = try TorchConversion.modelReferences(file)
        let (classCount, imports) = try plan(references, file: file.path)
        var notes: [String] = []
        var names = try classNamesFile.map { try ClassNameFile.read($0, classCount: classCount) }
        if let given = names, let url = classNamesFile, given.count != classCount - 1 {
            throw InteropError.unexpectedContent(
                file: url.path, message: "\(given.count) class names for the \(classCount) classes of \(file.path) (expected \(classCount - 1): every class but the background)")
        }
        if names == nil && classCount == cocoClassNames.count + 1 {
            names = cocoClassNames
            notes.append("class names: torchvision's 90 COCO categories (use --class-names FILE for others)")
        } else if names == nil {
            notes.append("no class names recorded for its \(classCount - 1) classes"
                + (classCount == 21 ? " (ssd detect will use the VOC names)" : "; ssd detect needs them: convert with --class-names FILE"))
        }
        let tensors = try SSDLiteNames.materializeFloats(file, imports)
        var metadata = SSDConfiguration(model: .ssdlite320, classCount: classCount).metadata
        metadata["source"] = "torchvision ssdlite320_mobilenet_v3_large"
        if let epoch = checkpointMetadata["epoch"] { metadata["epoch"] = epoch }
        if let names { metadata[.classNames] = String(decoding: try JSONSerialization.data(withJSONObject: names), as: UTF8.self) }
        do {
            try SafetensorsWriter.write(tensors, metadata: metadata, to: output)
        } catch let error as EngineError {
            throw InteropError.unexpectedContent(file: output.path, message: error.description)
        }
        return ConversionSummary(count: tensors.count, notes: notes)
    }
}

/// Class names from a file: a JSON array of strings, or one name a line (blank lines skipped).
/// A list one longer than wanted whose first entry is `__background__` or `background` (as
/// torchvision's category lists are) loses that entry.
public enum ClassNameFile {
    public static let maximumBytes = 1 << 20

    public static func read(_ url: URL, classCount: Int? = nil) throws -> [String] {
        let path = url.path
        if let problem = RegularFile.problem(path) { throw InteropError.unreadable(file: path, reason: problem) }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InteropError.unreadable(file: path, reason: error.localizedDescription)
        }
        guard data.count <= maximumBytes else {
            throw InteropError.limitExceeded(file: path, field: "class names", message: "\(data.count) bytes, more than \(maximumBytes)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw InteropError.unexpectedContent(file: path, message: "class names: not UTF-8 text")
        }
        var names: [String]
        if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("[") {
            guard let array = try? JSONSerialization.jsonObject(with: data) as? [Any] else {
                throw InteropError.unexpectedContent(file: path, message: "class names: not a JSON array")
            }
            names = []
            for (index, item) in array.enumerated() {
                guard let name = item as? String else {
                    throw InteropError.unexpectedContent(file: path, message: "class names: entry \(index) is not a string")
                }
                names.append(name)
            }
        } else {
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if let classCount, names.count == classCount, let first = names.first, ["__background__", "background"].contains(first) {
            names.removeFirst()
        }
        guard !names.isEmpty else { throw InteropError.unexpectedContent(file: path, message: "class names: none") }
        if let index = names.firstIndex(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) {
            throw InteropError.unexpectedContent(file: path, message: "class names: entry \(index) is empty")
        }
        return names
    }
}
