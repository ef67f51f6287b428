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
    /// The SSD paper's (and torchvision's): Smooth L1 (β = 1) summed over positives, divided by their number.
    case smoothL1 = "smooth-l1"
}

/// Whose SSD loss `MultiBoxLoss` computes.
public enum LossConvention: String, Sendable, CaseIterable {
    /// The tutorial's `MultiBoxLoss`: its coding of targets, L1 localisation by default. An
    /// image without objects contributes nothing (no positives, so no hard negatives); a batch
    /// without any object, where the reference divides 0 by 0, has loss 0 and zero gradients.
    case tutorial
    /// torchvision's `SSD.compute_loss`: `SSDMatcher` (IoU ≥ threshold, plus each object's best
    /// prior), `BoxCoder((10, 10, 5, 5))` targets, Smooth L1 summed over the foreground and cross
    /// entropy over the foreground and 3 hard negatives per foreground prior of each image, both
    /// divided by N = max(1, foreground priors in the batch) — a batch without objects has loss 0.
    case torchvision
}

/// The two terms of the loss, unweighted. torchvision calls them `bbox_regression` and `classification`.
public struct MultiBoxLossTerms: Equatable, Sendable {
    /// Localisation: L1 or Smooth L1 over the positives, divided as `LocalizationLoss` says.
    public var localization: Float
    /// Confidence: cross entropy over positives and hard negatives, divided by the positives.
    public var confidence: Float
    /// Positive (foreground) priors in the batch.
    public var positives: Int

    public init(localization: Float, confidence: Float, positives: Int) {
        self.localization = localization
        self.confidence = confidence
        self.positives = positives
    }
}

/// SSD's MultiBox loss, as the reference (or torchvision, see `LossConvention`) computes it,
/// with its backward.
///
/// Matching: each prior takes the object it overlaps most; each object is then forced onto
/// the prior it overlaps most; priors whose overlap is below `threshold` become background.
/// (This is torchvision's `SSDMatcher` too.) Confidence loss: cross entropy over positives plus
/// the `negativePositiveRatio × n_pos` hardest negatives of each image, divided by the total
/// number of positives. Total: confidence + alpha × localisation.
///
/// Everything is fractional: priors centre-size, ground truth boundary boxes in [0, 1]. IoU and
/// the coding are scale invariant, so torchvision's pixel computation gives the same up to rounding.
public final class MultiBoxLoss {
    /// (n_priors, 4) centre-size priors.
    public let priorsCxcy: [Float]
    /// (n_priors, 4) boundary priors.
    public let priorsXy: [Float]
    public let convention: LossConvention
    public var threshold: Float = 0.5
    public var negativePositiveRatio: Int = 3
    public var alpha: Float = 1
    /// `.l1` for the tutorial convention, `.smoothL1` for torchvision's.
    public var localization: LocalizationLoss
    /// The torchvision convention's target coding.
    public var coder: BoxCoder = .ssd

    /// Data-parallel training: when set, it must replace `[confidence sum, localisation sum,
    /// positives]` of this replica's images with their sum over every replica (the same result
    /// on every replica). The loss and the gradients are then divided by the whole job's
    /// positives, so each replica's gradients are its share of the global batch's gradient and
    /// the returned loss is the global batch's.
    public var replicaSum: ((inout [Double]) throws -> Void)?

    /// Components of the last `compute`.
    public private(set) var lastConfidenceLoss: Float = 0
    public private(set) var lastLocalizationLoss: Float = 0
    public private(set) var lastPositives: Int = 0

    public var priorCount: Int { priorsCxcy.count / 4 }

