import Foundation
import XCTest

/// The `ssd` executable as a user meets it: help texts, usage errors, one-line errors naming
/// the file, exit codes, and `ssd map` end to end.
final class CommandLineTests: BinaryTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("SSDEvaluationTests/Fixtures")

    func testHelpListsTheSubcommandsAndTheirFlags() throws {
        let help = try ssd(["--help"])
        XCTAssertEqual(help.status, 0)
        for command in ["demo", "create-data-lists", "train", "eval", "detect", "map", "convert", "bench"] {
            XCTAssertTrue(help.output.contains(command), "ssd --help lists \(command)")
        }
        let train = try ssd(["train", "--help"]).output
        for flag in ["--data", "--weights", "--resume", "--batch-size", "--lr", "--momentum", "--weight-decay", "--iterations",
                     "--decay-at", "--checkpoint-every", "--optimizer", "--overwrite"] {
            XCTAssertTrue(train.contains(flag), "ssd train --help shows \(flag)")
        }
        let detect = try ssd(["detect", "--help"]).output
        for flag in ["--weights", "--out", "--json", "--min-score", "--max-overlap", "--top-k", "--suppress"] {
            XCTAssertTrue(detect.contains(flag), "ssd detect --help shows \(flag)")
        }
        let eval = try ssd(["eval", "--help"]).output
        for flag in ["--voc", "--split", "--data", "--weights", "--json", "--metric", "--min-score"] {
            XCTAssertTrue(eval.contains(flag), "ssd eval --help shows \(flag)")
        }
    }

    func testUsageErrorsAndContradictions() throws {
        let unknown = try ssd(["train", "--data", "x", "--no-such-flag"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.error.contains("no-such-flag"), unknown.error)
        let both = try ssd(["train", "--data", "x", "--weights", "a", "--resume", "b"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.error.contains("contradict"), both.error)
        let neither = try ssd(["eval", "--weights", "w.safetensors"])
        XCTAssertNotEqual(neither.status, 0)
        XCTAssertTrue(neither.error.contains("--voc") && neither.error.contains("--data"), neither.error)
    }

    func testMissingFilesGiveOneLineErrorsNamingThem() throws {
        for arguments in [["detect", "/nonexistent/photo.jpg", "--weights", "/nonexistent/w.safetensors"],
                          ["eval", "--data", "/nonexistent/lists", "--weights", "/nonexistent/w.safetensors"],
                          ["map", "--input", "/nonexistent/case.json"],
                          ["train", "--data", "/nonexistent/lists"]] {
            let outcome = try ssd(arguments)
            XCTAssertNotEqual(outcome.status, 0, "\(arguments)")
            XCTAssertTrue(outcome.error.contains("/nonexistent/"), "\(arguments): \(outcome.error)")
            XCTAssertEqual(outcome.error.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1,
                           "\(arguments): one line: \(outcome.error)")
        }
    }

    func testMapReproducesTheReference() throws {
        let input = fixtures.appendingPathComponent("map_case.json")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("map-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: out) }
        let outcome = try ssd(["map", "--input", input.path, "--json", out.path])
        XCTAssertEqual(outcome.status, 0, outcome.error)
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        let expected = (try JSONSerialization.jsonObject(with: Data(contentsOf: input)) as! [String: Any])["expected"] as! [String: Any]
        XCTAssertEqual(written["mAP"] as! Double, expected["mAP"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(written["metric"] as? String, "voc07")
        let aps = written["APs"] as! [String: Double], expectedAPs = expected["APs"] as! [String: Double]
        XCTAssertEqual(Set(aps.keys), Set(expectedAPs.keys))
        for (name, ap) in expectedAPs { XCTAssertEqual(aps[name]!, ap, accuracy: 1e-6, name) }
        XCTAssertTrue(outcome.output.contains("mAP"))
    }

    /// Under `--metric coco` a class without ground truth is not evaluated: "n/a" in the table,
    /// null in the JSON, and the mean is that of the others.
    func testMapMarksClassesNotEvaluated() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("map-coco-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("case.json"), out = folder.appendingPathComponent("ap.json")
        try Data("""
            {"true_boxes": [[[0, 0, 10, 10]]], "true_labels": [[1]], "true_difficulties": [[0]],
             "det_boxes": [[[0, 0, 10, 10], [20, 20, 30, 30]]], "det_labels": [[1, 2]], "det_scores": [[0.9, 0.8]]}
            """.utf8).write(to: input)
        let outcome = try ssd(["map", "--input", input.path, "--metric", "coco", "--classes", "cat,dog", "--json", out.path])
        XCTAssertEqual(outcome.status, 0, outcome.error)
        XCTAssertTrue(outcome.output.split(separator: "\n").contains { $0.hasPrefix("dog") && $0.hasSuffix("n/a") }, outcome.output)
        let written = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any])
        let aps = try XCTUnwrap(written["APs"] as? [String: Any])
        XCTAssertTrue(aps["dog"] is NSNull, "\(aps)")
        XCTAssertEqual(try XCTUnwrap(aps["cat"] as? Double), 1, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(written["mAP"] as? Double), 1, accuracy: 1e-6)
    }
}

extension CommandLineTests {
    /// `ssd info` names the CPU tier, oneDNN's version and the layout, and lists a kernel for
    /// every primitive of every model — none of them oneDNN's reference loops.
    func testInfoNamesTheTierAndEveryKernel() throws {
        let info = try ssd(["info"])
        XCTAssertEqual(info.status, 0, info.error)
        for needle in ["tier ", "oneDNN 2.", "dispatches ", "activation layout ", "ssd300 (", "ssd512 (", "ssdlite320 (", "compact (",
                       "convolution forward", "max pooling backward", "reorder"] {
            XCTAssertTrue(info.output.contains(needle), "ssd info lacks '\(needle)':\n\(info.output.prefix(2000))")
        }
        XCTAssertFalse(info.output.contains("SLOW"), info.output)
        let brief = try ssd(["info", "--brief"])
        XCTAssertLessThan(brief.output.split(separator: "\n").count, 12, "--brief is a summary")
    }
}
