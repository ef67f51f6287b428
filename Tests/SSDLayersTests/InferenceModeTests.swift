import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

/// Inference kernels keep the weights prepared (reordered, transformed) between calls; they
/// must prepare them again whenever the weights change — through a load, an optimizer step or
/// any write that marks the tensor modified — and never serve stale ones.
final class InferenceModeTests: XCTestCase {
    func testInferenceForwardFollowsEveryWeightChange() throws {
        let backend = DNNLBackend()
        let layout = backend.preferredLayout(channels: 32)
        let conv = Conv2D(name: "c", inputChannels: 32, outputChannels: 32, kernelSize: 3, padding: 1, activation: .relu,
                          outputLayout: layout, algorithm: .direct, backend: backend)
        conv.isTraining = false
        let plain = randomTensor([2, 32, 9, 9], seed: 1)
        let x = Tensor(shape: plain.shape, layout: layout)
        try backend.reorder(plain, into: x)
        let naive = try NaiveBackend().convolution(
            ConvolutionShape(batch: 2, inChannels: 32, outChannels: 32, inHeight: 9, inWidth: 9, kernelSize: (3, 3), padding: (1, 1)),
            algorithm: .direct, input: layout, output: layout, fusedReLU: true)
        func check(_ label: String) throws {
            let y = try conv.forward(x)
            let expected = Tensor(shape: y.shape, layout: layout)
            try naive.forward(input: x.data, weight: conv.weight.value.data, bias: conv.bias.value.data, output: expected.data)
            XCTAssertLessThan(maxDifference(y, expected).relative, 1e-5, label)
        }
        conv.weight.value.copy(from: randomTensor(conv.weight.shape, seed: 2, std: 0.1))
        try check("first weights")
        try check("same weights again (prepared copy reused)")
        conv.weight.value.copy(from: randomTensor(conv.weight.shape, seed: 3, std: 0.1))
        try check("after copy(from:)")
        conv.weight.grad.copy(from: randomTensor(conv.weight.shape, seed: 4))
        SGD(parameters: conv.parameters, configuration: SGDConfiguration(learningRate: 0.5)).step()
        try check("after an SGD step")
        for i in 0..<conv.weight.value.count { conv.weight.value.data[i] *= -1 }
        conv.weight.value.markModified()
        try check("after a write through data marked modified")
        // Training mode keeps its own plan: switching back and forth re-plans nothing and agrees.
        conv.isTraining = true
        try check("training mode")
        conv.isTraining = false
        try check("inference mode again")
    }
}
