import SSDEngine

/// Settings of `SGD`; defaults are the reference's (train.py).
public struct SGDConfiguration: Equatable, Sendable {
    /// Learning rate of non-bias parameters.
    public var learningRate: Float = 1e-3
    /// Biases learn at `learningRate × biasLearningRateMultiplier` (the reference doubles it).
    public var biasLearningRateMultiplier: Float = 2
    public var momentum: Float = 0.9
    /// L2 penalty added to every gradient, biases included (PyTorch's `weight_decay`).
    public var weightDecay: Float = 5e-4
    /// Iterations (counting from 0) at which the learning rate is multiplied by `decayFactor`.
    public var decayIterations: [Int] = [80_000, 100_000]
    public var decayFactor: Float = 0.1
    /// When set, each gradient element is clamped to ±this before the step (the reference's
    /// `clip_gradient`).
    public var gradientClip: Float? = nil

    public init(learningRate: Float = 1e-3, biasLearningRateMultiplier: Float = 2, momentum: Float = 0.9,
                weightDecay: Float = 5e-4, decayIterations: [Int] = [80_000, 100_000], decayFactor: Float = 0.1,
                gradientClip: Float? = nil) {
        self.learningRate = learningRate
        self.biasLearningRateMultiplier = biasLearningRateMultiplier
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.decayIterations = decayIterations
        self.decayFactor = decayFactor
        self.gradientClip = gradientClip
    }

    /// The non-bias learning rate in force at `iteration`.
    public func learningRate(at iteration: Int) -> Float {
        decayIterations.reduce(learningRate) { lr, at in iteration >= at ? lr * decayFactor : lr }
    }
}

/// Stochastic gradient descent with momentum and weight decay in PyTorch's semantics:
///
///     g ← grad + wd·p;   v ← μ·v + g   (v starts at 0, so the first v is g);   p ← p − lr·v
///
/// Momentum buffers are allocated once, at construction, and start at zero.
public final class SGD {
    public let parameters: [Parameter]
    public var configuration: SGDConfiguration
    /// One buffer per parameter, same order as `parameters`.
    public let velocities: [Tensor]
    /// Steps taken so far; the learning rate schedule reads it.
    public var iteration: Int = 0

    public init(parameters: [Parameter], configuration: SGDConfiguration = SGDConfiguration()) {
        self.parameters = parameters
        self.configuration = configuration
        self.velocities = parameters.map { Tensor(shape: $0.shape) }
    }

    /// One update from the accumulated gradients; then `iteration += 1`.
    public func step() {
        let c = configuration
        let lr = c.learningRate(at: iteration)
        for (p, v) in zip(parameters, velocities) {
            let rate = p.isBias ? lr * c.biasLearningRateMultiplier : lr
            let w = p.value.data, g = p.grad.data, vel = v.data
            let clip = c.gradientClip, wd = c.weightDecay, mu = c.momentum
            parallelFor(p.value.count, minimumPerThread: 1 << 16) { range in
                for i in range {
                    var gi = g[i]
                    if let clip { gi = min(max(gi, -clip), clip) }
                    gi += wd * w[i]
                    let vi = mu * vel[i] + gi  // zero-initialised: the first step gives v = g
                    vel[i] = vi
                    w[i] -= rate * vi
                }
            }
            p.value.markModified()
        }
        iteration += 1
    }
}