    public init(priorsCxcy: [Float], convention: LossConvention = .tutorial) {
        self.priorsCxcy = priorsCxcy
        self.priorsXy = Boxes.cxcyToXy(priorsCxcy)
        self.convention = convention
        self.localization = convention == .tutorial ? .l1 : .smoothL1
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

    // MARK: Matching

    /// Each prior's object, and whether it is foreground: the object it overlaps most (first
    /// maximum), except that each object, in order, takes the prior it overlaps most (a later
    /// object wins a prior two share, as PyTorch's index assignment does); foreground where
    /// that overlap is at least `threshold` or the prior was taken. With no objects, nothing.
    public func assign(_ truth: GroundTruth) -> (objects: [Int], foreground: [Bool]) {
        let nPriors = priorCount, nObjects = truth.count
        guard nObjects > 0 else { return ([Int](repeating: 0, count: nPriors), [Bool](repeating: false, count: nPriors)) }
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
        for o in 0..<nObjects {
            var best = overlap[o * nPriors], arg = 0
            for p in 1..<nPriors where overlap[o * nPriors + p] > best { best = overlap[o * nPriors + p]; arg = p }
            bestObject[arg] = o
            bestOverlap[arg] = 1
        }
        return (bestObject, bestOverlap.map { !($0 < threshold) })
    }

    /// The matching targets of one image: each prior's class (0 = background) and its object
    /// encoded against it (the tutorial's coding, or `coder` for torchvision's; background
    /// priors carry their best object's code too, as the reference's `true_locs` do).
    public func match(_ truth: GroundTruth) -> MatchTargets {
        let nPriors = priorCount
        var classes = [Int](repeating: 0, count: nPriors)
        var locations = [Float](repeating: 0, count: 4 * nPriors)
        guard truth.count > 0 else { return MatchTargets(classes: classes, locations: locations) }
        let (objects, foreground) = assign(truth)
        switch convention {
        case .tutorial:
            let objectsCxcy = Boxes.xyToCxcy(truth.boxes)
            for p in 0..<nPriors {
                Boxes.encodeOne(objectsCxcy, objects[p], priors: priorsCxcy, prior: p, into: &locations, at: 4 * p)
            }
        case .torchvision:
            for p in 0..<nPriors { coder.encode(truth.boxes, objects[p], priorsCxcy: priorsCxcy, p, into: &locations, at: 4 * p) }
        }
        for p in 0..<nPriors where foreground[p] { classes[p] = truth.labels[objects[p]] }
        return MatchTargets(classes: classes, locations: locations)
    }

    // MARK: Localisation

    /// Σ over positive priors and their 4 coordinates of L1 or Smooth L1, summed in f32.
    func localizationSum(_ locs: UnsafePointer<Float>, _ t: MatchTargets) -> Float {
        var sum: Float = 0
        for p in t.classes.indices where t.classes[p] != 0 {
            for k in 0..<4 {
                let d = locs[4 * p + k] - t.locations[4 * p + k]
                switch localization {
                case .l1: sum += abs(d)
                case .smoothL1: sum += abs(d) < 1 ? 0.5 * d * d : abs(d) - 0.5
                }
            }
        }
        return sum
    }

    /// The localisation term's divisor: 4·n_pos for L1 (a mean), n_pos for Smooth L1.
    func localizationDenominator(positives: Int) -> Float {
        localization == .l1 ? Float(positives) * 4 : Float(positives)
    }

    /// d(localisation sum)/d locs of one positive coordinate.
    @inline(__always)
    func localizationDerivative(_ d: Float) -> Float {
        switch localization {
        case .l1: return d > 0 ? 1 : (d < 0 ? -1 : 0)
        case .smoothL1: return abs(d) < 1 ? d : (d > 0 ? 1 : -1)
        }
    }

    // MARK: Confidence

    /// One image's confidence sum (positives in prior order, then the hard negatives) and the
    /// priors it covers: positives, then the `negativePositiveRatio × n_pos` background priors
    /// of highest cross entropy (ties by prior).
    func confidenceTerm(_ scores: UnsafePointer<Float>, classes nClasses: Int, _ t: MatchTargets)
        -> (sum: Double, positives: Int, selected: [Int]) {
        let nPriors = t.classes.count
        var ce = [Float](repeating: 0, count: nPriors)
        var nPos = 0
        var confPos: Float = 0
        for p in 0..<nPriors {
            ce[p] = Softmax.crossEntropy(scores + p * nClasses, count: nClasses, target: t.classes[p])
            if t.classes[p] != 0 {
                nPos += 1
                confPos += ce[p]
            }
        }
        // Cross entropies are non-negative, so their bits order as they do: (inverted bits,
        // prior) keys sort by descending loss, ties by prior, in integer compares.
        var negatives: [UInt64] = []
        negatives.reserveCapacity(nPriors)
        for p in 0..<nPriors where t.classes[p] == 0 {
            negatives.append(UInt64(~max(ce[p], 0).bitPattern) << 32 | UInt64(p))
        }
        let nHard = min(negativePositiveRatio * nPos, negatives.count)
        negatives.sort()
        var confNeg: Float = 0
        var chosen = (0..<nPriors).filter { t.classes[$0] != 0 }
        for q in 0..<nHard {
            let p = Int(negatives[q] & 0xFFFF_FFFF)
            confNeg += ce[p]
            chosen.append(p)
        }
        return (Double(confPos) + Double(confNeg), nPos, chosen)
    }

    // MARK: The loss

    /// The loss terms for predicted offsets `locs` (N, n_priors, 4) and class scores `scores`
    /// (N, n_priors, n_classes). When `gradLocs`/`gradScores` are given (same shapes), writes
    /// d (confidence + alpha × localisation) / d locs and / d scores into them (overwriting).
    public func computeTerms(locs: Tensor, scores: Tensor, truths: [GroundTruth],
                             gradLocs: Tensor? = nil, gradScores: Tensor? = nil) throws -> MultiBoxLossTerms {
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

        // Per image: targets, the confidence and localisation sums, and which priors count.
        var targets = [MatchTargets?](repeating: nil, count: n)
        var selected = [[Int]](repeating: [], count: n)   // positives and hard negatives
        var confSums = [Double](repeating: 0, count: n)
        var locSums = [Double](repeating: 0, count: n)
        var positives = [Int](repeating: 0, count: n)
        let locsP = locs.data, scoresP = scores.data
        targets.withUnsafeMutableBufferPointer { targetsB in
        selected.withUnsafeMutableBufferPointer { selectedB in
        confSums.withUnsafeMutableBufferPointer { confB in
        locSums.withUnsafeMutableBufferPointer { locB in
        positives.withUnsafeMutableBufferPointer { posB in
            parallelFor(n) { images in
                for i in images {
                    let t = self.match(truths[i])
                    targetsB[i] = t
                    let conf = self.confidenceTerm(scoresP + i * nPriors * nClasses, classes: nClasses, t)
                    selectedB[i] = conf.selected
                    confB[i] = conf.sum
                    posB[i] = conf.positives
                    locB[i] = Double(self.localizationSum(locsP + i * nPriors * 4, t))
                }
            }
        }}}}}

        var totals = [confSums.reduce(0, +), locSums.reduce(0, +), Double(positives.reduce(0, +))]
        try replicaSum?(&totals)
        let totalPositives = Int(totals[2])
        // torchvision: N = max(1, n_pos); without positives nothing is selected and both sums
        // are 0. The tutorial's 0 / 0 for a batch of negatives is given the same value, 0, so a
        // data set with images without objects trains.
        let nPos = Float(max(totalPositives, 1))
        let confLoss = Float(totals[0]) / nPos
        let locDenominator = localizationDenominator(positives: max(totalPositives, 1))
        let locLoss = Float(totals[1]) / locDenominator
        lastConfidenceLoss = confLoss
        lastLocalizationLoss = locLoss
        lastPositives = totalPositives

        if let gradLocs, let gradScores {
            writeGradients(locs: locs, scores: scores, targets: targets.map { $0! }, selected: selected,
                           confidenceDivisor: nPos, localizationScale: alpha / locDenominator,
                           gradLocs: gradLocs, gradScores: gradScores)
        }
        return MultiBoxLossTerms(localization: locLoss, confidence: confLoss, positives: totalPositives)
    }

    /// The loss: confidence + alpha × localisation (see `computeTerms`).
    public func compute(locs: Tensor, scores: Tensor, truths: [GroundTruth],
                        gradLocs: Tensor? = nil, gradScores: Tensor? = nil) throws -> Float {
        let terms = try computeTerms(locs: locs, scores: scores, truths: truths, gradLocs: gradLocs, gradScores: gradScores)
        return terms.confidence + alpha * terms.localization
    }

    // MARK: Gradients

    /// d loss / d scores = (softmax − one-hot)/N on the selected priors; d loss / d locs = the
    /// localisation derivative × alpha / its divisor on the positives; zero elsewhere.
    func writeGradients(locs: Tensor, scores: Tensor, targets: [MatchTargets], selected: [[Int]],
                        confidenceDivisor nPos: Float, localizationScale locScale: Float,
                        gradLocs: Tensor, gradScores: Tensor) {
        let n = locs.dim(0), nPriors = priorCount, nClasses = scores.dim(2)
        gradLocs.zero()
        gradScores.zero()
        let gl = gradLocs.data, gs = gradScores.data, locsP = locs.data, scoresP = scores.data
        parallelFor(n) { images in
            for i in images {
                let t = targets[i]
                for p in selected[i] {
                    let r = (i * nPriors + p) * nClasses
                    Softmax.probabilities(scoresP + r, count: nClasses, into: gs + r, dividedBy: nPos)
                    gs[r + t.classes[p]] -= 1 / nPos
                    guard t.classes[p] != 0 else { continue }
                    for k in 0..<4 {
                        let d = locsP[(i * nPriors + p) * 4 + k] - t.locations[4 * p + k]
                        gl[(i * nPriors + p) * 4 + k] = self.localizationDerivative(d) * locScale
                    }
                }
            }
        }
    }
}
