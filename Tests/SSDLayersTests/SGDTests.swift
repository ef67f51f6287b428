import SSDEngine
import SSDLayers
import XCTest

/// SGD in PyTorch's semantics, checked against the update written out by hand.
final class SGDTests: XCTestCase {
    func testMomentumWeightDecayAndBiasLearningRate() throws {
        let w = Parameter(name: "layer.weight", role: .weight, shape: [2])
        let b = Parameter(name: "layer.bias", role: .bias, shape: [1])
        w.value.data[0] = 1; w.value.data[1] = -2
        b.value.data[0] = 0.5
        let config = SGDConfiguration(learningRate: 0.1, biasLearningRateMultiplier: 2, momentum: 0.9, weightDecay: 0.01,
                                      decayIterations: [])
        let sgd = SGD(parameters: [w, b], configuration: config)
        // Reference values: v ← 0.9 v + g + wd·p; p ← p − lr·v, two steps with constant gradients.
        var pw: [Double] = [1, -2], pb = 0.5, vw: [Double] = [0, 0], vb = 0.0
        let gw: [Double] = [0.3, -0.7], gb = 0.2
        for _ in 0..<2 {
            w.grad.data[0] = Float(gw[0]); w.grad.data[1] = Float(gw[1]); b.grad.data[0] = Float(gb)
            sgd.step()
            for i in 0..<2 {
                vw[i] = 0.9 * vw[i] + gw[i] + 0.01 * pw[i]
                pw[i] -= 0.1 * vw[i]
            }
            vb = 0.9 * vb + gb + 0.01 * pb
            pb -= 0.2 * vb
        }
        XCTAssertEqual(Double(w.value.data[0]), pw[0], accuracy: 1e-6)
        XCTAssertEqual(Double(w.value.data[1]), pw[1], accuracy: 1e-6)
        XCTAssertEqual(Double(b.value.data[0]), pb, accuracy: 1e-6)
        XCTAssertEqual(sgd.iteration, 2)
    }

    func testStepDecaySchedule() {
        let c = SGDConfiguration(learningRate: 1e-3, decayIterations: [10, 20], decayFactor: 0.1)
        XCTAssertEqual(c.learningRate(at: 0), 1e-3)
        XCTAssertEqual(c.learningRate(at: 9), 1e-3)
        XCTAssertEqual(c.learningRate(at: 10), 1e-4, accuracy: 1e-10)
        XCTAssertEqual(c.learningRate(at: 25), 1e-5, accuracy: 1e-11)
        XCTAssertEqual(SGDConfiguration().decayIterations, [80_000, 100_000])
    }

    func testGradientClippingClampsEachElement() {
        let p = Parameter(name: "w", role: .weight, shape: [3])
        let sgd = SGD(parameters: [p], configuration: SGDConfiguration(learningRate: 1, momentum: 0, weightDecay: 0,
                                                                       gradientClip: 0.5))
        p.grad.data[0] = 3; p.grad.data[1] = -0.2; p.grad.data[2] = -9
        sgd.step()
        XCTAssertEqual(p.value.array, [-0.5, 0.2, 0.5])
    }

    func testRescaleFactorsAreNotBiases() {
        XCTAssertFalse(Parameter(name: "rescale_factors", role: .scale, shape: [1]).isBias)
        XCTAssertTrue(Parameter(name: "base.bn1_1.bias", role: .normalizationBias, shape: [1]).isBias)
        XCTAssertTrue(Parameter(name: "base.conv1_1.bias", role: .bias, shape: [1]).isBias)
    }
}

final class AdamTests: XCTestCase {
    func testAdamMatchesTheUpdateWrittenOut() {
        let p = Parameter(name: "w", role: .weight, shape: [2])
        p.value.data[0] = 1; p.value.data[1] = -1
        let adam = Adam(parameters: [p], configuration: AdamConfiguration(learningRate: 0.1, weightDecay: 0.01))
        var w: [Double] = [1, -1], m: [Double] = [0, 0], v: [Double] = [0, 0]
        let grads: [[Double]] = [[0.5, -0.2], [0.3, 0.1], [-0.4, 0.2]]
        for (t, g) in grads.enumerated() {
            p.grad.data[0] = Float(g[0]); p.grad.data[1] = Float(g[1])
            adam.step()
            for k in 0..<2 {
                let gk = g[k] + 0.01 * w[k]
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk * gk
                let mh = m[k] / (1 - pow(0.9, Double(t + 1))), vh = v[k] / (1 - pow(0.999, Double(t + 1)))
                w[k] -= 0.1 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        XCTAssertEqual(Double(p.value.data[0]), w[0], accuracy: 1e-5)
        XCTAssertEqual(Double(p.value.data[1]), w[1], accuracy: 1e-5)
        XCTAssertEqual(adam.stateTensors.map(\.0), ["adam_m.w", "adam_v.w"])
    }

    func testCosineScheduleWithWarmup() {
        let c = AdamConfiguration(learningRate: 1, totalIterations: 100, warmupIterations: 10)
        XCTAssertEqual(c.learningRate(at: 0), 0.01, accuracy: 1e-6)
        XCTAssertEqual(c.learningRate(at: 50), 0.5, accuracy: 1e-6)
        XCTAssertEqual(c.learningRate(at: 100), 0, accuracy: 1e-6)
        XCTAssertEqual(c.learningRate(at: 150), 0, accuracy: 1e-6)
    }
}
