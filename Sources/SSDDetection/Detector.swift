import Foundation
// `Detection` and `Box` live in SSDBoxes, shared with evaluation and drawing; SSDDetection's
// users get them with it.
@_exported import SSDBoxes
import SSDEngine

/// The thresholds and conventions of `detectObjects`. Defaults are the evaluation setting of
/// the reference (min score 0.01, NMS overlap 0.45, top 200); its `detect.py` uses 0.2, 0.5,
/// 200. `torchvisionSSDLite` is torchvision's SSD `postprocess_detections` as
/// `ssdlite320_mobilenet_v3_large` configures it.
public struct DetectionSettings: Equatable, Sendable {
    /// A class's boxes count when their probability is strictly above this.
    public var minScore: Float = 0.01
    /// NMS suppresses a box overlapping a kept box of its class by strictly more than this.
    public var maxOverlap: Float = 0.45
    /// The best this many detections of all classes are kept.
    public var topK: Int = 200
    /// Per class, only the best this many boxes above `minScore` go to NMS (torchvision's
    /// `topk_candidates`); nil: all of them (the tutorial).
    public var candidatesPerClass: Int? = nil
    /// Decoded boxes are clipped to the image, [0, 1], before NMS (torchvision's
    /// `clip_boxes_to_image`); the tutorial does not clip.
    public var clipToImage: Bool = false
    /// How offsets decode against the priors.
    public var coding: BoxCoding = .tutorial
    /// An image with no detection gets the tutorial's placeholder (box (0, 0, 1, 1), label 0,
    /// score 0); false: no detections (torchvision).
    public var placeholderWhenEmpty: Bool = true
    /// Detections come sorted by descending score (torchvision); false: class by class, each
    /// in descending score, sorted only when more than `topK` were found (the tutorial).
    public var sortedByScore: Bool = false

    public init(minScore: Float = 0.01, maxOverlap: Float = 0.45, topK: Int = 200, candidatesPerClass: Int? = nil,
                clipToImage: Bool = false, coding: BoxCoding = .tutorial, placeholderWhenEmpty: Bool = true,
                sortedByScore: Bool = false) {
        self.minScore = minScore
        self.maxOverlap = maxOverlap
        self.topK = topK
        self.candidatesPerClass = candidatesPerClass
        self.clipToImage = clipToImage
        self.coding = coding
        self.placeholderWhenEmpty = placeholderWhenEmpty
        self.sortedByScore = sortedByScore
    }
    /// The reference's `detect.py` setting.
    public static let demo = DetectionSettings(minScore: 0.2, maxOverlap: 0.5, topK: 200)
    /// torchvision's `ssdlite320_mobilenet_v3_large`: score > 0.001, 300 candidates per class,
    /// `BoxCoder((10, 10, 5, 5))` with its log-scale clamp, clipped to the image, per-class NMS
    /// at 0.55, the best 300 kept, sorted by score, nothing when nothing is found.
    public static let torchvisionSSDLite = DetectionSettings(minScore: 0.001, maxOverlap: 0.55, topK: 300,
                                                             candidatesPerClass: 300, clipToImage: true,
                                                             coding: .torchvision(.ssd), placeholderWhenEmpty: false,
                                                             sortedByScore: true)
}

/// The reference's `detect_objects`: softmax over classes, offsets decoded against the
/// priors, then for each non-background class the boxes scoring above `minScore`, sorted by
/// score, greedily suppressed where they overlap a kept box by more than `maxOverlap`; the
/// `topK` best of all classes are kept. An image with nothing above the threshold gets the
/// reference's placeholder: box (0, 0, 1, 1), label 0, score 0. `DetectionSettings` also
/// describes torchvision's SSD post-processing (see `DetectionSettings.torchvisionSSDLite`):
/// boxes are fractions of the image either way (× the image size for torchvision's pixels).
public enum Detector {
    /// Detections for every image of `locs` (N, n_priors, 4) and `scores` (N, n_priors, n_classes).
    public static func detectObjects(locs: Tensor, scores: Tensor, priorsCxcy: [Float],
                                     settings: DetectionSettings = DetectionSettings()) throws -> [[Detection]] {
        let n = locs.dim(0), nPriors = priorsCxcy.count / 4
        guard locs.shape == [n, nPriors, 4], scores.shape.count == 3, scores.dim(0) == n, scores.dim(1) == nPriors else {
            throw DetectionError.shapeMismatch("detect: locs \(locs.shape) and scores \(scores.shape) do not match \(nPriors) priors")
        }
        guard settings.topK > 0, (0...1).contains(settings.maxOverlap), (settings.candidatesPerClass ?? 1) > 0 else {
            throw DetectionError.shapeMismatch("detect: top_k and candidates per class must be positive and max_overlap in [0, 1]")
        }
        var results = [[Detection]](repeating: [], count: n)
        results.withUnsafeMutableBufferPointer { out in
            parallelFor(n) { images in
                for i in images {
                    out[i] = detectImage(locs: locs.data + i * nPriors * 4, scores: scores.data + i * nPriors * scores.dim(2),
                                         classes: scores.dim(2), priorsCxcy: priorsCxcy, settings: settings)
                }
            }
        }
        return results
    }

