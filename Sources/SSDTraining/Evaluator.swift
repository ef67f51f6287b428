import Foundation
import SSDBoxes
import SSDData
import SSDDetection
import SSDDistributed
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
        try evaluate(model: model, loader: loader, settings: settings, metric: metric, communicator: SingleProcess(), progress: progress)!
    }

    /// The same over the K processes of `communicator`: rank r runs the loader's batches r,
    /// r + K, r + 2K, … — each image in the very batch one process would put it in, so its
    /// detections are the same bits — and rank 0 gathers every image's detections and ground
    /// truth and scores them in data-set order: the one-process result exactly. Returns the
    /// result on rank 0 (its timings are rank 0's), nil on the others. Every rank must call it.
    public static func evaluate(model: SSDModel, loader: DataLoader, settings: DetectionSettings = DetectionSettings(),
                                metric: APMetric = .voc07, communicator: Communicator,
                                progress: (Int, Int) -> Void = { _, _ in }) throws -> Result? {
        guard loader.dataset.split == .test, !loader.shuffle else {
            throw TrainingError.data("evaluation needs the test split, unshuffled")
        }
        let ranks = communicator.size
        let wasTraining = model.isTraining
        model.isTraining = false
        defer { model.isTraining = wasTraining }
        var truths: [EvaluationTruth] = [], all: [[Detection]] = []
        let batches = loader.epoch(0, batches: Array(stride(from: communicator.rank, to: loader.batchCount, by: ranks)))
        defer { batches.cancel() }
        var indices: [Int] = []
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
            indices += batch.indices
            done += batch.indices.count
            progress(min(done * ranks, loader.dataset.count), loader.dataset.count)
        }
        if ranks > 1 {
            guard let gathered = try communicator.gather(ImageRecords.encode(indices: indices, truths: truths, detections: all)) else {
                return nil
            }
            (truths, all) = try ImageRecords.decode(gathered, count: loader.dataset.count)
        }
        let result = try MeanAveragePrecision.compute(truths: truths, detections: all, classCount: model.classCount, metric: metric)
        return Result(scores: result, detections: all, images: all.count,
                      forwardMillisecondsPerImage: forwardSeconds * 1000 / Double(max(done, 1)),
                      postProcessingMillisecondsPerImage: postSeconds * 1000 / Double(max(done, 1)))
    }
}

/// One rank's images as floats for a gather: per image its data-set index, object count,
/// detection count, boxes (4 each), labels, difficult flags, then its detections (box, label,
/// score). Labels and indices below 2^24 are exact in a float.
public enum ImageRecords {
    public static func encode(indices: [Int], truths: [EvaluationTruth], detections: [[Detection]]) -> [Float] {
        var out: [Float] = []
        for (k, index) in indices.enumerated() {
            let t = truths[k], d = detections[k]
            out += [Float(index), Float(t.labels.count), Float(d.count)]
            for b in t.boxes { out += [b.xMin, b.yMin, b.xMax, b.yMax] }
            out += t.labels.map { Float($0) }
            out += t.difficult.map { $0 ? 1 : 0 }
            for x in d { out += [x.box.xMin, x.box.yMin, x.box.xMax, x.box.yMax, Float(x.label), x.score] }
        }
        return out
    }

    /// Every rank's records back in data-set order; each of the `count` images exactly once.
    public static func decode(_ parts: [[Float]], count: Int) throws -> ([EvaluationTruth], [[Detection]]) {
        var truths = [EvaluationTruth?](repeating: nil, count: count)
        var detections = [[Detection]](repeating: [], count: count)
        for part in parts {
            var i = 0
            while i + 3 <= part.count {
                let index = Int(part[i]), objects = Int(part[i + 1]), found = Int(part[i + 2])
                i += 3
                guard index >= 0, index < count, truths[index] == nil, i + 6 * objects + 6 * found <= part.count else {
                    throw TrainingError.data("the ranks' detections do not fit together (image \(index) of \(count))")
                }
                let boxes = (0..<objects).map { o in Box(part[i + 4 * o], part[i + 4 * o + 1], part[i + 4 * o + 2], part[i + 4 * o + 3]) }
                i += 4 * objects
                let labels = part[i..<(i + objects)].map { Int($0) }
                i += objects
                let difficult = part[i..<(i + objects)].map { $0 != 0 }
                i += objects
                detections[index] = (0..<found).map { f in
                    let p = i + 6 * f
                    return Detection(box: Box(part[p], part[p + 1], part[p + 2], part[p + 3]), label: Int(part[p + 4]), score: part[p + 5])
                }
                i += 6 * found
                truths[index] = EvaluationTruth(boxes: boxes, labels: labels, difficult: difficult)
            }
        }
        guard truths.allSatisfy({ $0 != nil }) else {
            throw TrainingError.data("the ranks' detections miss \(truths.filter { $0 == nil }.count) of \(count) images")
        }
        return (truths.map { $0! }, detections)
    }
}
