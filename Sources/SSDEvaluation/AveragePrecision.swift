import Foundation
import SSDBoxes

/// Ground truth of one image for evaluation: boundary boxes (fractional or pixels — no +1 is
/// added), labels (1…), and whether each object is difficult.
public struct EvaluationTruth: Equatable, Sendable {
    public var boxes: [Box]
    public var labels: [Int]
    public var difficult: [Bool]
    public init(boxes: [Box], labels: [Int], difficult: [Bool]) {
        self.boxes = boxes
        self.labels = labels
        self.difficult = difficult
    }
}

/// How average precision is computed.
public enum APMetric: String, Sendable, CaseIterable {
    /// VOC2007 11-point interpolation at IoU > 0.5: the reference's `calculate_mAP` (which gave
    /// its 77.2).
    case voc07
    /// VOC2010+ area under the interpolated precision/recall curve, IoU > 0.5.
    case voc12
    /// COCO: pycocotools' `COCOeval` for boxes (`stats[0]`: AP@[.50:.95], area "all", at most
    /// 100 detections per image and class), to 1e-5: per image and class the best 100
    /// detections by score take the free object of highest IoU ≥ t, for t = 0.50:0.05:0.95;
    /// precision made non-increasing over recall and read at 101 recall points; AP is the mean
    /// over thresholds and points. A difficult object is what pycocotools calls a crowd region
    /// (our COCO importer maps `iscrowd` to difficult): ignored — not required, and the
    /// detections it holds count neither way — any number of detections may take it, its IoU
    /// is intersection / detection area, and a detection takes it only when no object that is
    /// not difficult passes. So are boxes of area outside [0, 1e10] (inverted ones): such an
    /// object is ignored, such a detection that takes nothing too. Boxes are used as given (no
    /// +1). A class without an object that is not difficult is not evaluated: its AP is nil
    /// and the mean leaves it out.
    case coco
}

/// Errors in evaluation input.
public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    public var description: String {
        switch self { case let .invalid(m): return m }
    }
}

/// Per-class average precision and their mean.
public struct APResult: Equatable, Sendable {
    /// AP of classes 1…classCount−1 (index 0 is class 1); nil for a class the metric does not
    /// evaluate (only `.coco` leaves any out, see there).
    public var averagePrecisions: [Float?]
    /// The mean AP of the evaluated classes.
    public var meanAveragePrecision: Float
    public var metric: APMetric
}

public enum MeanAveragePrecision {
    /// Average precision of every non-background class (1..<classCount) and their mean, as the
    /// reference computes it for `.voc07`: detections of a class sorted by score; each matches
    /// the ground-truth object of its class and image it overlaps most; IoU > threshold with an
    /// object not yet matched is a true positive, with one already matched a false positive;
    /// a best match that is difficult counts as neither; no match is a false positive.
    /// Classes without detections get AP 0 and count in the mean, as in the reference; `.voc12`
    /// matches the same way. `.coco` is pycocotools' evaluation (see there) and throws when no
    /// class has an object that is not difficult (pycocotools prints −1: there is no mean).
    /// `detections[i]` are image i's, in the boxes' units of `truths[i]`; detections labelled
    /// 0 (the reference's "nothing found" placeholder) count for no class.
    public static func compute(truths: [EvaluationTruth], detections: [[Detection]], classCount: Int,
                               metric: APMetric = .voc07) throws -> APResult {
        guard truths.count == detections.count else {
            throw EvaluationError.invalid("\(truths.count) images of ground truth but \(detections.count) of detections")
        }
        guard classCount >= 2 else { throw EvaluationError.invalid("need at least one class besides background") }
        for (i, t) in truths.enumerated() {
            guard t.boxes.count == t.labels.count, t.labels.count == t.difficult.count else {
                throw EvaluationError.invalid("image \(i): ground truth boxes, labels and difficulties differ in length")
            }
        }
        if metric == .coco {
            let aps = COCOEvaluation.averagePrecisions(truths: truths, detections: detections, classCount: classCount)
            let evaluated = aps.compactMap { $0 }
            guard !evaluated.isEmpty else {
                throw EvaluationError.invalid("COCO AP: no class has a ground-truth object that is not difficult, so none can be evaluated")
            }
            return APResult(averagePrecisions: aps.map { $0.map(Float.init) },
                            meanAveragePrecision: Float(evaluated.reduce(0, +) / Double(evaluated.count)), metric: metric)
        }
        var aps = [Float](repeating: 0, count: classCount - 1)
        for c in 1..<classCount {
            aps[c - 1] = classAP(c, truths: truths, detections: detections, threshold: 0.5, elevenPoint: metric == .voc07)
        }
        let mean = Float(aps.reduce(0.0) { $0 + Double($1) } / Double(aps.count))
        return APResult(averagePrecisions: aps, meanAveragePrecision: mean, metric: metric)
    }

