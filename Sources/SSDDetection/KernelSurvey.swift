import SSDEngine
import SSDLayers

/// Which implementation oneDNN picks for every primitive of a model on this host.
public enum KernelSurvey {
    /// Builds a model of `configuration` on a fresh oneDNN backend, runs an inference forward
    /// and a training step (forward, MultiBox loss, backward) on `batch` random images, and
    /// returns every oneDNN primitive those created, in creation order.
    public static func survey(_ configuration: SSDConfiguration, algorithm: ConvolutionAlgorithm,
                              batch: Int = 1) throws -> [KernelImplementation] {
        DNNLBackend.resetKernelLog()
        let model = try SSDModel(configuration: configuration, algorithm: algorithm, backend: DNNLBackend())
        var rng = SeededRandom(seed: 7)
        let images = Tensor(shape: [batch, 3, model.inputSize, model.inputSize])
        rng.fillNormal(images)
        model.isTraining = false
        try model.forward(images)
        model.isTraining = true
        let (locs, scores) = try model.forward(images)
        let truths = (0..<batch).map { _ in GroundTruth(boxes: [0.2, 0.3, 0.6, 0.8], labels: [1]) }
        let gradLocs = Tensor(shape: locs.shape), gradScores = Tensor(shape: scores.shape)
        _ = try model.makeLoss().compute(locs: locs, scores: scores, truths: truths,
                                                                   gradLocs: gradLocs, gradScores: gradScores)
        try model.backward(gradLocs: gradLocs, gradScores: gradScores)
        // Kernels that are not oneDNN primitives (our Winograd): named by their layer.
        let oneDNN = Set(DNNLBackend.createdKernels.map(\.implementation))
        let ours = model.convolutions.filter { $0.implementation != "none" && !oneDNN.contains($0.implementation) }
            .map { KernelImplementation(operation: "convolution forward and backward \($0.weight.name.dropLast(7))",
                                        implementation: $0.implementation) }
        return DNNLBackend.createdKernels + ours
    }
}
