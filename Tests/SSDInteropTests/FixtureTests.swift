import Foundation
import XCTest
import SSDInterop
import SSDLayers
import SSDTestSupport

/// Every torch_interop fixture reads back bit-exactly equal to its expected safetensors file,
/// through the library and through the `ssd convert` code path.
final class FixtureTests: XCTestCase {
    private func assertEqual(_ got: [(name: String, tensor: TorchTensor)], _ expected: RawSafetensors, _ label: String) {
        XCTAssertEqual(Set(got.map(\.name)), Set(expected.tensors.keys), "\(label): tensor names")
        for (name, tensor) in got {
            guard let want = expected.tensors[name] else { continue }
            XCTAssertEqual(tensor.dtype, want.dtype, "\(label): dtype of \(name)")
            XCTAssertEqual(tensor.shape, want.shape, "\(label): shape of \(name)")
            XCTAssertEqual(tensor.bytes, want.bytes, "\(label): bytes of \(name)")
        }
    }

    func testStateDictFilesMatchExpected() throws {
        let expected = try RawSafetensors(url: try fixture("state_dict_expected.safetensors"))
        XCTAssertEqual(expected.tensors.count, 9)
        for name in ["state_dict_zip.pth", "state_dict_legacy.pth"] {
            let file = try TorchFile(url: try fixture(name))
            XCTAssertEqual(file.isZip, name.contains("zip"))
            assertEqual(try TorchConversion.stateDictTensors(file), expected, name)
        }
    }

    func testNonContiguousAndOffsetViews() throws {
        let file = try TorchFile(url: try fixture("state_dict_zip.pth"))
        guard case let .tensor(weight)? = file.root["classifier.0.weight"], case let .tensor(bias)? = file.root["classifier.0.bias"] else {
            return XCTFail("classifier tensors missing")
        }
        XCTAssertEqual(weight.strides, [1, 5], "the fixture's transposed view")
        XCTAssertGreaterThan(bias.storageOffset, 0, "the fixture's offset view")
        // Element (i, j) of a (5, 6) view with strides (1, 5) is storage element i + 5j.
        let whole = TorchTensorReference(storage: weight.storage, storageOffset: 0, shape: [weight.storage.elementCount], strides: [1])
        let storage = try file.materialize(whole, name: "storage")
        let view = try file.materialize(weight, name: "w")
        for (i, j) in [(0, 1), (4, 5), (2, 3)] {
            let viewIndex: Int = 4 * (6 * i + j)
            let storageIndex: Int = 4 * (i + 5 * j)
            XCTAssertEqual(Array(view.bytes[viewIndex..<(viewIndex + 4)]), Array(storage.bytes[storageIndex..<(storageIndex + 4)]))
        }
    }

    func testCheckpointsMatchExpected() throws {
        let expected = try RawSafetensors(url: try fixture("tutorial_style_expected.safetensors"))
        XCTAssertTrue(expected.tensors.keys.contains("priors_cxcy"))
        for name in ["tutorial_style_checkpoint.pth.tar", "tutorial_style_checkpoint_zip.pth.tar"] {
            let file = try TorchFile(url: try fixture(name))
            let (tensors, metadata) = try TorchConversion.checkpointTensors(file)
            assertEqual(tensors, expected, name)
            XCTAssertEqual(metadata, expected.metadata, name)
            // The whole model is an object tree of its classes, not executed.
            guard case let .object(model)? = file.root["model"] else { return XCTFail("model is not an object node") }
            XCTAssertEqual(model.className, "model.SSD300")
            guard case let .object(optimizer)? = file.root["optimizer"] else { return XCTFail("optimizer is not an object node") }
            XCTAssertEqual(optimizer.className, "torch.optim.sgd.SGD")
        }
    }

    func testConvertCommandsWriteExpectedFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stateExpected = try RawSafetensors(url: try fixture("state_dict_expected.safetensors"))
        for name in ["state_dict_zip.pth", "state_dict_legacy.pth"] {
            let out = directory.appendingPathComponent(name + ".safetensors")
            XCTAssertEqual(try TorchConversion.convertStateDict(input: try fixture(name), output: out), 9)
            XCTAssertEqual(try RawSafetensors(url: out).tensors, stateExpected.tensors, name)
        }
        let modelExpected = try RawSafetensors(url: try fixture("tutorial_style_expected.safetensors"))
        for name in ["tutorial_style_checkpoint.pth.tar", "tutorial_style_checkpoint_zip.pth.tar"] {
            let out = directory.appendingPathComponent(name + ".safetensors")
            XCTAssertEqual(try TorchConversion.convertCheckpoint(input: try fixture(name), output: out), modelExpected.tensors.count)
            XCTAssertEqual(try RawSafetensors(url: out), modelExpected, name)
            // The team's reader (what SSDModel.load uses) opens it and widens to f32 exactly.
            let file = try SafetensorsFile(url: out)
            XCTAssertEqual(try file.tensor("base.conv1_1.weight").shape, [4, 3, 3, 3])
        }
        // No temporary files are left beside the outputs.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [])
    }

    func testConvertPthOnCheckpointKeepsOptimizerStateNames() throws {
        // `convert pth` on a whole checkpoint names every tensor by its path, modules included.
        let tensors = try TorchConversion.stateDictTensors(try TorchFile(url: try fixture("tutorial_style_checkpoint_zip.pth.tar")))
        let names = Set(tensors.map(\.name))
        XCTAssertTrue(names.contains("model.base.conv1_1.weight"))
        XCTAssertTrue(names.contains("model.priors_cxcy"))
    }

    func testMissingFileIsAClearError() {
        assertInteropError(try TorchFile(url: URL(fileURLWithPath: "/nonexistent/x.pth"))) { error in
            XCTAssertTrue(error.description.hasPrefix("/nonexistent/x.pth: "), error.description)
        }
    }
}
