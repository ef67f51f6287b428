import SSDEngine
import SSDLayers

/// Turns `LayerSpec`s into layers on one backend, initialising each as its spec says. The
/// random draws follow the order of the walk, so a seed gives the same model every time.
struct LayerBuilder {
    let algorithm: ConvolutionAlgorithm
    let backend: Backend

    func build(_ spec: LayerSpec, rng: inout SeededRandom) throws -> Layer {
        switch spec {
        case let .convolution(c):
            let block = ConvolutionBlock(c, algorithm: algorithm, backend: backend)
            block.initialize(c.initialization, rng: &rng)
            return block
        case let .maxPool(kernelSize, stride, padding, ceilMode):
            return MaxPool2D(kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode, backend: backend)
        case let .l2Norm(name, channels, initialScale):
            return L2Norm(name: name, channels: channels, initialScale: initialScale)
        case let .squeezeExcitation(name, channels, squeezeChannels):
            // torchvision leaves its 1×1 convolutions at PyTorch's default initialisation.
            let layer = SqueezeExcitation(name: name, channels: channels, squeezeChannels: squeezeChannels, backend: backend)
            for conv in [layer.fc1, layer.fc2] {
                Initializer.pytorchDefault(weight: conv.weight.value, bias: conv.bias?.value, rng: &rng)
            }
            return layer
        case let .sequence(specs):
            return Sequential(try specs.map { try build($0, rng: &rng) })
        case let .residual(specs):
            return Residual(Sequential(try specs.map { try build($0, rng: &rng) }))
        }
    }
}
