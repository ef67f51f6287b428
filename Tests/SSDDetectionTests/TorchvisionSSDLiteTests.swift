import Foundation
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// torchvision's SSD box logic as `ssdlite320_mobilenet_v3_large` configures it, on
/// `../shared/fixtures/ssdlite320/` (torchvision 0.29): default boxes, the loss convention and
/// post-processing. The fixture's loss and gradients were taken in training mode, at outputs the
/// case file does not hold; the loss is checked (a) through those gradients, which give away the
/// matching, the hard negatives and the training-mode probabilities of every prior the loss
/// covers, (b) at the evaluation-mode outputs against a float64 reimplementation in pixels
/// written here from torchvision's code, and (c) by finite differences.
final class TorchvisionSSDLiteTests: XCTestCase {
    struct Case {
        let file: SafetensorsFile
        let truth: SafetensorsFile
        let json: [String: Any]
        /// Ground truth in pixels of the 320 image, as the fixture holds it.
        let pixelBoxes: [[Float]]
        let labels: [[Int]]
        /// The same, as fractions.
        var truths: [GroundTruth] {
            zip(pixelBoxes, labels).map { GroundTruth(boxes: $0.0.map { $0 / 320 }, labels: $0.1) }
        }
    }

    nonisolated(unsafe) static var cached: Case?

