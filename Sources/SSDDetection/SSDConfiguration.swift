import Foundation
import SSDLayers

/// The shape of an SSD300: how many classes, how wide, whether normalised. The default is
/// the reference's network; a compact configuration (`widthDivisor` 8, batch normalisation)
/// trains from scratch in minutes on the synthetic set.
public struct SSDConfiguration: Equatable, Sendable {
    /// Classes including background (21 for Pascal VOC).
    public var classCount: Int
    /// Every convolution's channel count is VGG's divided by this (1 = the reference), but
    /// at least 16, so every layer holds whole channel blocks of oneDNN's layouts (8 or 16).
    public var widthDivisor: Int
    /// Batch normalisation (then ReLU) after each base and auxiliary convolution — not in the
    /// reference; it lets the compact model learn without pretrained weights.
    public var batchNorm: Bool

    public init(classCount: Int, widthDivisor: Int = 1, batchNorm: Bool = false) {
        self.classCount = classCount
        self.widthDivisor = widthDivisor
        self.batchNorm = batchNorm
    }

    /// The compact demo model: 1/8 of VGG's widths (16 channels at least), with batch normalisation.
    public static func compact(classCount: Int) -> SSDConfiguration {
        SSDConfiguration(classCount: classCount, widthDivisor: 8, batchNorm: true)
    }

    /// VGG width `c` scaled down (never below 16 channels).
    func width(_ c: Int) -> Int { widthDivisor == 1 ? c : max(c / widthDivisor, 16) }

    /// The most classes (background included) a configuration may have. The class scores of
    /// SSD300 take 8732 × classes floats per image, and a file or a flag must never make us
    /// allocate without bound: 10,000 is ten times LVIS's 1203 categories (≈ 350 MB of scores
    /// per image), well past any detection data set in use.
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
    }

    /// The configuration as checkpoint metadata.
    public var metadata: [String: String] {
        ["n_classes": String(classCount), "width_divisor": String(widthDivisor), "batch_norm": batchNorm ? "1" : "0",
         "naming": "tutorial state_dict"]
    }

    /// The configuration a checkpoint's metadata describes; `n_classes` falls back to the
    /// class-prediction weights' shape, the rest to the reference network.
    public init(metadata: [String: String], file: SafetensorsFile) throws {
        func integer(_ key: String) throws -> Int? {
            guard let text = metadata[key] else { return nil }
            guard let value = Int(text) else { throw ModelError.configuration("\(file.path): metadata '\(key)' is not an integer: '\(text)'") }
            return value
        }
        var classes = try integer("n_classes")
        if classes == nil, let shape = file.entries["pred_convs.cl_conv4_3.bias"]?.shape, shape.count == 1, shape[0] % 4 == 0 {
            classes = shape[0] / 4
        }
        guard let classes else {
            throw ModelError.configuration("\(file.path): no 'n_classes' metadata and no pred_convs.cl_conv4_3.bias to infer it from")
        }
        self.init(classCount: classes, widthDivisor: try integer("width_divisor") ?? 1,
                  batchNorm: try integer("batch_norm").map { flag in
                      guard flag == 0 || flag == 1 else {
                          throw ModelError.configuration("\(file.path): metadata 'batch_norm' must be 0 or 1, got \(flag)")
                      }
                      return flag == 1
                  } ?? false)
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
