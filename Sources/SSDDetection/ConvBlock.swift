import SSDEngine
import SSDLayers

/// A convolution followed by ReLU — with batch normalisation between them when configured
/// (conv → BN → ReLU). Without it, bias and ReLU are fused into the convolution.
final class ConvBlock {
    let conv: Conv2D
    let norm: BatchNorm2D?

    init(_ name: String, _ input: Int, _ output: Int, _ kernel: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
         batchNorm: Bool, algorithm: ConvolutionAlgorithm, backend: Backend) {
        let prefix = name.split(separator: ".").dropLast().joined(separator: ".")
        let layer = name.split(separator: ".").last.map(String.init) ?? name
        conv = Conv2D(name: name, inputChannels: input, outputChannels: output, kernelSize: kernel, stride: stride,
                      padding: padding, dilation: dilation, activation: batchNorm ? .none : .relu,
                      outputLayout: backend.preferredLayout(channels: output), algorithm: algorithm, backend: backend)
        // base.conv4_3 → base.bn4_3
        norm = batchNorm ? BatchNorm2D(name: prefix + "." + layer.replacingOccurrences(of: "conv", with: "bn"),
                                       channels: output, activation: .relu) : nil
    }

    /// The block's output (after the ReLU).
    var output: Tensor { norm?.output ?? conv.output }
    var parameters: [Parameter] { conv.parameters + (norm?.parameters ?? []) }

    func forward(_ x: Tensor) throws -> Tensor {
        let y = try conv.forward(x)
        return try norm?.forward(y) ?? y
    }

    /// Backward from `outputGrad`, which it overwrites (ReLU mask, then — with batch
    /// normalisation, in place — the gradient at the convolution's output).
    func backward(input x: Tensor, outputGrad: Tensor, inputGrad: Tensor?) throws {
        if let norm { try norm.backward(input: conv.output, outputGrad: outputGrad, inputGrad: outputGrad) }
        try conv.backward(input: x, outputGrad: outputGrad, inputGrad: inputGrad)
    }
}
