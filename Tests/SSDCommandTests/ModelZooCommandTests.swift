import Foundation
import SSDData
import SSDLayers
import XCTest

/// The model zoo through the binary: `--model` on train, eval, detect and bench, `ssd info
/// --models`, checkpoints that say which model they are (and old ones that don't), and a
/// resumed run that keeps its checkpoint's model.
final class ModelZooCommandTests: BinaryTestCase {
    /// A synthetic set (`train` training and `test` test images) and its data lists.
    func smallSet(in dir: URL, train: Int = 4, test: Int = 2) throws -> (voc: URL, lists: URL) {
        let voc = try syntheticVOC(in: dir, train: train, test: test)
        return (voc, try dataLists(from: voc, in: dir))
    }

    /// `ssd train` of `model` at batch 2 (one data worker, a log line and checkpoint every iteration).
    func train(_ lists: URL, _ output: URL, iterations: Int, _ extra: [String]) throws -> Outcome {
        try ssd(["train", "--data", lists.path, "--output", output.path, "--iterations", String(iterations),
                 "--workers", "1", "--log-every", "1", "--threads", "2"] + extra)
    }

    func checkpoint(_ output: URL) -> URL { output.appendingPathComponent("checkpoint.safetensors") }

    /// The `__metadata__` of a safetensors file, read with SSDLayers' reader.
    func metadata(_ url: URL) throws -> [String: String] { try SafetensorsFile(url: url).metadata }

    func loggedIterations(_ output: URL) throws -> [Int] {
        let text = try String(contentsOf: output.appendingPathComponent("train_log.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["iteration"] as? Int
        }
    }

    /// The mAP `ssd eval` printed (the line `mAP  0.1234  (voc07)`), or nil.
    func printedMAP(_ output: String) -> Double? {
        for line in output.split(separator: "\n") where line.hasPrefix("mAP") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3, fields[2] == "(voc07)" else { continue }
            return Double(fields[1])
        }
        return nil
    }

