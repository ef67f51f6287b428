import Foundation
import SSDEngine

/// Ground truth of one image: boundary boxes (fractional, four floats each) and labels
/// (1…n_classes−1; 0 is background).
public struct GroundTruth: Equatable, Sendable {
    public var boxes: [Float]
    public var labels: [Int]
    public init(boxes: [Float], labels: [Int]) {
        self.boxes = boxes
        self.labels = labels
    }
    public var count: Int { labels.count }
}

/// Errors in loss inputs, naming the image and object.
public enum DetectionError: Error, CustomStringConvertible, Equatable {
    case invalidGroundTruth(image: Int, message: String)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case let .invalidGroundTruth(image, message): return "ground truth of image \(image): \(message)"
        case let .shapeMismatch(message): return message
        }
    }
}

/// The matching targets of one image: a class per prior (0 = background) and encoded offsets.
public struct MatchTargets {
    /// (n_priors): each prior's class.
    public var classes: [Int]
    /// (n_priors, 4): each prior's matched object, encoded against the prior.
    public var locations: [Float]
}

/// How the localisation loss is computed.
public enum LocalizationLoss: String, Sendable, CaseIterable {
    /// The reference's: plain L1, averaged over positives × 4 coordinates.
    case l1
    /// The SSD paper's: Smooth L1 (β = 1) summed over positives, divided by their number.
    case smoothL1 = "smooth-l1"
}

/// SSD's MultiBox loss, as the reference computes it, with its backward.
///
/// Matching: each prior takes the object it overlaps most; each object is then forced onto
/// the prior it overlaps most; priors whose overlap is below `threshold` become background.
/// Confidence loss: cross entropy over positives plus the `negativePositiveRatio × n_pos`
/// hardest negatives of each image, divided by the total number of positives.
/// Total: confidence + alpha × localisation.
public final class MultiBoxLoss {
    /// (n_priors, 4) centre-size priors.
    public let priorsCxcy: [Float]
    /// (n_priors, 4) boundary priors.
    public let priorsXy: [Float]
    public var threshold: Float = 0.5
    public var negativePositiveRatio: Int = 3
    public var alpha: Float = 1
    public var localization: LocalizationLoss = .l1

    /// Components of the last `compute`.
    public private(set) var lastConfidenceLoss: Float = 0
    public private(set) var lastLocalizationLoss: Float = 0
    public private(set) var lastPositives: Int = 0

    public var priorCount: Int { priorsCxcy.count / 4 }

    public init(priorsCxcy: [Float]) {
        self.priorsCxcy = priorsCxcy
        self.priorsXy = Boxes.cxcyToXy(priorsCxcy)
    }

    /// Checks one image's ground truth: labels in range, boxes finite with positive extent.
    public func validate(_ truth: GroundTruth, image: Int, classes: Int) throws {
        guard truth.boxes.count == 4 * truth.labels.count else {
            throw DetectionError.invalidGroundTruth(image: image, message: "\(truth.boxes.count) box coordinates for \(truth.labels.count) labels")
        }
        for o in 0..<truth.count {
            let b = truth.boxes[(4 * o)..<(4 * o + 4)].map { $0 }
            guard b.allSatisfy({ $0.isFinite }), b[2] > b[0], b[3] > b[1] else {
                throw DetectionError.invalidGroundTruth(image: image, message: "object \(o) has an empty or non-finite box \(b)")
            }
            guard truth.labels[o] > 0, truth.labels[o] < classes else {
                throw DetectionError.invalidGroundTruth(image: image, message: "object \(o) has label \(truth.labels[o]), outside 1..<\(classes)")
            }
        }
    }