    static func detectImage(locs: UnsafePointer<Float>, scores: UnsafePointer<Float>, classes: Int, priorsCxcy: [Float],
                            settings: DetectionSettings) -> [Detection] {
        let nPriors = priorsCxcy.count / 4
        var boxes = settings.coding.decode(locs, count: nPriors, priorsCxcy: priorsCxcy)
        if settings.clipToImage { for k in boxes.indices { boxes[k] = min(max(boxes[k], 0), 1) } }
        var probabilities = [Float](repeating: 0, count: nPriors * classes)
        probabilities.withUnsafeMutableBufferPointer { out in
            for p in 0..<nPriors { Softmax.probabilities(scores + p * classes, count: classes, into: out.baseAddress! + p * classes) }
        }
        var found: [Detection] = []
        var order: [UInt64] = []
        // Boundary boxes kept so far in this class, four floats each: NMS runs on flat arrays for
        // speed, with `Box.iou`'s arithmetic written out (candidate first, kept box second).
        var kept: [Float] = []
        // A class keeps at most one box per prior, so a top k beyond that (a user's 10^10) means
        // "all" and must not size any allocation.
        let perClass = min(settings.topK, nPriors)
        order.reserveCapacity(nPriors)
        kept.reserveCapacity(4 * perClass)
        for c in 1..<classes {
            // Candidates keyed by descending score: a positive float's bits order as the float
            // does, so (inverted score bits, prior) keys order by score, ties by prior.
            order.removeAll(keepingCapacity: true)
            for p in 0..<nPriors where probabilities[p * classes + c] > settings.minScore {
                order.append(UInt64(~probabilities[p * classes + c].bitPattern) << 32 | UInt64(p))
            }
            if order.isEmpty { continue }
            // A min-heap of the keys: candidates come out best first, and only as many as NMS
            // needs (usually far fewer than pass the threshold) are ever ordered.
            var heap = KeyHeap(order)
            // Greedy NMS, checked lazily: a candidate survives unless it overlaps a kept box by
            // more than maxOverlap (suppressed boxes suppress nothing, so this is the same as
            // suppressing forward from each kept box).
            kept.removeAll(keepingCapacity: true)
            // torchvision's `topk_candidates`: only the best candidates of the class meet NMS.
            var candidatesLeft = settings.candidatesPerClass ?? Int.max
            while candidatesLeft > 0, let key = heap.popMinimum() {
                candidatesLeft -= 1
                let p = Int(key & 0xFFFF_FFFF)
                let x1 = boxes[4 * p], y1 = boxes[4 * p + 1], x2 = boxes[4 * p + 2], y2 = boxes[4 * p + 3]
                let area = (x2 - x1) * (y2 - y1)
                var suppressed = false
                var k = 0
                while k < kept.count {
                    let w = max(min(x2, kept[k + 2]) - max(x1, kept[k]), 0)
                    let h = max(min(y2, kept[k + 3]) - max(y1, kept[k + 1]), 0)
                    let inter = w * h
                    let keptArea = (kept[k + 2] - kept[k]) * (kept[k + 3] - kept[k + 1])
                    if inter / (area + keptArea - inter) > settings.maxOverlap { suppressed = true; break }
                    k += 4
                }
                if suppressed { continue }
                kept += [x1, y1, x2, y2]
                found.append(Detection(box: Box(x1, y1, x2, y2), label: c, score: probabilities[p * classes + c]))
                // A class's later boxes all score below its `topK` kept ones: they can never
                // enter the final top k, so stop here.
                if kept.count == 4 * perClass { break }
            }
        }
        if found.isEmpty { return settings.placeholderWhenEmpty ? [Detection(box: Box(0, 0, 1, 1), label: 0, score: 0)] : [] }
        if found.count > settings.topK || settings.sortedByScore {
            found.sort { $0.score > $1.score }
            if found.count > settings.topK { found.removeLast(found.count - settings.topK) }
        }
        return found
    }
}

/// A binary min-heap of 64-bit keys, built in place in O(n).
struct KeyHeap {
    private var keys: [UInt64]

    init(_ keys: [UInt64]) {
        self.keys = keys
        if keys.count > 1 {
            for i in stride(from: keys.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }
    }

    /// The smallest key, removed; nil when empty.
    mutating func popMinimum() -> UInt64? {
        guard let first = keys.first else { return nil }
        let last = keys.removeLast()
        if !keys.isEmpty {
            keys[0] = last
            siftDown(0)
        }
        return first
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = keys.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && keys[l] < keys[m] { m = l }
            if r < n && keys[r] < keys[m] { m = r }
            if m == i { return }
            keys.swapAt(i, m)
            i = m
        }
    }
}