    /// AP of class `c` under `.voc07` (`elevenPoint`) or `.voc12`.
    static func classAP(_ c: Int, truths: [EvaluationTruth], detections: [[Detection]], threshold: Float,
                        elevenPoint: Bool) -> Float {
        // Objects of class c per image, and how many are not difficult.
        let objects: [[(box: Box, difficult: Bool)]] = truths.map { t in
            t.labels.indices.filter { t.labels[$0] == c }.map { (t.boxes[$0], t.difficult[$0]) }
        }
        let easy = objects.reduce(0) { $0 + $1.filter { !$0.difficult }.count }
        var found: [(image: Int, box: Box, score: Float)] = []
        for (i, d) in detections.enumerated() {
            for detection in d where detection.label == c { found.append((i, detection.box, detection.score)) }
        }
        if found.isEmpty || easy == 0 { return 0 }
        // Stable sort by descending score: ties keep image order.
        found = found.enumerated().sorted { a, b in
            a.element.score > b.element.score || (a.element.score == b.element.score && a.offset < b.offset)
        }.map(\.element)
        var detected = objects.map { [Bool](repeating: false, count: $0.count) }
        var truePositives = [Float](repeating: 0, count: found.count)
        var falsePositives = [Float](repeating: 0, count: found.count)
        for (d, det) in found.enumerated() {
            let candidates = objects[det.image]
            if candidates.isEmpty { falsePositives[d] = 1; continue }
            var best: Float = -1, bestIndex = 0
            for (o, object) in candidates.enumerated() {
                let overlap = det.box.iou(object.box)  // the detection first, as the reference
                if overlap > best { best = overlap; bestIndex = o }
            }
            if best > threshold {
                if candidates[bestIndex].difficult { continue }
                if !detected[det.image][bestIndex] {
                    truePositives[d] = 1
                    detected[det.image][bestIndex] = true
                } else {
                    falsePositives[d] = 1
                }
            } else {
                falsePositives[d] = 1
            }
        }
        // Cumulative precision and recall, in f32 as the reference.
        var precision = [Float](repeating: 0, count: found.count)
        var recall = [Float](repeating: 0, count: found.count)
        var tp: Float = 0, fp: Float = 0
        for d in 0..<found.count {
            tp += truePositives[d]
            fp += falsePositives[d]
            precision[d] = tp / (tp + fp + 1e-10)
            recall[d] = tp / Float(easy)
        }
        if elevenPoint {
            // Max precision at recall ≥ t for t = 0, 0.1, …, 1 (torch.arange(0, 1.1, 0.1) in f32).
            var sum: Double = 0
            for i in 0...10 {
                let t = Float(Double(i) * 0.1)
                var p: Float = 0
                for d in 0..<found.count where recall[d] >= t { p = max(p, precision[d]) }
                sum += Double(p)
            }
            return Float(sum / 11)
        } else {
            // Precision made monotone from the right; area as a sum over recall steps.
            var envelope = precision
            if envelope.count > 1 {
                for d in stride(from: envelope.count - 2, through: 0, by: -1) { envelope[d] = max(envelope[d], envelope[d + 1]) }
            }
            var area: Double = 0, previous: Float = 0
            for d in 0..<found.count where recall[d] > previous {
                area += Double(recall[d] - previous) * Double(envelope[d])
                previous = recall[d]
            }
            return Float(area)
        }
    }
}
