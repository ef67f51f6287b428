import Foundation
import XCTest
import SSDEngine
import SSDInterop
import SSDLayers
import SSDTestSupport

/// fc6/fc7 decimation and the torchvision → SSD300 name mapping, on synthetic tensors of the real shapes.
final class VGGImportTests: XCTestCase {
    /// A tensor whose element at flat index i holds a value unique to i (exact in f32 below 2^24,
    /// so larger tensors use a hash that is checked against the source element instead).
    private func patterned(_ shape: [Int]) -> Tensor {
        let t = Tensor(shape: shape)
        for i in 0..<t.count { t.data[i] = Float(bitPattern: 0x3F80_0000 | UInt32(truncatingIfNeeded: i & 0x7F_FFFF)) + Float(i >> 23) }
        return t
    }

    func testFC6DecimationPicksIndexArithmeticElements() throws {
        let fc6 = patterned([4096, 512, 7, 7])
        let conv6 = try VGGImport.decimate(fc6, steps: [4, nil, 3, 3])
        XCTAssertEqual(conv6.shape, [1024, 512, 3, 3])
        // out[o, c, h, w] = in[4o, c, 3h, 3w]; in flat index = ((4o·512 + c)·7 + 3h)·7 + 3w.
        for (o, c, h, w) in [(0, 0, 0, 0), (1, 0, 0, 0), (1023, 511, 2, 2), (5, 17, 1, 2), (700, 300, 2, 0)] {
            let source = ((4 * o * 512 + c) * 7 + 3 * h) * 7 + 3 * w
            let target = ((o * 512 + c) * 3 + h) * 3 + w
            XCTAssertEqual(conv6.data[target].bitPattern, fc6.data[source].bitPattern, "(\(o), \(c), \(h), \(w))")
        }
        // out[0,0,0,1] is in[0,0,0,3], not in[0,0,0,1].
        XCTAssertEqual(conv6.data[1], fc6.data[3])
        XCTAssertNotEqual(conv6.data[1], fc6.data[1])
    }

    func testFC7DecimationAndBiases() throws {
        let fc7 = patterned([4096, 4096, 1, 1])
        let conv7 = try VGGImport.decimate(fc7, steps: [4, 4, nil, nil])
        XCTAssertEqual(conv7.shape, [1024, 1024, 1, 1])
        for (o, i) in [(0, 0), (0, 1), (1, 0), (1023, 1023), (17, 900)] {
            XCTAssertEqual(conv7.data[o * 1024 + i], fc7.data[(4 * o) * 4096 + 4 * i], "(\(o), \(i))")
        }
        let bias = patterned([4096])
        let decimated = try VGGImport.decimate(bias, steps: [4])
        XCTAssertEqual(decimated.shape, [1024])
        XCTAssertEqual(decimated.array, stride(from: 0, to: 4096, by: 4).map { bias.data[$0] })
        // A size not divisible by the step keeps ceil(size / step), like arange.
        XCTAssertEqual(try VGGImport.decimate(patterned([10]), steps: [3]).shape, [4])
        XCTAssertThrowsError(try VGGImport.decimate(bias, steps: [0]))
        XCTAssertThrowsError(try VGGImport.decimate(bias, steps: [4, 4]))
    }

    private func torchTensor(_ shape: [Int], seed: UInt32) -> TorchTensor {
        let count = shape.reduce(1, *)
        var bytes = [UInt8](repeating: 0, count: 4 * count)
        bytes.withUnsafeMutableBytes { raw in
            for i in 0..<count { raw.storeBytes(of: Float(Int(seed) * 1000 + i % 997), toByteOffset: 4 * i, as: Float.self) }
        }
        return TorchTensor(dtype: .float32, shape: shape, bytes: bytes)
    }

    func testTorchvisionNamesMapToTheSSDBase() throws {
        let channels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
        var state: [String: TorchTensor] = [:]
        var input = 3
        for (n, (index, out)) in zip(VGGImport.featureIndices, channels).enumerated() {
            state["features.\(index).weight"] = torchTensor([out, input, 3, 3], seed: UInt32(n))
            state["features.\(index).bias"] = torchTensor([out], seed: UInt32(100 + n))
            input = out
        }
        state["classifier.0.weight"] = torchTensor([4096, 25088], seed: 50)
        state["classifier.0.bias"] = torchTensor([4096], seed: 51)
        state["classifier.3.weight"] = torchTensor([4096, 4096], seed: 52)
        state["classifier.3.bias"] = torchTensor([4096], seed: 53)
        state["classifier.6.weight"] = torchTensor([1000, 4096], seed: 54) // ignored
        let converted = Dictionary(uniqueKeysWithValues: try VGGImport.convert(state, file: "vgg16.pth"))
        XCTAssertEqual(converted.count, 30)
        XCTAssertEqual(converted["base.conv4_3.weight"]?.shape, [512, 512, 3, 3])
        XCTAssertEqual(converted["base.conv6.weight"]?.shape, [1024, 512, 3, 3])
        XCTAssertEqual(converted["base.conv6.bias"]?.shape, [1024])
        XCTAssertEqual(converted["base.conv7.weight"]?.shape, [1024, 1024, 1, 1])
        // conv3_3 is features.14 (the 7th convolution, seed 6): copied exactly.
        let conv33 = try XCTUnwrap(converted["base.conv3_3.weight"])
        XCTAssertEqual(conv33.data[0], 6000)
        XCTAssertEqual(conv33.data[5], 6005)
        XCTAssertEqual(converted["base.conv5_3.bias"]?.data[1], 112_001)
        // conv7 bias[k] = fc7 bias[4k] = 53000 + (4k mod 997).
        XCTAssertEqual(converted["base.conv7.bias"]?.data[300], Float(53000 + 1200 % 997))
        // conv6 weight[1, 0, 0, 1] = fc6 weight[4, 3] (row 4 of (4096, 25088), column 0·49 + 0·7 + 3).
        XCTAssertEqual(converted["base.conv6.weight"]?.data[9 * 512 + 1], Float(50000 + (4 * 25088 + 3) % 997))
        // A wrong shape names the tensor.
        state["classifier.3.weight"] = torchTensor([4096, 4095], seed: 52)
        assertInteropError(try VGGImport.convert(state, file: "vgg16.pth")) { XCTAssertTrue($0.description.contains("classifier.3.weight")) }
    }
}
