import Foundation
import SSDEngine
import SSDLayers

/// torchvision's ImageNet VGG16 → the SSD300 base network, as the reference tutorial does it:
/// conv1_1…conv5_3 copied; fc6 and fc7 turned into convolutions and decimated.
public enum VGGImport {
    /// torchvision `features` indices of the 13 convolutions, in order.
    public static let featureIndices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    /// Our names for them.
    public static let convolutionNames = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                                          "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]

    /// Keeps every `steps[d]`-th index of dimension `d` (starting at 0); nil keeps the whole
    /// dimension: `index_select(d, arange(0, size, step))` for each decimated dimension.
    public static func decimate(_ tensor: Tensor, steps: [Int?]) throws -> Tensor {
        guard steps.count == tensor.shape.count else {
            throw EngineError.invalidArgument("decimate: \(steps.count) steps for a tensor of rank \(tensor.shape.count)")
        }
        var outShape: [Int] = []
        for (size, step) in zip(tensor.shape, steps) {
            let s = step ?? 1
            guard s >= 1 else { throw EngineError.invalidArgument("decimate: step \(s) must be at least 1") }
            outShape.append((size + s - 1) / s)
        }
        let out = Tensor(shape: outShape)
        guard out.count > 0 else { return out }
        let rank = outShape.count
        // Input strides (row-major) scaled by each step: a strided view, copied contiguous.
        var inputStrides = [Int](repeating: 1, count: rank)
        for d in stride(from: rank - 2, through: 0, by: -1) { inputStrides[d] = inputStrides[d + 1] * tensor.shape[d + 1] }
        let jumps = (0..<rank).map { inputStrides[$0] * (steps[$0] ?? 1) }
        copyStrided(from: UnsafeRawBufferPointer(tensor.buffer), base: 0, shape: outShape, strides: jumps,
                    elementSize: MemoryLayout<Float>.stride, into: UnsafeMutableRawBufferPointer(out.buffer))
        return out
    }

    /// A float tensor widened (or, for f64, rounded) to f32.
    public static func floatTensor(_ tensor: TorchTensor, name: String, file: String) throws -> Tensor {
        guard tensor.isConsistent else {
            throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)': \(tensor.bytes.count) bytes do not match shape \(tensor.shape) of \(tensor.dtype.rawValue)")
        }
        let out = Tensor(shape: tensor.shape)
        try tensor.bytes.withUnsafeBytes { raw in
            let n = out.count
            switch tensor.dtype {
            case .float32:
                for i in 0..<n { out.data[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .float16:
                for i in 0..<n { out.data[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case .bfloat16:
                for i in 0..<n { out.data[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case .float64:
                for i in 0..<n { out.data[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            default:
                throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected a float type")
            }
        }
        return out
    }

    /// Maps torchvision VGG16 weights (`features.N.*`, `classifier.0.*`, `classifier.3.*`) to
    /// `base.conv1_1.weight` … `base.conv7.bias`, checking every shape.
    public static func convert(_ tensors: [String: TorchTensor], file: String) throws -> [(String, Tensor)] {
        func take(_ name: String, shape expected: [Int]?) throws -> Tensor {
            guard let t = tensors[name] else {
                throw InteropError.unexpectedContent(file: file, message: "no tensor '\(name)' (not a torchvision VGG16 state dict?)")
            }
            if let expected, t.shape != expected {
                throw InteropError.unexpectedContent(file: file, message: "tensor '\(name)' has shape \(t.shape), expected \(expected)")
            }
            return try floatTensor(t, name: name, file: file)
        }
        var out: [(String, Tensor)] = []
        var inputChannels = 3
        for (index, ourName) in zip(featureIndices, convolutionNames) {
            let weight = try take("features.\(index).weight", shape: nil)
            guard weight.shape.count == 4, weight.shape[1] == inputChannels, weight.shape[2] == 3, weight.shape[3] == 3 else {
                throw InteropError.unexpectedContent(file: file, message: "tensor 'features.\(index).weight' has shape \(weight.shape), expected (out, \(inputChannels), 3, 3)")
            }
            let bias = try take("features.\(index).bias", shape: [weight.shape[0]])
            out.append(("base.\(ourName).weight", weight))
            out.append(("base.\(ourName).bias", bias))
            inputChannels = weight.shape[0]
        }
        let fc6 = try take("classifier.0.weight", shape: [4096, 25088])
        let fc6Bias = try take("classifier.0.bias", shape: [4096])
        let fc7 = try take("classifier.3.weight", shape: [4096, 4096])
        let fc7Bias = try take("classifier.3.bias", shape: [4096])
        out.append(("base.conv6.weight", try decimate(try reshaped(fc6, [4096, 512, 7, 7]), steps: [4, nil, 3, 3])))
        out.append(("base.conv6.bias", try decimate(fc6Bias, steps: [4])))
        out.append(("base.conv7.weight", try decimate(try reshaped(fc7, [4096, 4096, 1, 1]), steps: [4, 4, nil, nil])))
        out.append(("base.conv7.bias", try decimate(fc7Bias, steps: [4])))
        return out
    }

    /// `ssd convert vgg16`: reads a torchvision VGG16 `.pth`, writes the SSD300 base weights
    /// (never over `input`).
    public static func convertFile(input: URL, output: URL) throws -> Int {
        try refuseOverwritingInput(input: input, output: output)
        let file = try TorchFile(url: input)
        var byName: [String: TorchTensor] = [:]
        for (name, tensor) in try TorchConversion.stateDictTensors(file) { byName[name] = tensor }
        let tensors = try convert(byName, file: file.path)
        try SafetensorsWriter.write(tensors, metadata: ["source": "torchvision vgg16"], to: output)
        return tensors.count
    }

    private static func reshaped(_ tensor: Tensor, _ shape: [Int]) throws -> Tensor {
        let out = Tensor(shape: shape)
        guard out.count == tensor.count else {
            throw EngineError.shapeMismatch(what: "reshape", expected: shape, got: tensor.shape)
        }
        out.copy(from: tensor)
        return out
    }
}
