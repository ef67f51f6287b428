import Foundation
import XCTest
import SSDTestSupport

/// `ssd convert mobilenet-v3-large` and `ssd convert ssdlite320` through the binary, on `.pth`
/// files written here with torchvision's names: the converted files work where they are meant
/// to (`ssd train --model ssdlite320 --weights`, `ssd detect`), broken ones are refused naming
/// the file and the tensor.
final class TorchvisionConvertTests: BinaryTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let photo = repository.appendingPathComponent("samples/002010.jpg")

    func testImageNetBackboneConvertsAndInitialisesSSDLiteTraining() throws {
        let folder = try scratch()
        let input = folder.appendingPathComponent("mobilenet_v3_large-imagenet.pth")
        try TorchSave.stateDict(TorchvisionMobileNetV3.stateDict()).write(to: input)
        let backbone = folder.appendingPathComponent("backbone.safetensors")
        let converted = try ssd(["convert", "mobilenet-v3-large", input.path, "-o", backbone.path])
        XCTAssertEqual(converted.status, 0, converted.all)
        XCTAssertTrue(converted.output.contains("wrote 214 backbone tensors"), converted.output)
        XCTAssertTrue(converted.error.contains("note:") && converted.error.contains("not imported") && converted.error.contains("full-tail"),
                      converted.error)

        let lists = try dataLists(from: try syntheticVOC(in: folder, train: 2, test: 1), in: folder)
        let trained = try ssd(["train", "--data", lists.path, "--output", folder.appendingPathComponent("run").path, "--model", "ssdlite320",
                               "--weights", backbone.path, "--iterations", "1", "--batch-size", "2", "--workers", "1"])
        XCTAssertEqual(trained.status, 0, trained.all)
        XCTAssertTrue(trained.error.contains("initialised 214 of") && trained.error.contains(backbone.path), trained.error)

        // A tensor of the right name and the wrong shape is an error naming it, not a silent skip.
        let wrong = folder.appendingPathComponent("wrong.pth")
        try TorchSave.stateDict([("backbone.features.0.0.0.weight", .random([8, 3, 3, 3], seed: 1))]).write(to: wrong)
        let wrongWeights = folder.appendingPathComponent("wrong.safetensors")
        XCTAssertEqual(try ssd(["convert", "pth", wrong.path, "-o", wrongWeights.path]).status, 0)
        let refused = try ssd(["train", "--data", lists.path, "--output", folder.appendingPathComponent("run2").path, "--model", "ssdlite320",
                               "--weights", wrongWeights.path, "--iterations", "1", "--batch-size", "2", "--workers", "1"])
        XCTAssertNotEqual(refused.status, 0, refused.all)
        XCTAssertTrue(refused.error.contains(wrongWeights.path) && refused.error.contains("'backbone.features.0.0.0.weight'")
                      && refused.error.contains("[16, 3, 3, 3]"), refused.error)
    }

    func testBrokenBackboneIsRefusedNamingTheTensor() throws {
        let folder = try scratch()
        let input = folder.appendingPathComponent("broken.pth")
        try TorchSave.stateDict(TorchvisionMobileNetV3.stateDict().filter { $0.0 != "features.12.block.2.fc2.bias" }).write(to: input)
        let output = folder.appendingPathComponent("out.safetensors")
        let outcome = try ssd(["convert", "mobilenet-v3-large", input.path, "-o", output.path])
        XCTAssertEqual(outcome.status, 1, outcome.all)
        XCTAssertTrue(outcome.error.contains(input.path) && outcome.error.contains("'features.12.block.2.fc2.bias'"), outcome.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
    }

    func testTorchvisionDetectionCheckpointConvertsAndDetects() throws {
        guard let weights = Fixtures.url("ssdlite320/weights_f16.safetensors") else { throw XCTSkip("ssdlite320 fixture missing") }
        let folder = try scratch()
        let input = folder.appendingPathComponent("ssdlite320.pth")
        try TorchSave.stateDict(fromSafetensors: weights).write(to: input)
        let output = folder.appendingPathComponent("ssdlite320.safetensors")
        let converted = try ssd(["convert", "ssdlite320", input.path, "-o", output.path])
        XCTAssertEqual(converted.status, 0, converted.all)
        XCTAssertTrue(converted.output.contains("model tensors"), converted.output)
        let detected = try ssd(["detect", Self.photo.path, "--weights", output.path, "--out", folder.appendingPathComponent("out").path])
        XCTAssertEqual(detected.status, 0, detected.all)

        // With class names from a file; a list of the wrong length is refused.
        let names = folder.appendingPathComponent("names.txt")
        try (["__background__"] + (1...20).map { "class\($0)" }).joined(separator: "\n").write(to: names, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ssd(["convert", "ssdlite320", input.path, "-o", output.path, "--class-names", names.path]).status, 0)
        let short = folder.appendingPathComponent("short.txt")
        try "cat\ndog\n".write(to: short, atomically: true, encoding: .utf8)
        let refused = try ssd(["convert", "ssdlite320", input.path, "-o", folder.appendingPathComponent("x.safetensors").path,
                               "--class-names", short.path])
        XCTAssertEqual(refused.status, 1, refused.all)
        XCTAssertTrue(refused.error.contains(short.path) && refused.error.contains("2 class names"), refused.error)
    }

    func testClassifierFileIsNotADetectionCheckpoint() throws {
        let folder = try scratch()
        let input = folder.appendingPathComponent("mobilenet.pth")
        try TorchSave.stateDict(TorchvisionMobileNetV3.stateDict()).write(to: input)
        let output = folder.appendingPathComponent("out.safetensors")
        let outcome = try ssd(["convert", "ssdlite320", input.path, "-o", output.path])
        XCTAssertEqual(outcome.status, 1, outcome.all)
        XCTAssertTrue(outcome.error.contains(input.path) && outcome.error.contains("not a torchvision ssdlite320_mobilenet_v3_large")
                      && outcome.error.contains("head.classification_head.module_list.5.1.bias"), outcome.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
    }
}
