import SSDDetection
import SSDEngine
import SSDTestSupport
import XCTest

final class MultiBoxLossTests: XCTestCase {
    /// A small grid of priors (4×4 locations × 3 shapes) for fast, exhaustive checks.
    static let smallPriors: [Float] = {
        var p: [Float] = []
        for i in 0..<4 { for j in 0..<4 { for (w, h) in [(0.3, 0.3), (0.45, 0.2), (0.2, 0.45)] as [(Float, Float)] {
            p += [(Float(j) + 0.5) / 4, (Float(i) + 0.5) / 4, w, h]
        } } }
        return p
    }()

    let truths = [
        GroundTruth(boxes: [0.1, 0.1, 0.45, 0.4, 0.5, 0.55, 0.95, 0.9], labels: [1, 3]),
        GroundTruth(boxes: [0.2, 0.6, 0.5, 0.95], labels: [2]),
    ]

    func testGradientsMatchFiniteDifferences() throws {
        for kind in LocalizationLoss.allCases {
            let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors)
            loss.localization = kind
            let n = 2, priors = Self.smallPriors.count / 4, classes = 4
            let locs = randomTensor([n, priors, 4], seed: 1, std: 2)
            let scores = randomTensor([n, priors, classes], seed: 2, std: 2)
            let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
            _ = try loss.compute(locs: locs, scores: scores, truths: truths, gradLocs: gl, gradScores: gs)
            XCTAssertGreaterThan(loss.lastPositives, 0)
            let f = { Double(try loss.compute(locs: locs, scores: scores, truths: self.truths)) }
            // Small steps: L1 has kinks, and hard-negative selection must not flip.
            try checkGradient("multibox \(kind) locs", x: locs, analytic: gl, epsilon: 1e-3, samples: 200, tolerance: 5e-3, loss: f)
            try checkGradient("multibox \(kind) scores", x: scores, analytic: gs, epsilon: 1e-3, samples: 200, tolerance: 5e-3, loss: f)
        }
    }

    /// Images without objects (negatives): in a batch with objects they add nothing (no
    /// positives, so no hard negatives); a batch of negatives alone has loss 0 and zero gradients
    /// (the reference divides 0 by 0), in both conventions.
    func testImagesWithoutObjects() throws {
        for convention in LossConvention.allCases {
            let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors, convention: convention)
            let priors = Self.smallPriors.count / 4, classes = 4
            let locs = randomTensor([3, priors, 4], seed: 4, std: 2)
            let scores = randomTensor([3, priors, classes], seed: 5, std: 2)
            let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
            let empty = GroundTruth(boxes: [], labels: [])
            let mixed = try loss.compute(locs: locs, scores: scores, truths: [truths[0], empty, truths[1]], gradLocs: gl, gradScores: gs)
            XCTAssert(mixed.isFinite && mixed > 0, "\(convention)")
            let slice = priors * classes
            XCTAssert((slice..<(2 * slice)).allSatisfy { gs.data[$0] == 0 }, "\(convention): the negative image gets no gradient")
            let none = try loss.compute(locs: locs, scores: scores, truths: [empty, empty, empty], gradLocs: gl, gradScores: gs)
            XCTAssertEqual(none, 0, "\(convention)")
            XCTAssert((0..<gs.count).allSatisfy { gs.data[$0] == 0 } && (0..<gl.count).allSatisfy { gl.data[$0] == 0 }, "\(convention)")
        }
    }

    func testMatchingForcesEveryObjectOntoAPrior() {
        let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors)
        // A tiny box overlaps no prior by 0.5, yet must still be matched to one.
        let t = loss.match(GroundTruth(boxes: [0.51, 0.51, 0.52, 0.52], labels: [2]))
        XCTAssertEqual(t.classes.filter { $0 == 2 }.count, 1)
        XCTAssertTrue(t.locations.allSatisfy { $0.isFinite })
    }

    func testHardNegativesAreThreePerPositive() throws {
        let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors)
        let n = 1, priors = Self.smallPriors.count / 4
        let locs = Tensor(shape: [n, priors, 4])
        let scores = randomTensor([n, priors, 3], seed: 3)
        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let truth = [GroundTruth(boxes: [0.3, 0.3, 0.6, 0.6], labels: [1])]
        _ = try loss.compute(locs: locs, scores: scores, truths: truth, gradLocs: gl, gradScores: gs)
        let rowsWithGradient = (0..<priors).filter { p in (0..<3).contains { gs.data[p * 3 + $0] != 0 } }.count
        XCTAssertEqual(rowsWithGradient, loss.lastPositives * 4)
    }

    func testHardCasesStayFinite() throws {
        let priors = Priors.centreSize()
        let loss = MultiBoxLoss(priorsCxcy: priors)
        var manyBoxes: [Float] = [], manyLabels: [Int] = []
        var rng = SeededRandom(seed: 4)
        for _ in 0..<60 {
            let x = rng.uniform(0, 0.9), y = rng.uniform(0, 0.9)
            manyBoxes += [x, y, x + rng.uniform(0.01, 0.1), y + rng.uniform(0.01, 0.1)]
            manyLabels.append(1 + Int(rng.next() % 20))
        }
        let cases = [
            GroundTruth(boxes: [0.5, 0.5, 0.5001, 0.5001], labels: [3]),   // tiny
            GroundTruth(boxes: [0, 0, 1, 1], labels: [1]),                  // the whole image
            GroundTruth(boxes: [0.95, 0.0, 1.0, 0.03], labels: [7]),        // tiny, at the border
            GroundTruth(boxes: manyBoxes, labels: manyLabels),              // many
        ]
        let n = cases.count
        let locs = randomTensor([n, 8732, 4], seed: 5), scores = randomTensor([n, 8732, 21], seed: 6, std: 30)
        let gl = Tensor(shape: locs.shape), gs = Tensor(shape: scores.shape)
        let value = try loss.compute(locs: locs, scores: scores, truths: cases, gradLocs: gl, gradScores: gs)
        XCTAssertTrue(value.isFinite)
        XCTAssertTrue(gl.array.allSatisfy { $0.isFinite })
        XCTAssertTrue(gs.array.allSatisfy { $0.isFinite })
    }

    func testBadInputIsRejectedWithAClearError() throws {
        let loss = MultiBoxLoss(priorsCxcy: Self.smallPriors)
        let priors = Self.smallPriors.count / 4
        let locs = Tensor(shape: [1, priors, 4]), scores = Tensor(shape: [1, priors, 3])
        XCTAssertThrowsError(try loss.compute(locs: Tensor(shape: [1, priors + 1, 4]), scores: scores, truths: [truths[1]]))
        XCTAssertThrowsError(try loss.compute(locs: locs, scores: scores, truths: truths)) { e in
            XCTAssertTrue("\(e)".contains("batch of 1"), "\(e)")
        }
        let inverted = GroundTruth(boxes: [0.5, 0.5, 0.4, 0.6], labels: [1])
        XCTAssertThrowsError(try loss.compute(locs: locs, scores: scores, truths: [inverted])) { e in
            XCTAssertTrue("\(e)".contains("image 0") && "\(e)".contains("object 0"), "\(e)")
        }
        let badLabel = GroundTruth(boxes: [0.1, 0.1, 0.4, 0.6], labels: [3])
        XCTAssertThrowsError(try loss.compute(locs: locs, scores: scores, truths: [badLabel])) { e in
            XCTAssertTrue("\(e)".contains("label 3"), "\(e)")
        }
        // (A batch without objects is no error: see testImagesWithoutObjects.)
    }

    func testBoxConversionsRoundTrip() {
        let xy: [Float] = [0.1, 0.2, 0.4, 0.8, 0, 0, 1, 1]
        let back = Boxes.cxcyToXy(Boxes.xyToCxcy(xy))
        XCTAssertLessThan(maxDifference(back, xy).absolute, 1e-6)
        let priors: [Float] = [0.5, 0.5, 0.2, 0.3, 0.3, 0.6, 0.1, 0.1]
        let cxcy = Boxes.xyToCxcy(xy)
        let encoded = Boxes.encode(cxcy, priors: priors)
        let decoded = encoded.withUnsafeBufferPointer { Boxes.decode($0.baseAddress!, count: 2, priors: priors) }
        XCTAssertLessThan(maxDifference(decoded, cxcy).absolute, 1e-6)
        XCTAssertEqual(Boxes.iou([0, 0, 2, 2], 0, [1, 1, 3, 3], 0), 1.0 / 7.0, accuracy: 1e-7)
        XCTAssertEqual(Boxes.iou([0, 0, 1, 1], 0, [2, 2, 3, 3], 0), 0)
    }

    func testPriorCountsPerFeatureMap() {
        XCTAssertEqual(Priors.ssd300.map { $0.size * $0.size * $0.boxesPerLocation }, [5776, 2166, 600, 150, 36, 4])
        let p = Priors.centreSize()
        XCTAssertEqual(p.count, 8732 * 4)
        XCTAssertTrue(p.allSatisfy { $0 >= 0 && $0 <= 1 })
    }
}
