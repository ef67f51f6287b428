import SSDEngine
import SSDLayers

/// A convolution, then batch normalisation when the spec has one, then the activation —
/// fused into the convolution when there is no batch norm, into the batch norm otherwise.
final class ConvolutionBlock: Layer {
    let conv: Conv2D
    let norm: BatchNorm2D?

    init(_ spec: ConvolutionSpec, algorithm: ConvolutionAlgorithm, backend: Backend) {
        let layout = spec.nchwOutput ? .nchw : backend.preferredLayout(channels: spec.outputChannels)
        conv = Conv2D(name: spec.name, inputChannels: spec.inputChannels, outputChannels: spec.outputChannels,
                      kernelSize: spec.kernelSize, stride: spec.stride, padding: spec.padding, dilation: spec.dilation,
                      groups: spec.groups, bias: spec.bias, activation: spec.normalization == nil ? spec.activation : .none, outputLayout: layout,
                      algorithm: algorithm, backend: backend)
        norm = spec.normalization.map {
            BatchNorm2D(name: $0, channels: spec.outputChannels, epsilon: spec.epsilon, momentum: spec.momentum,
                        activation: spec.activation)
        }
    }

    /// The block's output (after the activation).
    var output: Tensor { norm?.output ?? conv.output }
    var parameters: [Parameter] { conv.parameters + (norm?.parameters ?? []) }
    var buffers: [Buffer] { norm?.buffers ?? [] }
    var sublayers: [Layer] { [conv] + (norm.map { [$0] } ?? []) }
    var isTraining: Bool {
        get { conv.isTraining }
        set {
            conv.isTraining = newValue
            norm?.isTraining = newValue
        }
    }

    @discardableResult
    func forward(_ x: Tensor) throws -> Tensor {
        let y = try conv.forward(x)
        return try norm?.forward(y) ?? y
    }

    /// Overwrites `outputGrad` (activation mask, then — with batch normalisation, in place — the
    /// gradient at the convolution's output).
    func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        if let norm { try norm.backward(input: conv.output, outputGrad: outputGrad, inputGrad: outputGrad) }
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
