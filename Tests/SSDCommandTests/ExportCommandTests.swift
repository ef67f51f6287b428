import Foundation
import SSDLayers
import XCTest

/// `ssd export onnx` through the binary: what it writes, what it refuses to replace, and the
/// sample of ssd's own outputs that runtimes are checked against (tools/onnx-check).
final class ExportCommandTests: BinaryTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let weights = repository.appendingPathComponent("models/shapes-compact.safetensors")
    static let photos = ["002010.jpg", "002020.jpg"].map { repository.appendingPathComponent("samples/\($0)").path }

    func testWritesTheModelAndASampleOfSSDsOutputs() throws {
        let dir = try scratch()
        let onnx = dir.appendingPathComponent("m.onnx"), sample = dir.appendingPathComponent("s.safetensors")
        let run = try ssd(["export", "onnx", "--weights", Self.weights.path, "-o", onnx.path, "--with-postprocess",
                           "--min-score", "0.3", "--write-sample", sample.path] + Self.photos)
        XCTAssertEqual(run.status, 0, run.all)
        XCTAssertTrue(run.output.contains("opset 17"), run.output)
        XCTAssertTrue(run.output.contains("min score 0.3"), run.output)
        let bytes = try Data(contentsOf: onnx)
        XCTAssertGreaterThan(bytes.count, 1_000_000)
        XCTAssertTrue(run.output.contains(String(format: "%.1f MB", Double(bytes.count) / 1e6)), run.output)
        let file = try SafetensorsFile(url: sample)
        XCTAssertEqual(file.entries["images"]?.shape, [2, 3, 300, 300])
        XCTAssertEqual(file.entries["locs"]?.shape, [2, 8732, 4])
        XCTAssertEqual(file.entries["class_logits"]?.shape, [2, 8732, 7])
        let labels = try file.integers("detection_labels"), images = try file.integers("detection_batch_index")
        XCTAssertFalse(labels.values.isEmpty, "the shipped model finds shapes in the samples")
        XCTAssertTrue(labels.values.allSatisfy { (1...6).contains($0) }, "\(labels.values): no placeholder label 0")
        XCTAssertTrue(images.values.allSatisfy { (0...1).contains($0) })
        XCTAssertEqual(file.entries["detection_boxes"]?.shape, [labels.values.count, 4])
        let scores = try file.tensor("detection_scores")
        let values = (0..<scores.count).map { scores.data[$0] }
        XCTAssertTrue(values.allSatisfy { $0 > 0.3 }, "\(values)")
        XCTAssertEqual(values, values.sorted(by: >), "sorted by descending score, as the ONNX outputs")
    }

    func testRefusesToReplaceAnExistingFileUnlessAsked() throws {
        let dir = try scratch()
        let onnx = dir.appendingPathComponent("m.onnx")
        try Data("mine".utf8).write(to: onnx)
        let refused = try ssd(["export", "onnx", "--weights", Self.weights.path, "-o", onnx.path])
        XCTAssertEqual(refused.status, 1, refused.all)
        XCTAssertTrue(refused.all.contains("already exists") && refused.all.contains("--overwrite"), refused.all)
        XCTAssertEqual(try Data(contentsOf: onnx), Data("mine".utf8), "untouched")
        let replaced = try ssd(["export", "onnx", "--weights", Self.weights.path, "-o", onnx.path, "--overwrite"])
        XCTAssertEqual(replaced.status, 0, replaced.all)
        XCTAssertGreaterThan(try Data(contentsOf: onnx).count, 1_000_000)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m.onnx"], "no temporary file left")
    }

    func testArgumentsThatContradictAreRefusedBeforeAnythingIsWritten() throws {
        let dir = try scratch()
        let onnx = dir.appendingPathComponent("m.onnx").path
        let cases: [([String], String)] = [
            (["--min-score", "0.5"], "--with-postprocess"),
            (["--with-postprocess", "--top-k", "0"], "--top-k"),
            (["--with-postprocess", "--max-overlap", "1.5"], "--max-overlap"),
            (["--write-sample", dir.appendingPathComponent("s.safetensors").path], "at least one image"),
            (Self.photos, "--write-sample"),
            (["--write-sample", onnx] + Self.photos, "same file"),
        ]
        for (extra, needle) in cases {
            let run = try ssd(["export", "onnx", "--weights", Self.weights.path, "-o", onnx] + extra)
            XCTAssertNotEqual(run.status, 0, "\(extra): \(run.all)")
            XCTAssertTrue(run.all.contains(needle), "\(extra): message lacks '\(needle)': \(run.all)")
        }
        let missing = try ssd(["export", "onnx", "--weights", dir.appendingPathComponent("none.safetensors").path, "-o", onnx])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.all.contains("none.safetensors"), missing.all)
        let badImage = try ssd(["export", "onnx", "--weights", Self.weights.path, "-o", onnx,
                                "--write-sample", dir.appendingPathComponent("s.safetensors").path, Self.weights.path])
        XCTAssertEqual(badImage.status, 1, badImage.all)
        XCTAssertTrue(badImage.all.contains("shapes-compact.safetensors"), badImage.all)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "nothing written")
    }
}