    /// Train `model` for `iterations` at batch 2, then: the checkpoint's metadata names it, eval
    /// prints an mAP in [0, 1] (and writes the same one as JSON), detect writes the annotated
    /// image and the JSON list for a synthetic photo.
    func trainEvaluateDetect(_ model: String, iterations: Int) throws -> (lists: URL, checkpoint: URL, photo: URL) {
        let dir = try scratch()
        let (voc, lists) = try smallSet(in: dir)
        let output = dir.appendingPathComponent("run")
        let trained = try train(lists, output, iterations: iterations, ["--model", model, "--batch-size", "2"])
        XCTAssertEqual(trained.status, 0, trained.all)
        XCTAssertTrue(trained.error.contains("training \(model) with 7 classes"), trained.error)
        let ckpt = checkpoint(output)
        let m = try metadata(ckpt)
        XCTAssertEqual(m["model"], model, "\(m)")
        XCTAssertEqual(m["iteration"], String(iterations), "\(m)")
        XCTAssertEqual(m["n_classes"], "7", "\(m)")

        let apJSON = dir.appendingPathComponent("ap.json")
        let evaluated = try ssd(["eval", "--weights", ckpt.path, "--data", lists.path, "--batch-size", "2", "--threads", "2",
                                 "--json", apJSON.path])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        let mAP = try XCTUnwrap(printedMAP(evaluated.output), "eval prints an mAP: \(evaluated.output)")
        XCTAssertTrue((0...1).contains(mAP), "\(mAP)")
        XCTAssertTrue(evaluated.error.contains("2 images"), evaluated.error)
        let written = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: apJSON)) as? [String: Any])
        let writtenMAP = try XCTUnwrap(written["mAP"] as? Double)
        XCTAssertEqual(writtenMAP, mAP, accuracy: 1e-4)

        let photo = try XCTUnwrap(FileManager.default.contentsOfDirectory(
            at: voc.appendingPathComponent("JPEGImages"), includingPropertiesForKeys: nil).first { $0.pathExtension == "jpg" })
        let out = dir.appendingPathComponent("detections"), json = dir.appendingPathComponent("detections.json")
        let detected = try ssd(["detect", "--weights", ckpt.path, "--model", model, "--out", out.path, "--json", json.path,
                                "--threads", "2", photo.path])
        XCTAssertEqual(detected.status, 0, detected.all)
        XCTAssertTrue(detected.output.contains(photo.path), detected.output)
        let annotated = out.appendingPathComponent(photo.deletingPathExtension().lastPathComponent + "_detections.png")
        XCTAssertTrue(FileManager.default.fileExists(atPath: annotated.path), "annotated image written")
        let records = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [[String: Any]])
        XCTAssertEqual(records.count, 1)
        XCTAssertEqual(records.first?["image"] as? String, photo.path)
        XCTAssertEqual(records.first?["annotated"] as? String, annotated.path)
        XCTAssertNotNil(records.first?["detections"] as? [Any])
        return (lists, ckpt, photo)
    }

    // MARK: 1. Each new model end to end

    func testSSDLite320TrainsEvaluatesAndDetects() throws {
        let (lists, ckpt, photo) = try trainEvaluateDetect("ssdlite320", iterations: 2)
        // Weights of one model asked to be another's: refused, naming both kinds.
        let wrong = try ssd(["eval", "--weights", ckpt.path, "--data", lists.path, "--model", "ssd300"])
        XCTAssertNotEqual(wrong.status, 0, wrong.all)
        XCTAssertTrue(wrong.error.contains("ssdlite320") && wrong.error.contains("ssd300"), wrong.error)
        XCTAssertNil(printedMAP(wrong.output), "evaluated nothing: \(wrong.output)")
        let wrongDetect = try ssd(["detect", "--weights", ckpt.path, "--model", "compact", photo.path])
        XCTAssertNotEqual(wrongDetect.status, 0, wrongDetect.all)
        XCTAssertTrue(wrongDetect.error.contains("ssdlite320") && wrongDetect.error.contains("compact"), wrongDetect.error)
    }

    /// SSD512 is slow (about 3 CPU-seconds per image and training step): one training step at
    /// batch 2 (forward, loss, backward, SGD step, checkpoint), 2 test images, one photo.
    func testSSD512TrainsEvaluatesAndDetects() throws {
        _ = try trainEvaluateDetect("ssd512", iterations: 1)
    }

    // MARK: 2–3. Resuming

    /// `--model` with `--resume` is refused before anything is touched, even when it names the
    /// checkpoint's own model (a compact checkpoint here: the refusal does not depend on the kind).
    /// A resumed run keeps its checkpoint's model: a --model (or width, or batch norm) that
    /// contradicts it is refused, naming both; one that agrees is accepted.
    func testResumeRefusesAnotherModel() throws {
        let dir = try scratch()
        let (_, lists) = try smallSet(in: dir)
        let output = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(lists, output, iterations: 1, Self.compactModel + ["--batch-size", "2"]).status, 0)
        let before = try Data(contentsOf: checkpoint(output))
        for flags in [["--model", "ssd512"], ["--width-divisor", "4"]] {
            let refused = try train(lists, output, iterations: 2, ["--resume", checkpoint(output).path] + flags)
            XCTAssertNotEqual(refused.status, 0, refused.all)
            XCTAssertTrue(refused.error.contains(flags[0]) && refused.error.contains("checkpoint: "), refused.error)
            XCTAssertFalse(refused.error.contains("resuming at"), "refused before resuming: \(refused.error)")
        }
        XCTAssertEqual(try Data(contentsOf: checkpoint(output)), before, "the checkpoint is untouched")
        XCTAssertEqual(try loggedIterations(output), [1])
        let agreed = try train(lists, output, iterations: 2, ["--resume", checkpoint(output).path, "--model", "compact"])
        XCTAssertEqual(agreed.status, 0, agreed.all)
        XCTAssertEqual(try loggedIterations(output), [1, 2])
    }

    func testResumedSSDLiteRunContinuesAsSSDLite() throws {
        let dir = try scratch()
        let (_, lists) = try smallSet(in: dir)
        let output = dir.appendingPathComponent("run")
        let first = try train(lists, output, iterations: 2, ["--model", "ssdlite320", "--batch-size", "2"])
        XCTAssertEqual(first.status, 0, first.all)
        let resumed = try train(lists, output, iterations: 3, ["--resume", checkpoint(output).path])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertTrue(resumed.error.contains("resuming at iteration 2 of 3"), resumed.error)
        XCTAssertTrue(resumed.error.contains("training ssdlite320 with 7 classes"), resumed.error)
        let m = try metadata(checkpoint(output))
        XCTAssertEqual(m["model"], "ssdlite320", "\(m)")
        XCTAssertEqual(m["iteration"], "3", "\(m)")
        XCTAssertEqual(m["batch_size"], "2", "\(m)")
        XCTAssertEqual(try loggedIterations(output), [1, 2, 3])
    }

    // MARK: 4–6. bench, info, help

    func testBenchTimesTheChosenModel() throws {
        let bench = try ssd(["bench", "--model", "ssdlite320", "--workload", "inference", "--inference-batches", "1",
                             "--repeats", "1", "--threads", "2"])
        XCTAssertEqual(bench.status, 0, bench.all)
        XCTAssertTrue(bench.output.contains("model: ssdlite320 (21 classes), input 320×320, 3234 priors"), bench.output)
        XCTAssertTrue(bench.output.range(of: #"inference  batch  1: +[0-9.]+ ms/batch +[0-9.]+ img/s"#,
                                         options: .regularExpression) != nil, bench.output)
        // Post-processing is timed at the model's own settings (torchvision's for SSDLite), not the tutorial's.
        XCTAssertTrue(bench.output.contains("min score 0.001, top 300"), bench.output)
        XCTAssertFalse(bench.output.contains("train step"), "inference only: \(bench.output)")
    }

    func testInfoSurveysOnlyTheChosenModel() throws {
        let info = try ssd(["info", "--models", "ssdlite320", "--brief", "--threads", "2"])
        XCTAssertEqual(info.status, 0, info.all)
        XCTAssertTrue(info.output.contains("ssdlite320 (21 classes, 320×320)"), info.output)
        XCTAssertTrue(info.output.contains("3234 priors"), info.output)
        XCTAssertTrue(info.output.range(of: #"\n  [0-9]+ kernels: "#, options: .regularExpression) != nil, info.output)
        for other in ["ssd300 (", "ssd512 (", "compact ("] {
            XCTAssertFalse(info.output.contains(other), "only ssdlite320 surveyed: \(info.output)")
        }
        XCTAssertFalse(info.output.contains("SLOW (reference implementation)"), info.output)
        XCTAssertFalse(info.error.contains("reference implementation"), info.error)
    }

    func testHelpNamesEveryModel() throws {
        for command in ["train", "eval", "detect", "bench"] {
            let help = try ssd([command, "--help"])
            XCTAssertEqual(help.status, 0, help.all)
            XCTAssertTrue(help.output.contains("--model"), "\(command): \(help.output)")
            for model in ["ssd300", "ssd512", "ssdlite320", "compact"] {
                XCTAssertTrue(help.output.contains(model), "ssd \(command) --help names \(model): \(help.output)")
            }
        }
        let info = try ssd(["info", "--help"])
        XCTAssertTrue(info.output.contains("--models"), info.output)
    }

    // MARK: 7. Checkpoints from before models had names

    /// A compact checkpoint with `model` taken out of its metadata, as every checkpoint was
    /// before the zoo: 1/8 widths and batch norm say it is compact.
    func testCheckpointWithoutModelMetadataIsReadAsCompact() throws {
        let dir = try scratch()
        let (_, lists) = try smallSet(in: dir)
        let output = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(lists, output, iterations: 1, Self.compactModel + ["--batch-size", "2"]).status, 0)
        let file = try SafetensorsFile(url: checkpoint(output))
        var old = file.metadata
        XCTAssertEqual(old.removeValue(forKey: "model"), "compact")
        let bytes = try Data(contentsOf: checkpoint(output))
        let headerLength = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let dataStart = 8 + headerLength
        let entries = file.names.map { name -> SafetensorsWriter.Entry in
            let e = file.entries[name]!
            return SafetensorsWriter.Entry(name: name, dtype: e.dtype, shape: e.shape, byteCount: e.range.count) {
                $0.append(bytes.subdata(in: (dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)))
            }
        }
        let legacy = dir.appendingPathComponent("legacy.safetensors")
        try SafetensorsWriter.encode(entries: entries, metadata: old).write(to: legacy)
        let written = try metadata(legacy)
        XCTAssertNil(written["model"])
        XCTAssertEqual(written["width_divisor"], "8")
        XCTAssertEqual(written["batch_norm"], "1")

        let evaluated = try ssd(["eval", "--weights", legacy.path, "--data", lists.path, "--model", "compact", "--threads", "2"])
        XCTAssertEqual(evaluated.status, 0, evaluated.all)
        XCTAssertNotNil(printedMAP(evaluated.output), evaluated.output)
        let notSSD300 = try ssd(["eval", "--weights", legacy.path, "--data", lists.path, "--model", "ssd300"])
        XCTAssertNotEqual(notSSD300.status, 0, notSSD300.all)
        XCTAssertTrue(notSSD300.error.contains("compact weights"), notSSD300.error)
        // And it resumes as compact, writing the name it lacked.
        let resumed = try train(lists, dir.appendingPathComponent("resumed"), iterations: 2, ["--resume", legacy.path])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertEqual(try metadata(checkpoint(dir.appendingPathComponent("resumed")))["model"], "compact")
    }
}
