import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDEvaluation
import SSDLayers
import SSDTraining

/// A model built from a weights file as its metadata describes, and its class names (from the
/// metadata; the VOC names for a 21-class file without them).
func loadModel(_ path: String, algorithm: ConvolutionAlgorithm) throws -> (model: SSDModel, classNames: [String]) {
    try requireExisting(path, what: "weights")
    let model = try SSDModel.load(contentsOf: URL(fileURLWithPath: path), algorithm: algorithm)
    try requireFiniteWeights(model, from: path)
    let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
    let names = try classNames(from: file, classCount: model.classCount)
    return (model, names)
}

/// Class names for labels 1…classCount−1 from a file's metadata, or the VOC names.
func classNames(from file: SafetensorsFile, classCount: Int) throws -> [String] {
    if let names = ClassNames.decode(file.metadata["class_names"]) {
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
