import SSDEngine
import SSDLayers

/// A convolution, then batch normalisation when the spec has one, then the activation —
/// fused into the convolution when there is no batch norm, into the batch norm otherwise.
///
/// In evaluation mode a batch norm is an affine map per channel with constant statistics, so
/// it is folded into the convolution — w′ = w·γ/σ, b′ = (b − μ)·γ/σ + β with σ = √(var + ε) —
/// and the block runs one convolution with its activation instead of three passes. The folded
/// weights are recomputed whenever any tensor they come from changed (their versions).
final class ConvolutionBlock: Layer {
    let conv: Conv2D
    let norm: BatchNorm2D?
    /// Evaluation mode with batch norm: the convolution with the batch norm folded in.
    private let folded: Conv2D?
    /// Whether evaluation folds the batch norm (the unfolded path stays for comparison).
    var foldsBatchNorm = true
    /// The versions of (weight, bias, γ, β, mean, variance) the folded weights were computed from.
    private var foldedFrom: Versions?
    private struct Versions: Equatable { let weight, bias, gamma, beta, mean, variance: UInt64 }

    init(_ spec: ConvolutionSpec, algorithm: ConvolutionAlgorithm, backend: Backend) {
        let layout = spec.nchwOutput ? .nchw : backend.preferredLayout(channels: spec.outputChannels)
        func convolution(bias: Bool, activation: Activation) -> Conv2D {
            Conv2D(name: spec.name, inputChannels: spec.inputChannels, outputChannels: spec.outputChannels,
                   kernelSize: spec.kernelSize, stride: spec.stride, padding: spec.padding, dilation: spec.dilation,
                   groups: spec.groups, bias: bias, activation: activation, outputLayout: layout,
                   algorithm: algorithm, backend: backend)
        }
        conv = convolution(bias: spec.bias, activation: spec.normalization == nil ? spec.activation : .none)
        norm = spec.normalization.map {
            BatchNorm2D(name: $0, channels: spec.outputChannels, epsilon: spec.epsilon, momentum: spec.momentum,
                        activation: spec.activation)
        }
        folded = norm == nil ? nil : convolution(bias: true, activation: spec.activation)
        folded?.isTraining = false
    }

    /// The block's output (after the activation).
    var output: Tensor {
        if !isTraining && foldsBatchNorm, let folded { return folded.output }
        return norm?.output ?? conv.output
    }
    var parameters: [Parameter] { conv.parameters + (norm?.parameters ?? []) }
    var buffers: [Buffer] { norm?.buffers ?? [] }
    var sublayers: [Layer] { [conv] + (norm.map { [$0] } ?? []) + (folded.map { [$0] } ?? []) }
    var isTraining: Bool = true {
        didSet {
            conv.isTraining = isTraining
            norm?.isTraining = isTraining
        }
    }

    @discardableResult
    func forward(_ x: Tensor) throws -> Tensor {
        if !isTraining && foldsBatchNorm, let folded, let norm {
            fold(into: folded, norm)
            return try folded.forward(x)
        }
        let y = try conv.forward(x)
        return try norm?.forward(y) ?? y
    }

    /// Recomputes the folded weights if the convolution or the batch norm changed since.
    private func fold(into folded: Conv2D, _ norm: BatchNorm2D) {
        // Checked at every evaluation forward: no allocation, six comparisons.
        let versions = Versions(weight: conv.weight.value.version, bias: conv.bias?.value.version ?? 0,
                                gamma: norm.weight.value.version, beta: norm.bias.value.version,
                                mean: norm.runningMean.version, variance: norm.runningVariance.version)
        guard versions != foldedFrom else { return }
        let perChannel = conv.weight.value.count / conv.outputChannels
        let w = conv.weight.value.data, fw = folded.weight.value.data, fb = folded.bias.value.data
        for o in 0..<conv.outputChannels {
            let scale = norm.weight.value.data[o] / (norm.runningVariance.data[o] + norm.epsilon).squareRoot()
            for i in 0..<perChannel { fw[o * perChannel + i] = w[o * perChannel + i] * scale }
            let b = conv.bias?.value.data[o] ?? 0
            fb[o] = (b - norm.runningMean.data[o]) * scale + norm.bias.value.data[o]
        }
        folded.weight.value.markModified()
        folded.bias.value.markModified()
        foldedFrom = versions
    }

    /// Overwrites `outputGrad` (activation mask, then — with batch normalisation, in place — the
    /// gradient at the convolution's output). Training mode only, as the convolution's.
    func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        guard isTraining else { throw EngineError.invalidArgument("\(conv.weight.name): backward in evaluation mode") }
        if let norm {
            try norm.backward(input: conv.output, outputGrad: outputGrad, inputGrad: outputGrad)
        }
        try conv.backward(input: x, outputGrad: outputGrad, inputGrad: inputGrad)
    }

    func initialize(_ initialization: Initialization, rng: inout SeededRandom) {
        switch initialization {
        case .pytorchDefault:
            Initializer.pytorchDefault(weight: conv.weight.value, bias: conv.bias?.value, rng: &rng)
        case .xavierUniform:
            Initializer.xavierUniform(conv.weight.value, rng: &rng)
            conv.bias?.value.zero()
        case .kaimingNormalFanOut:
            Initializer.kaimingNormalFanOut(conv.weight.value, rng: &rng)
            conv.bias?.value.zero()
        case let .normal(std):
            rng.fillNormal(conv.weight.value, std: std)
            conv.bias?.value.zero()
        }
    }
}
