import Foundation
import SSDEngine

/// What every optimizer offers a training loop: a step from the accumulated gradients, its
/// step count (which drives its learning-rate schedule), and its state as named tensors so a
/// checkpoint can save and restore it exactly.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    /// Steps taken so far.
    var iteration: Int { get set }
    /// The (non-bias) learning rate the next step will use.
    var currentLearningRate: Float { get }
    func step()
    /// State tensors by name, e.g. `momentum.base.conv1_1.weight`.
    var stateTensors: [(String, Tensor)] { get }
}

extension Optimizer {
    /// Sets every parameter's gradient to zero.
    public func zeroGrad() { for p in parameters { p.zeroGrad() } }
}

extension SGD: Optimizer {
    public var currentLearningRate: Float { configuration.learningRate(at: iteration) }
    public var stateTensors: [(String, Tensor)] { zip(parameters, velocities).map { ("momentum." + $0.name, $1) } }
}

/// Settings of `Adam`; defaults are PyTorch's, with a cosine decay to zero when `totalIterations`
/// is set.
public struct AdamConfiguration: Equatable, Sendable {
    public var learningRate: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// L2 penalty added to every gradient (PyTorch's `weight_decay` for Adam).
    public var weightDecay: Float = 0
    /// When set, the learning rate follows lr·½(1 + cos(π·t/T)) over T iterations.
    public var totalIterations: Int? = nil
    /// Linear warm-up from lr/100 over this many iterations.
    public var warmupIterations: Int = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, totalIterations: Int? = nil, warmupIterations: Int = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.totalIterations = totalIterations
        self.warmupIterations = warmupIterations
    }

    public func learningRate(at iteration: Int) -> Float {
        var lr = learningRate
        if let total = totalIterations, total > 0 {
            lr *= Float(0.5 * (1 + cos(Double.pi * Double(min(iteration, total)) / Double(total))))
        }
        if iteration < warmupIterations {
            lr *= 0.01 + 0.99 * Float(iteration) / Float(warmupIterations)
        }
        return lr
    }
}

/// Adam (Kingma & Ba) in PyTorch's semantics: g ← grad + wd·p; m ← β₁m + (1−β₁)g;
/// v ← β₂v + (1−β₂)g²; p ← p − lr·m̂/(√v̂ + ε) with bias-corrected m̂, v̂.
public final class Adam: Optimizer {
    public let parameters: [Parameter]
    public var configuration: AdamConfiguration
    public var iteration: Int = 0
    /// First and second moments, one per parameter, allocated once.
    public let firstMoments: [Tensor]
    public let secondMoments: [Tensor]

    public init(parameters: [Parameter], configuration: AdamConfiguration = AdamConfiguration()) {
        self.parameters = parameters
        self.configuration = configuration
        firstMoments = parameters.map { Tensor(shape: $0.shape) }
        secondMoments = parameters.map { Tensor(shape: $0.shape) }
    }

    public var currentLearningRate: Float { configuration.learningRate(at: iteration) }

    public var stateTensors: [(String, Tensor)] {
        zip(parameters, firstMoments).map { ("adam_m." + $0.name, $1) } + zip(parameters, secondMoments).map { ("adam_v." + $0.name, $1) }
    }

    public func step() {
        let c = configuration
        let t = Float(iteration + 1)
        let lr = c.learningRate(at: iteration)
        let correction1 = 1 - powf(c.beta1, t), correction2 = 1 - powf(c.beta2, t)
        let stepSize = lr / correction1
        for (i, p) in parameters.enumerated() {
            let w = p.value.data, g = p.grad.data, m = firstMoments[i].data, v = secondMoments[i].data
            let b1 = c.beta1, b2 = c.beta2, eps = c.epsilon, wd = c.weightDecay
            parallelFor(p.value.count, minimumPerThread: 1 << 16) { range in
                for k in range {
                    let gk = g[k] + wd * w[k]
                    m[k] = b1 * m[k] + (1 - b1) * gk
                    v[k] = b2 * v[k] + (1 - b2) * gk * gk
                    w[k] -= stepSize * m[k] / ((v[k] / correction2).squareRoot() + eps)
                }
            }
            p.value.markModified()
        }
        iteration += 1
    }
}
