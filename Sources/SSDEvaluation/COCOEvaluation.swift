import SSDBoxes

/// `APMetric.coco`: pycocotools' `COCOeval` for boxes (iouType "bbox", area range "all",
/// at most 100 detections per image and class), arithmetic in Double as its float64.
enum COCOEvaluation {
    /// np.linspace(.5, .95, 10) as numpy computes it (start + k·step, the last one exact): the
    /// ninth is 0.8999999999999999, not 0.9, so an IoU of exactly 0.9 passes it.
    static let iouThresholds: [Double] = (0..<10).map { (k: Int) -> Double in
        let step: Double = (0.95 - 0.5) / 9
        return k == 9 ? 0.95 : Double(k) * step + 0.5
    }
    /// np.linspace(0, 1, 101) likewise: k·0.01, which is not always k/100 (70·0.01 is
    /// 0.7000000000000001), so a recall of exactly 7/10 misses the point "0.70" as it does there.
    static let recallThresholds: [Double] = (0...100).map { (k: Int) -> Double in
        let step: Double = 1.0 / 100
        return k == 100 ? 1 : Double(k) * step
    }
    static let maxDetections = 100
    /// Area range "all", [0², 1e5²]: objects outside it (a negative area is an inverted box)
    /// are ignored, and so are detections outside it that match nothing.
    static let areaRange = 0.0...1e10

    /// What a detection counts as at one IoU threshold.
    enum Outcome: UInt8 { case truePositive, falsePositive, ignored }

    /// One image's detections of one class after matching: score, and outcome per threshold.
    struct Matched {
        var score: Float
        var outcomes: [Outcome]
    }

    /// A box in pycocotools' form (x, y, w, h) with w and h in Double: its IoU computes x + w
    /// where we hold x_max, and doing the same keeps the two bit-identical.
    struct XYWH {
        var x, y, w, h: Double
        init(_ b: Box) {
            x = Double(b.xMin)
            y = Double(b.yMin)
            w = Double(b.xMax) - x
            h = Double(b.yMax) - y
        }
        var area: Double { w * h }

        /// pycocotools' bbIou of detection `self` with ground truth `g`: 0 without overlap; a
        /// crowd region divides by the detection's area alone (a detection inside it scores 1).
        func overlap(_ g: XYWH, crowd: Bool) -> Double {
            let iw = min(x + w, g.x + g.w) - max(x, g.x)
            if iw <= 0 { return 0 }
            let ih = min(y + h, g.y + g.h) - max(y, g.y)
            if ih <= 0 { return 0 }
            let i = iw * ih
            return i / (crowd ? area : area + g.area - i)
        }
    }

    /// AP of classes 1..<classCount; nil for a class without an object that is not difficult
    /// (pycocotools' −1, left out of the mean).
    static func averagePrecisions(truths: [EvaluationTruth], detections: [[Detection]], classCount: Int) -> [Double?] {
        var matched = [[Matched]](repeating: [], count: classCount)
        var counted = [Int](repeating: 0, count: classCount)  // objects not ignored
        for (truth, found) in zip(truths, detections) {
            var objects = [[(box: XYWH, crowd: Bool)]](repeating: [], count: classCount)
            for (o, label) in truth.labels.enumerated() where label >= 1 && label < classCount {
                objects[label].append((XYWH(truth.boxes[o]), truth.difficult[o]))
            }
            var candidates = [[Detection]](repeating: [], count: classCount)
            for d in found where d.label >= 1 && d.label < classCount { candidates[d.label].append(d) }
            for c in 1..<classCount where !objects[c].isEmpty || !candidates[c].isEmpty {
                let (results, notIgnored) = match(objects: objects[c], detections: candidates[c])
                matched[c] += results
                counted[c] += notIgnored
            }
        }
        return (0..<classCount).dropFirst().map { c in
            counted[c] == 0 ? nil : accumulate(matched[c], objects: counted[c])
        }
    }

