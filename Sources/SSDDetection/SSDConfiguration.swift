import Foundation
import SSDLayers

/// The keys of a checkpoint's metadata (safetensors' `__metadata__`, a string → string map).
public enum MetadataKey: String, CaseIterable, Sendable {
    /// The model's kind (`ModelKind`'s raw value).
    case model
    case classCount = "n_classes"
    case widthDivisor = "width_divisor"
    case batchNorm = "batch_norm"
    /// Which state_dict names the tensors carry.
    case naming
    case classNames = "class_names"
    case iteration
    case seed
    case optimizer
    case batchSize = "batch_size"
}

extension Dictionary where Key == String, Value == String {
    /// The value under a typed metadata key.
    public subscript(key: MetadataKey) -> String? {
        get { self[key.rawValue] }
        set { self[key.rawValue] = newValue }
    }
}

/// Which model, with how many classes — everything needed to build it, and what a checkpoint's
/// metadata records. The VGG models (`ssd300`, `ssd512`) may also be narrowed and given batch
/// normalisation; `compact` is SSD300 at 1/8 width with batch normalisation.
public struct SSDConfiguration: Equatable, Sendable, Codable, CustomStringConvertible {
    public var model: ModelKind
    /// Classes including background (21 for Pascal VOC).
    public var classCount: Int
    /// VGG models: every convolution's channel count is VGG's divided by this (1 = the
    /// reference), but at least 16, so every layer holds whole channel blocks of oneDNN's layouts.
    public var widthDivisor: Int
    /// VGG models: batch normalisation (then ReLU) after each base and auxiliary convolution —
    /// not in the reference; it lets the compact model learn without pretrained weights.
    public var batchNorm: Bool

    /// `widthDivisor` and `batchNorm` default to the kind's own (8 and true for `compact`, 1 and
    /// false otherwise).
    public init(model: ModelKind = .ssd300, classCount: Int, widthDivisor: Int? = nil, batchNorm: Bool? = nil) {
        self.model = model
        self.classCount = classCount
        self.widthDivisor = widthDivisor ?? (model == .compact ? 8 : 1)
        self.batchNorm = batchNorm ?? (model == .compact)
    }

    /// The compact demo model.
    public static func compact(classCount: Int) -> SSDConfiguration { SSDConfiguration(model: .compact, classCount: classCount) }

    /// The model's full description.
    public var architecture: ModelDescription {
        switch model {
        case .ssd300: return .ssd300(classCount: classCount, widthDivisor: widthDivisor, batchNorm: batchNorm)
        case .compact: return .ssd300(classCount: classCount, widthDivisor: widthDivisor, batchNorm: batchNorm, kind: .compact)
        case .ssd512: return .ssd512(classCount: classCount, widthDivisor: widthDivisor, batchNorm: batchNorm)
        case .ssdlite320: return .ssdlite320(classCount: classCount)
        }
    }

    /// The most classes (background included) a configuration may have. The class scores of
    /// SSD512 take 24564 × classes floats per image, and a file or a flag must never make us
    /// allocate without bound: 10,000 is ten times LVIS's 1203 categories, well past any
    /// detection data set in use.
    public static let maximumClassCount = 10_000

    /// Throws unless the configuration can be built.
    public func validate() throws {
        guard classCount >= 2 else { throw ModelError.configuration("an SSD needs background plus at least one class, got \(classCount) classes") }
        guard classCount <= Self.maximumClassCount else {
            throw ModelError.configuration("\(classCount) classes is more than the \(Self.maximumClassCount) an SSD here may have")
        }
        guard widthDivisor >= 1, 64 % widthDivisor == 0 else {
            throw ModelError.configuration("width divisor must divide 64 (1, 2, 4, 8, …), got \(widthDivisor)")
        }
        if model == .ssdlite320 && (widthDivisor != 1 || batchNorm) {
            throw ModelError.configuration("ssdlite320 is torchvision's network: it takes no width divisor or batch-norm switch")
        }
    }

    public var description: String {
        var s = "\(model) with \(classCount) classes"
        let own = SSDConfiguration(model: model, classCount: classCount)
        if widthDivisor != own.widthDivisor { s += ", widths ÷\(widthDivisor)" }
        if batchNorm != own.batchNorm { s += batchNorm ? ", batch norm" : ", no batch norm" }
        return s
    }

    /// The configuration as checkpoint metadata.
    public var metadata: [String: String] {
        var m: [String: String] = [:]
        m[.model] = model.rawValue
        m[.classCount] = String(classCount)
        m[.widthDivisor] = String(widthDivisor)
        m[.batchNorm] = batchNorm ? "1" : "0"
        m[.naming] = model == .ssdlite320 ? "torchvision state_dict" : "tutorial state_dict"
        return m
    }

    /// The configuration a checkpoint's metadata describes. Without `model` (files written before
    /// models had names) it is SSD300, or `compact` for 1/8 widths with batch norm; `n_classes`
    /// falls back to the first class head's shape.
    public init(metadata: [String: String], file: SafetensorsFile) throws {
        func integer(_ key: MetadataKey) throws -> Int? {
            guard let text = metadata[key] else { return nil }
            guard let value = Int(text) else { throw ModelError.configuration("\(file.path): metadata '\(key.rawValue)' is not an integer: '\(text)'") }
            return value
        }
        let width = try integer(.widthDivisor)
        let norm = try integer(.batchNorm).map { flag in
            guard flag == 0 || flag == 1 else {
                throw ModelError.configuration("\(file.path): metadata 'batch_norm' must be 0 or 1, got \(flag)")
            }
            return flag == 1
        }
        let kind: ModelKind
        if let name = metadata[.model] {
            guard let k = ModelKind(rawValue: name) else {
                throw ModelError.configuration("\(file.path): metadata 'model' is '\(name)', not one of \(ModelKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            kind = k
        } else if file.entries["head.classification_head.module_list.0.1.bias"] != nil {
            kind = .ssdlite320
        } else {
            kind = width == 8 && norm == true ? .compact : .ssd300
        }
        var classes = try integer(.classCount)
        if classes == nil {
            // The first map's class head has boxes × classes outputs: 4 boxes in the tutorial's, 6 in SSDLite's.
            let heads = [("pred_convs.cl_conv4_3.bias", 4), ("head.classification_head.module_list.0.1.bias", 6)]
            for (name, boxes) in heads {
                if let shape = file.entries[name]?.shape, shape.count == 1, shape[0] % boxes == 0 { classes = shape[0] / boxes }
            }
        }
        guard let classes else {
            throw ModelError.configuration("\(file.path): no 'n_classes' metadata and no class head to infer it from")
        }
        self.init(model: kind, classCount: classes, widthDivisor: width, batchNorm: norm)
        do { try validate() } catch let ModelError.configuration(reason) {
            throw ModelError.configuration("\(file.path): metadata: \(reason)")
        }
    }
}

/// Errors building, loading or saving models.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case configuration(String)
    public var description: String {
        switch self { case let .configuration(m): return m }
    }
}
