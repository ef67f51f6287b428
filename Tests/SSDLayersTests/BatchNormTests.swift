import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

final class BatchNormTests: XCTestCase {
    func makeLayer(_ channels: Int, activation: Activation = .none) -> BatchNorm2D {
        let bn = BatchNorm2D(name: "bn", channels: channels, activation: activation)
        var rng = SeededRandom(seed: 3)
        rng.fillUniform(bn.weight.value, 0.5, 1.5)
        rng.fillUniform(bn.bias.value, -0.5, 0.5)
        return bn
    }

    func testGradientsInTrainingAndEvaluationMode() throws {
        for (channels, layout, activation) in [(3, ActivationLayout.nchw, Activation.none), (16, .blocked(16), .none), (16, .blocked(8), .relu), (8, .blocked(4), .none), (4, .nchw, .relu)] {
            for training in [true, false] {
                let bn = makeLayer(channels, activation: activation)
                bn.isTraining = training
                var rng = SeededRandom(seed: 4)
                rng.fillUniform(bn.runningMean, -0.2, 0.2)
                rng.fillUniform(bn.runningVariance, 0.5, 2)
                // 15 pixels: blocked runs end in a scalar tail.
                let x = Tensor(shape: [2, channels, 5, 3], layout: layout), r = Tensor(shape: x.shape, layout: layout)
                rng.fillNormal(x)
                rng.fillNormal(r)
                let savedMean = bn.runningMean.clone(), savedVariance = bn.runningVariance.clone()
                try bn.forward(x)
                let dx = Tensor(shape: x.shape, layout: layout)
                try bn.backward(input: x, outputGrad: r.clone(), inputGrad: dx)
                let loss = { () throws -> Double in
                    // Keep the running statistics fixed across the probes.
                    bn.runningMean.copy(from: savedMean)
                    bn.runningVariance.copy(from: savedVariance)
                    return weightedSum(try bn.forward(x), r)
                }
                let label = "batchnorm \(layout) \(activation) \(training ? "train" : "eval")"
                let eps: Float = activation == .relu ? 1e-3 : 1e-2
                try checkGradient("\(label) input", x: x, analytic: dx, epsilon: eps, loss: loss)
                // γ and β move whole channels at once, so with a ReLU some output is always near
                // its kink; their gradients are checked without one.
                guard activation == .none else { continue }
                try checkGradient("\(label) weight", x: bn.weight.value, analytic: bn.weight.grad, epsilon: eps, loss: loss)
                try checkGradient("\(label) bias", x: bn.bias.value, analytic: bn.bias.grad, epsilon: eps, loss: loss)
            }
        }
    }

    func testTrainingNormalisesAndUpdatesRunningStatistics() throws {
        let bn = BatchNorm2D(name: "bn", channels: 2)
        // Channel 0 of both images: 1, 2, 3, 4 / 5, 6, 7, 8 → mean 4.5, biased var 5.25, unbiased 6.
        let x = try Tensor(shape: [2, 2, 2, 2], values: [1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 0])
        let y = try bn.forward(x)
        let expected0 = (1 - 4.5) / (5.25 + 1e-5).squareRoot()
        XCTAssertEqual(Double(y.data[0]), expected0, accuracy: 1e-5)
        XCTAssertEqual(bn.runningMean.data[0], 0.45, accuracy: 1e-6)
        XCTAssertEqual(bn.runningVariance.data[0], 0.9 + 0.1 * 6, accuracy: 1e-5)
        XCTAssertEqual(bn.runningMean.data[1], 0)
        bn.isTraining = false
        let z = try bn.forward(x)
        XCTAssertEqual(Double(z.data[0]), (1 - 0.45) / (1.5 + 1e-5).squareRoot(), accuracy: 1e-5)
        XCTAssertEqual(bn.buffers.map(\.name), ["bn.running_mean", "bn.running_var"])
    }
}