    /// The reference's matching for one image.
    public func match(_ truth: GroundTruth) -> MatchTargets {
        let nPriors = priorCount, nObjects = truth.count
        var classes = [Int](repeating: 0, count: nPriors)
        var locations = [Float](repeating: 0, count: 4 * nPriors)
        guard nObjects > 0 else { return MatchTargets(classes: classes, locations: locations) }
        // (n_objects, n_priors) overlaps.
        let overlap = Boxes.jaccard(truth.boxes, priorsXy)
        var bestOverlap = [Float](repeating: 0, count: nPriors)
        var bestObject = [Int](repeating: 0, count: nPriors)
        for p in 0..<nPriors {
            var best = overlap[p], arg = 0
            for o in 1..<nObjects where overlap[o * nPriors + p] > best { best = overlap[o * nPriors + p]; arg = o }
            bestOverlap[p] = best
            bestObject[p] = arg
        }
        // Each object onto its best prior (first maximum), in object order: a later object
        // wins a prior two objects share, as PyTorch's index assignment does.
        for o in 0..<nObjects {
            var best = overlap[o * nPriors], arg = 0
            for p in 1..<nPriors where overlap[o * nPriors + p] > best { best = overlap[o * nPriors + p]; arg = p }
            bestObject[arg] = o
            bestOverlap[arg] = 1
        }
        let objectsCxcy = Boxes.xyToCxcy(truth.boxes)
        for p in 0..<nPriors {
            let o = bestObject[p]
            classes[p] = bestOverlap[p] < threshold ? 0 : truth.labels[o]
            let i = 4 * p, j = 4 * o
            locations[i] = (objectsCxcy[j] - priorsCxcy[i]) / (priorsCxcy[i + 2] / 10)
            locations[i + 1] = (objectsCxcy[j + 1] - priorsCxcy[i + 1]) / (priorsCxcy[i + 3] / 10)
            locations[i + 2] = logf(objectsCxcy[j + 2] / priorsCxcy[i + 2]) * 5
            locations[i + 3] = logf(objectsCxcy[j + 3] / priorsCxcy[i + 3]) * 5
        }
        return MatchTargets(classes: classes, locations: locations)
    }

