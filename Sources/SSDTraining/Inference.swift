import Foundation
import SSDData
import SSDDetection
import SSDEngine

/// Detections of one photo: fractional boxes as the model gives them, and the same boxes in
/// the photo's pixels (fractions × original width and height, as the reference's `detect`).
public struct PhotoDetections: Sendable {
    public var path: String
    public var width: Int
    public var height: Int
    public var detections: [Detection]

    /// `detections[i].box` scaled to pixels.
    public func pixelBox(_ i: Int) -> [Float] {
        let b = detections[i].box
        return [b[0] * Float(width), b[1] * Float(height), b[2] * Float(width), b[3] * Float(height)]
    }
}

/// The reference's `detect()` on image files: decode, resize to 300×300 (PIL's bilinear),
/// normalise, forward in evaluation mode, per-class NMS; optionally dropping some classes.
public enum Inference {
    public static func detect(files: [URL], model: SSD300, settings: DetectionSettings, suppress: Set<Int> = [],
                              batchSize: Int = 8, progress: (Int, Int) -> Void = { _, _ in }) throws -> [PhotoDetections] {
        let wasTraining = model.isTraining
        model.isTraining = false
        defer { model.isTraining = wasTraining }
        var results: [PhotoDetections] = []
        let side = Augmentation.outputSize
        for start in stride(from: 0, to: files.count, by: max(batchSize, 1)) {
            let chunk = Array(files[start..<min(files.count, start + max(batchSize, 1))])
            let images = try chunk.map { try ImageCodec.load($0) }
            let batch = Tensor(shape: [chunk.count, 3, side, side])
            for (i, image) in images.enumerated() {
                Normalization.normalize(Resampler.resizeBilinear(image, width: side, height: side),
                                        into: batch.data + i * 3 * side * side)
            }
            let (locs, scores) = try model.forward(batch)
            let found = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: model.priorsCxcy, settings: settings)
            for (i, image) in images.enumerated() {
                // Label 0 is the reference's "nothing found" placeholder: no detection.
                let kept = found[i].filter { $0.label != 0 && !suppress.contains($0.label) }
                results.append(PhotoDetections(path: chunk[i].path, width: image.width, height: image.height, detections: kept))
            }
            progress(results.count, files.count)
        }
        return results
    }
}