    func loadCase() throws -> Case {
        if let c = Self.cached { return c }
        guard let url = Fixtures.url("ssdlite320/case.safetensors"), let f64 = Fixtures.url("ssdlite320/case_f64.safetensors"),
              let jsonURL = Fixtures.url("ssdlite320/case.json")
        else { throw XCTSkip("ssdlite320 fixtures not found: set SSD_FIXTURES or place shared/ beside the checkout") }
        let file = try SafetensorsFile(url: url)
        var boxes: [[Float]] = [], labels: [[Int]] = []
        var i = 0
        while file.entries["gt_boxes_\(i)"] != nil {
            boxes.append(try file.tensor("gt_boxes_\(i)").array)
            labels.append(try file.integers("gt_labels_\(i)").values.map { Int($0) })
            i += 1
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as! [String: Any]
        let c = Case(file: file, truth: try SafetensorsFile(url: f64), json: json, pixelBoxes: boxes, labels: labels)
        Self.cached = c
        return c
    }

    func pytorchError(_ c: Case, _ key: String) -> (relative: Double, absolute: Double) {
        let e = (c.json["pytorch_f32_error"] as? [String: Any])?[key] as? [String: Any]
        return (e?["relative"] as? Double ?? .nan, e?["absolute"] as? Double ?? .nan)
    }

    static let priors = DefaultBoxes.ssdlite320.centreSize()

    // MARK: Default boxes

    func testDefaultBoxesMatchTorchvision() throws {
        let boxes = DefaultBoxes.ssdlite320
        XCTAssertEqual(boxes.count, 3234)
        XCTAssertEqual(boxes.boxesPerLocation, [6, 6, 6, 6, 6, 6])
        XCTAssertEqual(AnchorGenerator.ssdlite320.count, 3234)
        XCTAssertEqual(AnchorGenerator.ssd300.count, 8732)
        XCTAssertEqual(AnchorGenerator.ssd300.centreSize(), Priors.centreSize())
        XCTAssertEqual(AnchorGenerator.ssdlite320.centreSize(), Self.priors)
        let s = boxes.resolvedScales
        XCTAssertEqual(s.count, 7)
        XCTAssertEqual(s[0], 0.2, accuracy: 1e-15)
        XCTAssertEqual(s[5], 0.95, accuracy: 1e-15)
        XCTAssertEqual(s[6], 1)

        let c = try loadCase()
        let ours = boxes.boundaryPixels()
        for (name, file) in [("f32", c.file), ("f64", c.truth)] {
            let d = maxDifference(ours, try file.tensor("anchors_xyxy").array)
            report("anchors_xyxy vs \(name) run: max abs error (px)", d.absolute)
            report("anchors_xyxy vs \(name) run: relative error", d.relative)
            XCTAssertLessThanOrEqual(d.relative, 1e-6, "anchors_xyxy (\(name))")
        }
        // The fractional centre-size form gives the same boxes.
        let fromCentre = Boxes.cxcyToXy(Self.priors).map { $0 * 320 }
        let d = maxDifference(fromCentre, try c.file.tensor("anchors_xyxy").array)
        report("anchors from fractional centre-size ×320: max abs error (px)", d.absolute)
        XCTAssertLessThanOrEqual(d.relative, 1e-6)
    }

    // MARK: Matching, through the training-mode gradients

    /// The fixture's gradients give the matching away: d/d bbox_regression is non-zero exactly
    /// on the foreground priors, and d/d cls_logits there is (p − onehot)/N, negative only at
    /// the matched label.
    func testMatchingEqualsTorchvisionForeground() throws {
        let c = try loadCase()
        let gradBox = try c.file.tensor("grad_bbox_regression"), gradCls = try c.file.tensor("grad_cls_logits")
        let nPriors = 3234, classes = 21
        let loss = MultiBoxLoss(priorsCxcy: Self.priors, convention: .torchvision)
        // The same loss in pixels: priors and ground truth × 320.
        let pixelLoss = MultiBoxLoss(priorsCxcy: Self.priors.map { $0 * 320 }, convention: .torchvision)
        var total = 0
        for (i, truth) in c.truths.enumerated() {
            let t = loss.match(truth)
            let theirForeground = (0..<nPriors).filter { p in (0..<4).contains { gradBox.data[(i * nPriors + p) * 4 + $0] != 0 } }
            let ours = (0..<nPriors).filter { t.classes[$0] != 0 }
            XCTAssertEqual(ours, theirForeground, "image \(i): foreground priors")
            for p in theirForeground {
                let row = gradCls.data + (i * nPriors + p) * classes
                let label = (0..<classes).min { row[$0] < row[$1] }!
                XCTAssertLessThan(row[label], 0)
                XCTAssertEqual(t.classes[p], label, "image \(i) prior \(p): label")
            }
            total += ours.count
            report("image \(i): foreground priors", ours.count)
            let px = pixelLoss.match(GroundTruth(boxes: c.pixelBoxes[i], labels: c.labels[i]))
            XCTAssertEqual(px.classes, t.classes, "image \(i): fractions and pixels match alike")
            let fg = ours.flatMap { p in (0..<4).map { 4 * p + $0 } }
            let d = maxDifference(fg.map { t.locations[$0] }, fg.map { px.locations[$0] })
            report("image \(i): targets from fractions vs pixels, max abs difference", d.absolute)
            XCTAssertLessThanOrEqual(d.absolute, 1e-5)
        }
        // N: the largest |d/d bbox_regression| is 1/N (Smooth L1's derivative saturates at 1).
        var largest: Float = 0
        for k in 0..<gradBox.count { largest = max(largest, abs(gradBox.data[k])) }
        XCTAssertEqual(Float(total), 1 / largest, accuracy: 1e-3)
    }

    /// The training-mode outputs are not in the case file, but the gradients hold what the loss
    /// depends on: on every prior the confidence term covers, the softmax p = N·grad + onehot;
    /// and on every foreground coordinate whose Smooth L1 is not saturated, the difference
    /// d = N·grad. Outputs built from them (other priors made confidently background, so they
    /// stay out of the hard negatives) must give torchvision's classification loss and both
    /// gradients back.
    func testLossAndGradientsFromTorchvisionTrainingRun() throws {
        let c = try loadCase()
        let gradBox = try c.file.tensor("grad_bbox_regression"), gradCls = try c.file.tensor("grad_cls_logits")
        let n = 2, nPriors = 3234, classes = 21
        let loss = MultiBoxLoss(priorsCxcy: Self.priors, convention: .torchvision)
        let targets = c.truths.map { loss.match($0) }
        let total = targets.reduce(0) { $0 + $1.classes.filter { $0 != 0 }.count }
        let nF = Float(total)
        let locs = Tensor(shape: [n, nPriors, 4]), scores = Tensor(shape: [n, nPriors, classes])
        var saturated = 0, covered = [Int](repeating: 0, count: n)
        for i in 0..<n {
            for p in 0..<nPriors {
                let r = (i * nPriors + p) * classes
                let g = gradCls.data + r
                let isCovered = (0..<classes).contains { g[$0] != 0 }
                for k in 0..<classes {
                    if isCovered {
                        let prob = Double(nF) * Double(g[k]) + (k == targets[i].classes[p] ? 1 : 0)
                        scores.data[r + k] = Float(log(max(prob, 1e-30)))
                    } else {
                        scores.data[r + k] = k == 0 ? 0 : -30
                    }
                }
                if isCovered { covered[i] += 1 }
                for k in 0..<4 {
                    let j = (i * nPriors + p) * 4 + k
                    let d = nF * gradBox.data[j]
                    if abs(d) < 0.999 {
                        locs.data[j] = targets[i].locations[4 * p + k] + d
                    } else if d != 0 {
                        saturated += 1
                        locs.data[j] = targets[i].locations[4 * p + k] + (d > 0 ? 2 : -2)
                    }
                }
            }
        }
        let positives = targets.map { $0.classes.filter { $0 != 0 }.count }
        XCTAssertEqual(covered, positives.map { 4 * $0 }, "torchvision covers the positives and 3 negatives per positive")
        report("foreground coordinates where Smooth L1 saturates (value not recoverable)", saturated)

        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let terms = try loss.computeTerms(locs: locs, scores: scores, truths: c.truths, gradLocs: gl, gradScores: gs)
        XCTAssertEqual(terms.positives, total)
        // The outputs are rebuilt from the float32 run's gradients, so they are judged against that
        // run. A confidently wrong prior's p = 1 + N·grad loses most of its digits to cancellation
        // (p = 1e-4 keeps about 3), which bounds how closely the rebuilt cross entropy can agree.
        let expected = try c.file.tensor("loss_classification").array[0], truth = try c.truth.tensor("loss_classification").array[0]
        report("loss_classification: ours \(terms.confidence), torchvision f32 \(expected), f64 \(truth)", "")
        let relative = abs(terms.confidence - expected) / expected
        report("loss_classification relative error vs the f32 run (rebuilt outputs)", relative)
        XCTAssertLessThanOrEqual(relative, 3e-5)
        for (key, ours) in [("grad_bbox_regression", gl), ("grad_cls_logits", gs)] {
            let d32 = maxDifference(ours, try c.file.tensor(key)), d64 = maxDifference(ours, try c.truth.tensor(key))
            report("\(key): relative error vs the f32 run \(d32.relative); vs f64 \(d64.relative) (PyTorch f32's own: \(pytorchError(c, key).relative))", "")
            XCTAssertLessThanOrEqual(d32.relative, 1e-5, key)
        }
    }

    // MARK: The loss at the evaluation-mode outputs, against float64 in pixels

    func testLossMatchesFloat64PixelReimplementation() throws {
        let c = try loadCase()
        let locs = try c.file.tensor("bbox_regression"), scores = try c.file.tensor("cls_logits")
        let anchors = try c.file.tensor("anchors_xyxy").array.map(Double.init)
        let reference = torchvisionLossInPixels(locs: locs, scores: scores, anchors: anchors,
                                                boxes: c.pixelBoxes.map { $0.map(Double.init) }, labels: c.labels)
        let loss = MultiBoxLoss(priorsCxcy: Self.priors, convention: .torchvision)
        let terms = try loss.computeTerms(locs: locs, scores: scores, truths: c.truths)
        XCTAssertEqual(terms.positives, reference.positives)
        let eb = abs(Double(terms.localization) - reference.bbox) / reference.bbox
        let ec = abs(Double(terms.confidence) - reference.classification) / reference.classification
        report("eval-mode outputs: bbox_regression ours \(terms.localization), float64 pixels \(reference.bbox)", "")
        report("eval-mode outputs: classification ours \(terms.confidence), float64 pixels \(reference.classification)", "")
        report("eval-mode outputs: bbox_regression relative error", eb)
        report("eval-mode outputs: classification relative error", ec)
        XCTAssertLessThanOrEqual(eb, 2e-5)
        XCTAssertLessThanOrEqual(ec, 2e-5)
        XCTAssertEqual(try loss.compute(locs: locs, scores: scores, truths: c.truths), terms.confidence + terms.localization)
    }

    /// torchvision's `SSD.compute_loss` after `box_iou` and `SSDMatcher`, in Double on pixel
    /// boxes, written from its code independently of `MultiBoxLoss`.
    func torchvisionLossInPixels(locs: Tensor, scores: Tensor, anchors: [Double], boxes: [[Double]], labels: [[Int]])
        -> (bbox: Double, classification: Double, positives: Int) {
        let nA = anchors.count / 4, classes = scores.dim(2)
        var bbox = 0.0, classification = 0.0, foreground = 0
        func iou(_ a: [Double], _ i: Int, _ b: [Double], _ j: Int) -> Double {
            let area1 = (a[4 * i + 2] - a[4 * i]) * (a[4 * i + 3] - a[4 * i + 1])
            let area2 = (b[4 * j + 2] - b[4 * j]) * (b[4 * j + 3] - b[4 * j + 1])
            let w = max(min(a[4 * i + 2], b[4 * j + 2]) - max(a[4 * i], b[4 * j]), 0)
            let h = max(min(a[4 * i + 3], b[4 * j + 3]) - max(a[4 * i + 1], b[4 * j + 1]), 0)
            return w * h / (area1 + area2 - w * h)
        }
        for (img, gt) in boxes.enumerated() {
            let m = gt.count / 4
            // Matcher(0.5, 0.5): best gt per anchor, −1 below 0.5; then each gt's best anchor.
            var matches = [Int](repeating: -1, count: nA)
            for a in 0..<nA {
                var best = -1.0, arg = 0
                for g in 0..<m { let q = iou(gt, g, anchors, a); if q > best { best = q; arg = g } }
                matches[a] = best < 0.5 ? -1 : arg
            }
            for g in 0..<m {
                var best = -1.0, arg = 0
                for a in 0..<nA { let q = iou(gt, g, anchors, a); if q > best { best = q; arg = a } }
                matches[arg] = g
            }
            var target = [Int](repeating: 0, count: nA)
            var ce = [Double](repeating: 0, count: nA)
            for a in 0..<nA {
                if matches[a] >= 0 {
                    let g = matches[a]
                    target[a] = labels[img][g]
                    foreground += 1
                    let ew = anchors[4 * a + 2] - anchors[4 * a], eh = anchors[4 * a + 3] - anchors[4 * a + 1]
                    let ex = anchors[4 * a] + 0.5 * ew, ey = anchors[4 * a + 1] + 0.5 * eh
                    let gw = gt[4 * g + 2] - gt[4 * g], gh = gt[4 * g + 3] - gt[4 * g + 1]
                    let gx = gt[4 * g] + 0.5 * gw, gy = gt[4 * g + 1] + 0.5 * gh
                    let t = [10 * (gx - ex) / ew, 10 * (gy - ey) / eh, 5 * log(gw / ew), 5 * log(gh / eh)]
                    for k in 0..<4 {
                        let d = abs(Double(locs.data[(img * nA + a) * 4 + k]) - t[k])
                        bbox += d < 1 ? 0.5 * d * d : d - 0.5
                    }
                }
                let row = (0..<classes).map { Double(scores.data[(img * nA + a) * classes + $0]) }
                let mx = row.max()!
                ce[a] = log(row.reduce(0) { $0 + exp($1 - mx) }) + mx - row[target[a]]
            }
            let nPos = target.filter { $0 > 0 }.count
            let negatives = (0..<nA).filter { target[$0] == 0 }.sorted { ce[$0] > ce[$1] }
            for a in 0..<nA where target[a] > 0 { classification += ce[a] }
            for a in negatives.prefix(3 * nPos) { classification += ce[a] }
        }
        let n = Double(max(1, foreground))
        return (bbox / n, classification / n, foreground)
    }

    // MARK: Small cases

    static let smallPriors: [Float] = {
        var p: [Float] = []
        for i in 0..<4 { for j in 0..<4 { for (w, h) in [(0.3, 0.3), (0.45, 0.2), (0.2, 0.45)] as [(Float, Float)] {
            p += [(Float(j) + 0.5) / 4, (Float(i) + 0.5) / 4, w, h]
        } } }
        return p
    }()

    func testTorchvisionGradientsMatchFiniteDifferences() throws {
        let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors, convention: .torchvision)
        XCTAssertEqual(loss.localization, .smoothL1)
        // The third image has no objects: torchvision allows it (all background, no negatives).
        let truths = [
            GroundTruth(boxes: [0.1, 0.1, 0.45, 0.4, 0.5, 0.55, 0.95, 0.9], labels: [1, 3]),
            GroundTruth(boxes: [0.2, 0.6, 0.5, 0.95], labels: [2]),
            GroundTruth(boxes: [], labels: []),
        ]
        let n = 3, priors = Self.smallPriors.count / 4, classes = 4
        let locs = randomTensor([n, priors, 4], seed: 1, std: 2)
        let scores = randomTensor([n, priors, classes], seed: 2, std: 2)
        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let terms = try loss.computeTerms(locs: locs, scores: scores, truths: truths, gradLocs: gl, gradScores: gs)
        XCTAssertGreaterThan(terms.positives, 0)
        XCTAssertTrue((2 * priors * classes..<3 * priors * classes).allSatisfy { gs.data[$0] == 0 })
        let f = { Double(try loss.compute(locs: locs, scores: scores, truths: truths)) }
        try checkGradient("torchvision locs", x: locs, analytic: gl, epsilon: 1e-3, samples: 200, tolerance: 5e-3, loss: f)
        try checkGradient("torchvision scores", x: scores, analytic: gs, epsilon: 1e-3, samples: 200, tolerance: 5e-3, loss: f)
    }