    /// The loss for predicted offsets `locs` (N, n_priors, 4) and class scores `scores`
    /// (N, n_priors, n_classes). When `gradLocs`/`gradScores` are given (same shapes), writes
    /// d loss / d locs and d loss / d scores into them (overwriting).
    public func compute(locs: Tensor, scores: Tensor, truths: [GroundTruth],
                        gradLocs: Tensor? = nil, gradScores: Tensor? = nil) throws -> Float {
        let n = locs.dim(0), nPriors = priorCount
        guard locs.shape == [n, nPriors, 4], scores.dim(0) == n, scores.shape.count == 3, scores.dim(1) == nPriors else {
            throw DetectionError.shapeMismatch("MultiBox loss: locs \(locs.shape) and scores \(scores.shape) do not match \(nPriors) priors")
        }
        let nClasses = scores.dim(2)
        guard truths.count == n else {
            throw DetectionError.shapeMismatch("MultiBox loss: \(truths.count) ground truths for a batch of \(n)")
        }
        if let g = gradLocs { try g.requireShape(locs.shape, "MultiBox loss gradient of locs") }
        if let g = gradScores { try g.requireShape(scores.shape, "MultiBox loss gradient of scores") }
        for (i, t) in truths.enumerated() { try validate(t, image: i, classes: nClasses) }

        // Per image: targets, per-prior cross entropy, and which priors count.
        var targets = [MatchTargets?](repeating: nil, count: n)
        var selected = [[Int]](repeating: [], count: n)   // positives and hard negatives
        var confSums = [Double](repeating: 0, count: n)
        var locSums = [Double](repeating: 0, count: n)
        var positives = [Int](repeating: 0, count: n)
        let locsP = locs.data, scoresP = scores.data
        let kind = localization
        let ratio = negativePositiveRatio
        targets.withUnsafeMutableBufferPointer { targetsB in
        selected.withUnsafeMutableBufferPointer { selectedB in
        confSums.withUnsafeMutableBufferPointer { confB in
        locSums.withUnsafeMutableBufferPointer { locB in
        positives.withUnsafeMutableBufferPointer { posB in
            parallelFor(n) { images in
                for i in images {
                    let t = self.match(truths[i])
                    targetsB[i] = t
                    var ce = [Float](repeating: 0, count: nPriors)
                    var nPos = 0
                    var confPos: Float = 0
                    var locSum: Float = 0
                    for p in 0..<nPriors {
                        let row = scoresP + (i * nPriors + p) * nClasses
                        var m = row[0]
                        for c in 1..<nClasses { m = max(m, row[c]) }
                        var s: Float = 0
                        for c in 0..<nClasses { s += expf(row[c] - m) }
                        ce[p] = (logf(s) + m) - row[t.classes[p]]
                        if t.classes[p] != 0 {
                            nPos += 1
                            confPos += ce[p]
                            for k in 0..<4 {
                                let d = locsP[(i * nPriors + p) * 4 + k] - t.locations[4 * p + k]
                                switch kind {
                                case .l1: locSum += abs(d)
                                case .smoothL1: locSum += abs(d) < 1 ? 0.5 * d * d : abs(d) - 0.5
                                }
                            }
                        }
                    }
                    // Hard negatives: the highest-loss background priors, 3 per positive. Cross
                    // entropies are non-negative, so their bits order as they do: (inverted bits,
                    // prior) keys sort by descending loss, ties by prior, in integer compares.
                    var negatives: [UInt64] = []
                    negatives.reserveCapacity(nPriors)
                    for p in 0..<nPriors where t.classes[p] == 0 {
                        negatives.append(UInt64(~max(ce[p], 0).bitPattern) << 32 | UInt64(p))
                    }
                    let nHard = min(ratio * nPos, negatives.count)
                    negatives.sort()
                    var confNeg: Float = 0
                    var chosen = (0..<nPriors).filter { t.classes[$0] != 0 }
                    for q in 0..<nHard {
                        let p = Int(negatives[q] & 0xFFFF_FFFF)
                        confNeg += ce[p]
                        chosen.append(p)
                    }
                    selectedB[i] = chosen
                    confB[i] = Double(confPos) + Double(confNeg)
                    locB[i] = Double(locSum)
                    posB[i] = nPos
                }
            }
        }}}}}

        let totalPositives = positives.reduce(0, +)
        guard totalPositives > 0 else {
            throw DetectionError.invalidGroundTruth(image: 0, message: "the batch has no objects, so the loss is undefined")
        }
        let nPos = Float(totalPositives)
        let confLoss = Float(confSums.reduce(0, +)) / nPos
        let locDenominator = kind == .l1 ? nPos * 4 : nPos
        let locLoss = Float(locSums.reduce(0, +)) / locDenominator
        lastConfidenceLoss = confLoss
        lastLocalizationLoss = locLoss
        lastPositives = totalPositives

        if let gradLocs, let gradScores {
            gradLocs.zero()
            gradScores.zero()
            let gl = gradLocs.data, gs = gradScores.data
            let locScale = alpha / locDenominator
            parallelFor(n) { images in
                for i in images {
                    let t = targets[i]!
                    for p in selected[i] {
                        let row = scoresP + (i * nPriors + p) * nClasses
                        let grow = gs + (i * nPriors + p) * nClasses
                        var m = row[0]
                        for c in 1..<nClasses { m = max(m, row[c]) }
                        var s: Float = 0
                        for c in 0..<nClasses { s += expf(row[c] - m) }
                        for c in 0..<nClasses { grow[c] = expf(row[c] - m) / s / nPos }
                        grow[t.classes[p]] -= 1 / nPos
                        guard t.classes[p] != 0 else { continue }
                        for k in 0..<4 {
                            let d = locsP[(i * nPriors + p) * 4 + k] - t.locations[4 * p + k]
                            let g: Float
                            switch kind {
                            case .l1: g = d > 0 ? 1 : (d < 0 ? -1 : 0)
                            case .smoothL1: g = abs(d) < 1 ? d : (d > 0 ? 1 : -1)
                            }
                            gl[(i * nPriors + p) * 4 + k] = g * locScale
                        }
                    }
                }
            }
        }
        return confLoss + alpha * locLoss
    }
}
