import Foundation
import SSDBoxes
import SSDData
import SSDDetection
import SSDEngine

/// Detections of one photo: fractional boxes as the model gives them, and the same boxes in
/// the photo's pixels (fractions × original width and height, as the reference's `detect`).
public struct PhotoDetections: Sendable {
    public var path: String
    public var width: Int
    public var height: Int
    /// With fractional boxes, as the detector gives them.
    public var detections: [Detection]

    /// The detections with their boxes in the photo's pixels (x × width, y × height).
    public var pixelDetections: [Detection] {
        detections.map { $0.scaled(x: Float(width), y: Float(height)) }
    }
}

/// Why inference on a decoded photo failed.
public enum InferenceError: Error, CustomStringConvertible {
    /// The network gave NaN or infinite boxes or scores (weights that overflow).
    case nonFiniteOutputs
    public var description: String { "the model's outputs are not finite for this photo (are the weights sane?)" }
}

/// A photo `Inference.detect` could not process, and why (it names the file).
public struct PhotoFailure: Error, CustomStringConvertible {
    public var path: String
    public var error: Error
    public var description: String {
        let text = "\(error)"
        return text.contains(path) ? text : "\(path): \(text)"
    }
}

extension SSDModel {
    /// The images this model takes: its input side and normalisation.
    public var inputFormat: InputFormat {
        InputFormat(side: architecture.inputSize,
                    normalization: Normalization(mean: architecture.inputMean, std: architecture.inputStd))
    }
}

/// The reference's `detect()` on image files: decode, resize to the model's side (PIL's bilinear),
/// normalise, forward in evaluation mode, per-class NMS; optionally dropping some classes.
public enum Inference {
    /// Detects objects in every file, `batchSize` photos per forward pass, and hands each
    /// photo's outcome to `each` in file order: its detections, or a `PhotoFailure` (a photo that
    /// cannot be decoded, or whose outputs are not finite) — one bad photo does not stop the
    /// others. Only one full-size photo is held at a time: each is resized into the batch and
    /// released at once, so memory does not grow with the photos' sizes times the batch.
    public static func detect(files: [URL], model: SSDModel, settings: DetectionSettings, suppress: Set<Int> = [],
                              batchSize: Int = 8, progress: (Int, Int) -> Void = { _, _ in },
                              each: (Int, Result<PhotoDetections, PhotoFailure>) throws -> Void) throws {
        let wasTraining = model.isTraining
        model.isTraining = false
        defer { model.isTraining = wasTraining }
        let input = model.inputFormat, side = input.side, step = max(batchSize, 1)
        var done = 0
        for start in stride(from: 0, to: files.count, by: step) {
            let chunk = Array(files[start..<min(files.count, start + step)])
            // (index into files, width, height) of the photos that decoded, in order.
            var decoded: [(index: Int, width: Int, height: Int)] = []
            var failures: [Int: PhotoFailure] = [:]
            let batch = Tensor(shape: [chunk.count, 3, side, side])  // (N, 3, S, S)
            for (i, file) in chunk.enumerated() {
                do {
                    let image = try ImageCodec.load(file)
                    input.normalization.normalize(Resampler.resizeBilinear(image, width: side, height: side),
                                                  into: batch.data + decoded.count * 3 * side * side)
                    decoded.append((start + i, image.width, image.height))
                } catch {
                    failures[start + i] = PhotoFailure(path: file.path, error: error)
                }
            }
            var found: [[Detection]] = []
            var finite: [Bool] = []
            if !decoded.isEmpty {
                let images = decoded.count == chunk.count ? batch : Tensor(viewing: batch, shape: [decoded.count, 3, side, side])
                let (locs, scores) = try model.forward(images)  // (N, priors, 4), (N, priors, classes)
                found = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: model.priorsCxcy, settings: settings)
                // NaN scores select nothing and infinite offsets give infinite boxes: either way
                // the photo's answer would be silently wrong, so it is reported instead.
                let perLocs = locs.count / decoded.count, perScores = scores.count / decoded.count
                finite = (0..<decoded.count).map { i in
                    allFinite(locs.data + i * perLocs, count: perLocs) && allFinite(scores.data + i * perScores, count: perScores)
                }
            }
            var next = 0
            for index in start..<(start + chunk.count) {
                if let failure = failures[index] {
                    try each(index, .failure(failure))
                    continue
                }
                let photo = decoded[next], outputsFinite = finite[next]
                // Label 0 is the reference's "nothing found" placeholder: no detection.
                let kept = found[next].filter { $0.label != 0 && !suppress.contains($0.label) }
                next += 1
                if !outputsFinite || kept.contains(where: { !$0.score.isFinite || !$0.box.isFinite }) {
                    try each(index, .failure(PhotoFailure(path: files[index].path, error: InferenceError.nonFiniteOutputs)))
                    continue
                }
                try each(index, .success(PhotoDetections(path: files[index].path, width: photo.width, height: photo.height,
                                                         detections: kept)))
            }
            done += chunk.count
            progress(done, files.count)
        }
    }

    /// Detections for every file, in order; the first photo that fails stops it with its error.
    public static func detect(files: [URL], model: SSDModel, settings: DetectionSettings, suppress: Set<Int> = [],
                              batchSize: Int = 8, progress: (Int, Int) -> Void = { _, _ in }) throws -> [PhotoDetections] {
        var results: [PhotoDetections] = []
        try detect(files: files, model: model, settings: settings, suppress: suppress, batchSize: batchSize,
                   progress: progress) { _, outcome in
            switch outcome {
            case let .success(photo): results.append(photo)
            case let .failure(failure): throw failure
            }
        }
        return results
    }
}
