import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDEvaluation
import SSDLayers
import SSDTraining

/// A model built from a weights file as its metadata describes, and its class names (from the
/// metadata; the VOC names for a 21-class file without them).
func loadModel(_ path: String, algorithm: ConvolutionAlgorithm,
               expecting kind: ModelKind? = nil) throws -> (model: SSDModel, classNames: [String]) {
    try requireExisting(path, what: "weights")
    let model = try SSDModel.load(contentsOf: URL(fileURLWithPath: path), algorithm: algorithm)
    if let kind, kind != model.kind {
        throw UserError("\(path): these are \(model.kind) weights, not the --model \(kind) asked for")
    }
    try requireFiniteWeights(model, from: path)
    let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
    let names = try classNames(from: file, classCount: model.classCount)
    return (model, names)
}

/// A model's post-processing with the flags that override it.
func detectionSettings(_ defaults: DetectionSettings, minScore: Float?, maxOverlap: Float?, topK: Int?) -> DetectionSettings {
    var s = defaults
    if let minScore { s.minScore = minScore }
    if let maxOverlap { s.maxOverlap = maxOverlap }
    if let topK { s.topK = topK }
    return s
}

/// Class names for labels 1…classCount−1 from a file's metadata, or the VOC names.
func classNames(from file: SafetensorsFile, classCount: Int) throws -> [String] {
    if let names = ClassNames.decode(file.metadata[.classNames]) {
        guard names.count == classCount - 1 else {
            throw UserError("\(file.path): \(names.count) class names in its metadata for \(classCount - 1) classes")
        }
        return names
    }
    guard classCount == LabelMap.voc.classes.count + 1 else {
        throw UserError("\(file.path): \(classCount - 1) classes but no class names in its metadata")
    }
    return LabelMap.voc.classes
}

/// Throws, naming the first tensor, unless every weight and buffer of `model` is finite: NaN
/// weights detect nothing and infinite ones detect nonsense, both without a word otherwise.
func requireFiniteWeights(_ model: SSDModel, from path: String) throws {
    if let (name, _) = model.stateTensors.first(where: { !$0.1.isFinite }) {
        throw UserError("\(path): \(name) holds NaN or infinite values; these weights cannot be used")
    }
}
