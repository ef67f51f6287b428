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
    /// COCO-style: AP over 101 recall points, averaged over IoU thresholds 0.50:0.05:0.95;
    /// difficult objects are ignored (neither required nor penalised).
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
    /// AP of classes 1…classCount−1 (index 0 is class 1).
    public var averagePrecisions: [Float]
    public var meanAveragePrecision: Float
    public var metric: APMetric
}

public enum MeanAveragePrecision {
    /// Average precision of every non-background class (1..<classCount) and their mean, as the
    /// reference computes it for `.voc07`: detections of a class sorted by score; each matches
    /// the ground-truth object of its class and image it overlaps most; IoU > threshold with an
    /// object not yet matched is a true positive, with one already matched a false positive;
    /// a best match that is difficult counts as neither; no match is a false positive.
    /// Classes without detections get AP 0 and count in the mean, as in the reference.
    /// `detections[i]` are image i's, in the boxes' units of `truths[i]`.
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
        var aps = [Float](repeating: 0, count: classCount - 1)
        for c in 1..<classCount {
            switch metric {
            case .voc07, .voc12:
                aps[c - 1] = classAP(c, truths: truths, detections: detections, threshold: 0.5, metric: metric)
            case .coco:
                var sum = 0.0
                for k in 0..<10 {
                    sum += Double(classAP(c, truths: truths, detections: detections, threshold: Float(0.5 + 0.05 * Double(k)),
                                          metric: .coco))
                }
                aps[c - 1] = Float(sum / 10)
            }
        }
        let mean = Float(aps.reduce(0.0) { $0 + Double($1) } / Double(aps.count))
        return APResult(averagePrecisions: aps, meanAveragePrecision: mean, metric: metric)
    }

    static func classAP(_ c: Int, truths: [EvaluationTruth], detections: [[Detection]], threshold: Float,
                        metric: APMetric) -> Float {
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
                // COCO matches each detection to the best object still free (difficult ones last).
                if metric == .coco && detected[det.image][o] { continue }
                let overlap = det.box.iou(object.box)  // the detection first, as the reference
                if overlap > best { best = overlap; bestIndex = o }
            }
            if metric == .coco {
                if best >= threshold {
                    if candidates[bestIndex].difficult { continue }  // ignored
                    truePositives[d] = 1
                    detected[det.image][bestIndex] = true
                } else {
                    falsePositives[d] = 1
                }
                continue
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
        switch metric {
        case .voc07:
            // Max precision at recall ≥ t for t = 0, 0.1, …, 1 (torch.arange(0, 1.1, 0.1) in f32).
            var sum: Double = 0
            for i in 0...10 {
                let t = Float(Double(i) * 0.1)
                var p: Float = 0
                for d in 0..<found.count where recall[d] >= t { p = max(p, precision[d]) }
                sum += Double(p)
            }
            return Float(sum / 11)
        case .voc12:
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
        case .coco:
            var envelope = precision
            if envelope.count > 1 {
                for d in stride(from: envelope.count - 2, through: 0, by: -1) { envelope[d] = max(envelope[d], envelope[d + 1]) }
            }
            var sum: Double = 0
            var d = 0
            for r in 0...100 {
                let t = Float(Double(r) / 100)
                while d < found.count && recall[d] < t { d += 1 }
                if d < found.count { sum += Double(envelope[d]) }
            }
            return Float(sum / 101)
        }
    }
}