    func testTorchvisionBatchWithoutObjectsHasZeroLoss() throws {
        let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors, convention: .torchvision)
        let priors = Self.smallPriors.count / 4
        let locs = randomTensor([1, priors, 4], seed: 3), scores = randomTensor([1, priors, 3], seed: 4)
        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let terms = try loss.computeTerms(locs: locs, scores: scores, truths: [GroundTruth(boxes: [], labels: [])],
                                          gradLocs: gl, gradScores: gs)
        XCTAssertEqual(terms, MultiBoxLossTerms(localization: 0, confidence: 0, positives: 0))
        XCTAssertTrue(gl.array.allSatisfy { $0 == 0 } && gs.array.allSatisfy { $0 == 0 })
        // The tutorial's convention gives it the same value (the reference divides 0 by 0).
        XCTAssertEqual(try MultiBoxLoss(priorsCxcy: Self.smallPriors).compute(locs: locs, scores: scores,
                                                                              truths: [GroundTruth(boxes: [], labels: [])]), 0)
    }

    func testBoxCoderRoundTripsAndClampsTheLogScale() {
        let priors: [Float] = [0.5, 0.5, 0.2, 0.3, 0.3, 0.6, 0.1, 0.1]
        let boxes: [Float] = [0.35, 0.3, 0.7, 0.65, 0.1, 0.5, 0.4, 0.9]
        let codes = BoxCoder.ssd.encode(boxes, priorsCxcy: priors)
        let back = codes.withUnsafeBufferPointer { BoxCoder.ssd.decode($0.baseAddress!, count: 2, priorsCxcy: priors) }
        XCTAssertLessThanOrEqual(maxDifference(back, boxes).absolute, 1e-6)
        // The tutorial's coding is the same formula.
        let tutorial = Boxes.encode(Boxes.xyToCxcy(boxes), priors: priors)
        XCTAssertLessThanOrEqual(maxDifference(codes, tutorial).absolute, 1e-5)
        // A huge log scale decodes to at most 1000/16 × the prior (torchvision's bbox_xform_clip).
        let huge: [Float] = [0, 0, 100, 100]
        let decoded = huge.withUnsafeBufferPointer { BoxCoder.ssd.decode($0.baseAddress!, count: 1, priorsCxcy: [0.5, 0.5, 0.01, 0.02]) }
        XCTAssertEqual(decoded[2] - decoded[0], 0.01 * 1000 / 16, accuracy: 1e-5)
        XCTAssertEqual(decoded[3] - decoded[1], 0.02 * 1000 / 16, accuracy: 1e-5)
    }

    // MARK: Post-processing

    func testDetectionsMatchTorchvision() throws {
        let c = try loadCase()
        let locs = try c.file.tensor("bbox_regression"), scores = try c.file.tensor("cls_logits")
        let ours = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: Self.priors,
                                              settings: .torchvisionSSDLite)
        for i in 0..<locs.dim(0) {
            let boxes = try c.file.tensor("det_boxes_\(i)").array
            let labels = try c.file.integers("det_labels_\(i)").values.map { Int($0) }
            let expectedScores = try c.file.tensor("det_scores_\(i)").array
            let found = ours[i]
            XCTAssertEqual(found.count, labels.count, "image \(i): number of detections")
            XCTAssertEqual(found.map(\.score), found.map(\.score).sorted(by: >), "image \(i): sorted by score")
            // Greedy one-to-one pairing: for each of torchvision's, ours of the same label closest in box and score.
            var unmatched = Array(found.indices)
            var worstBox: Float = 0, worstScore: Float = 0, misses: [String] = []
            for e in labels.indices {
                let box = Array(boxes[(4 * e)..<(4 * e + 4)])
                func distance(_ j: Int) -> Float {
                    maxDifference(found[j].box.scaled(x: 320, y: 320).array, box).absolute + 320 * abs(found[j].score - expectedScores[e])
                }
                guard let j = unmatched.filter({ found[$0].label == labels[e] }).min(by: { distance($0) < distance($1) }),
                      distance(j) < 0.05
                else {
                    misses.append("label \(labels[e]) score \(expectedScores[e]) box \(box)")
                    continue
                }
                worstBox = max(worstBox, maxDifference(found[j].box.scaled(x: 320, y: 320).array, box).absolute)
                worstScore = max(worstScore, abs(found[j].score - expectedScores[e]))
                unmatched.removeAll { $0 == j }
            }
            report("image \(i): detections paired with torchvision f32", "\(labels.count - misses.count)/\(labels.count)")
            report("image \(i): worst box difference (px)", worstBox)
            report("image \(i): worst score difference", worstScore)
            for m in misses { print("[measure] image \(i): torchvision's detection without a counterpart: \(m)") }
            for j in unmatched { print("[measure] image \(i): ours without a counterpart: \(found[j])") }
            // Near-ties (equal scores at the cut, boxes suppressed by a hair) may swap a rare pair.
            XCTAssertLessThanOrEqual(misses.count, 2, "image \(i)")
            XCTAssertLessThanOrEqual(worstBox, 1e-3)
            XCTAssertLessThanOrEqual(worstScore, 2e-6)
        }
    }

    func testTorchvisionSettingsCapCandidatesAndClip() throws {
        // Four priors at one place, one class: 0.9, 0.8, 0.7, 0.6; the first is decoded past the image.
        let priors: [Float] = [0.95, 0.5, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.5, 0.8, 0.1, 0.1, 0.8, 0.2, 0.1, 0.1]
        let locs = Tensor(shape: [1, 4, 4])
        let logits: [Float] = [0.9, 0.8, 0.7, 0.6].flatMap { [0, log($0 / (1 - $0))] }
        let scores = try Tensor(shape: [1, 4, 2], values: logits)
        var settings = DetectionSettings.torchvisionSSDLite
        settings.candidatesPerClass = 2
        let found = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: priors, settings: settings)[0]
        XCTAssertEqual(found.map(\.score).map { ($0 * 10).rounded() }, [9, 8])
        XCTAssertEqual(found[0].box.xMin, 0.85, accuracy: 1e-6)
        XCTAssertEqual(found[0].box.xMax, 1, "clipped to the image")
        settings.minScore = 0.95
        XCTAssertEqual(try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: priors, settings: settings)[0], [])
    }
}
