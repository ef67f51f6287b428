import Foundation
import SSDBoxes
import SSDData
import SSDDetection
import SSDEngine
import SSDEvaluation

/// Runs a model over a test set and scores its detections, as the reference's `eval.py`:
/// detections at the given thresholds against the ground truth (difficult objects included,
/// so detecting them is not penalised), per-class AP and their mean.
public enum Evaluator {
    public struct Result: Sendable {
        public var scores: APResult
        /// Fractional detections per image, in data-set order.
        public var detections: [[Detection]]
        public var images: Int
        /// Wall-clock milliseconds per image of the network's forward pass and of detection
        /// post-processing (softmax, decoding, per-class NMS, top k).
        public var forwardMillisecondsPerImage: Double
        public var postProcessingMillisecondsPerImage: Double
    }

    /// `loader` must be built on the test split without shuffling. `progress(done, total)` is
    /// called after every batch. The model is put in evaluation mode and restored after.
    public static func evaluate(model: SSDModel, loader: DataLoader, settings: DetectionSettings = DetectionSettings(),
                                metric: APMetric = .voc07, progress: (Int, Int) -> Void = { _, _ in }) throws -> Result {
        guard loader.dataset.split == .test, !loader.shuffle else {
            throw TrainingError.data("evaluation needs the test split, unshuffled")
        }
        let wasTraining = model.isTraining
        model.isTraining = false
        defer { model.isTraining = wasTraining }
        var truths: [EvaluationTruth] = [], all: [[Detection]] = []
        let batches = loader.epoch(0)
        defer { batches.cancel() }
        var done = 0
        var forwardSeconds = 0.0, postSeconds = 0.0
        while let batch = try batches.nextBatch() {
            if let bad = batch.labels.joined().first(where: { $0 < 1 || $0 >= model.classCount }) {
                throw TrainingError.data("the test list has label \(bad), but the model knows labels 1…\(model.classCount - 1)")
            }
            var t = Date()
            let (locs, scores) = try model.forward(batch.images)
            forwardSeconds += Date().timeIntervalSince(t)
            // NaN scores would select nothing and the mAP would quietly read 0.
            guard locs.isFinite, scores.isFinite else {
                let first = batch.indices.first.map { loader.dataset.list.images[$0] } ?? "?"
                throw TrainingError.data("the model's outputs are not finite on the batch of \(first) (are the weights sane?)")
            }
            t = Date()
            let detections = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: model.priorsCxcy, settings: settings)
            postSeconds += Date().timeIntervalSince(t)
            for i in 0..<batch.indices.count {
                let b = batch.boxes[i]
                truths.append(EvaluationTruth(boxes: stride(from: 0, to: b.count, by: 4).map { Box(b[$0], b[$0 + 1], b[$0 + 2], b[$0 + 3]) },
                                              labels: batch.labels[i], difficult: batch.difficulties[i].map { $0 != 0 }))
                all.append(detections[i])
            }
            done += batch.indices.count
            progress(done, loader.dataset.count)
        }
        let result = try MeanAveragePrecision.compute(truths: truths, detections: all, classCount: model.classCount, metric: metric)
        return Result(scores: result, detections: all, images: done,
                      forwardMillisecondsPerImage: forwardSeconds * 1000 / Double(max(done, 1)),
                      postProcessingMillisecondsPerImage: postSeconds * 1000 / Double(max(done, 1)))
    }
}