    /// pycocotools' evaluateImg for one image and class: detections by descending score (ties
    /// in their order), the first 100; objects not ignored first; at each threshold every
    /// detection in turn takes the object of highest IoU ≥ threshold that is still free — a
    /// crowd (difficult) region stays free — with a later object winning a tie in IoU, and
    /// once it holds an object that is not ignored it looks no further at ignored ones.
    /// Returns the detections' outcomes and the number of objects not ignored.
    static func match(objects: [(box: XYWH, crowd: Bool)], detections: [Detection]) -> ([Matched], Int) {
        let order = objects.indices.filter { !ignored(objects[$0]) } + objects.indices.filter { ignored(objects[$0]) }
        let gts = order.map { objects[$0] }
        let notIgnored = order.count - gts.filter(ignored).count
        let dts = detections.indices.sorted { a, b in
            detections[a].score > detections[b].score || (detections[a].score == detections[b].score && a < b)
        }.prefix(maxDetections).map { detections[$0] }
        let boxes = dts.map { XYWH($0.box) }
        let ious = boxes.map { d in gts.map { d.overlap($0.box, crowd: $0.crowd) } }
        var outcomes = [[Outcome]](repeating: [], count: dts.count)
        for t in iouThresholds {
            var taken = [Bool](repeating: false, count: gts.count)
            for d in dts.indices {
                var best = min(t, 1 - 1e-10), m = -1
                for g in gts.indices {
                    if taken[g] && !gts[g].crowd { continue }
                    if m > -1 && !ignored(gts[m]) && ignored(gts[g]) { break }
                    if ious[d][g] < best { continue }
                    best = ious[d][g]
                    m = g
                }
                if m == -1 {
                    outcomes[d].append(areaRange.contains(boxes[d].area) ? .falsePositive : .ignored)
                } else {
                    taken[m] = true
                    outcomes[d].append(ignored(gts[m]) ? .ignored : .truePositive)
                }
            }
        }
        return (zip(dts, outcomes).map { Matched(score: $0.score, outcomes: $1) }, notIgnored)
    }

    /// A difficult object is a crowd region, ignored; so is one whose area is out of range.
    static func ignored(_ object: (box: XYWH, crowd: Bool)) -> Bool {
        object.crowd || !areaRange.contains(object.box.area)
    }

    /// pycocotools' accumulate for one class: the images' detections (in image order) sorted
    /// by descending score, ties kept in that order (its stable mergesort); per threshold,
    /// cumulative counts, recall = tp/objects, precision = tp/(tp+fp+ε), precision made
    /// non-increasing from the right and read at the first detection whose recall reaches each
    /// of the 101 recall points (0 past the last); AP is the mean over thresholds and points.
    static func accumulate(_ matched: [Matched], objects: Int) -> Double {
        let sorted = matched.indices.sorted { a, b in
            matched[a].score > matched[b].score || (matched[a].score == matched[b].score && a < b)
        }.map { matched[$0] }
        var sum = 0.0
        for t in iouThresholds.indices {
            var tp = 0.0, fp = 0.0
            var recall = [Double](), precision = [Double]()
            recall.reserveCapacity(sorted.count)
            precision.reserveCapacity(sorted.count)
            for d in sorted {
                switch d.outcomes[t] {
                case .truePositive: tp += 1
                case .falsePositive: fp += 1
                case .ignored: break
                }
                recall.append(tp / Double(objects))
                precision.append(tp / (fp + tp + Double.ulpOfOne))  // np.spacing(1)
            }
            for i in stride(from: precision.count - 1, to: 0, by: -1) where precision[i] > precision[i - 1] {
                precision[i - 1] = precision[i]
            }
            var i = 0
            for r in recallThresholds {
                while i < recall.count && recall[i] < r { i += 1 }  // np.searchsorted(side="left")
                if i == recall.count { break }
                sum += precision[i]
            }
        }
        return sum / Double(iouThresholds.count * recallThresholds.count)
    }
}
