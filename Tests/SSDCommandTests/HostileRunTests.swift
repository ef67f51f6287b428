import Foundation
import SSDData
import XCTest

/// Hostile and careless use of `ssd detect`, `eval`, `map` and weights files, through the
/// binary: every case once failed silently, crashed or lost work (issue 10).
final class HostileRunTests: BinaryTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let weights = repository.appendingPathComponent("models/shapes-compact.safetensors")

    /// A process killed by a signal (abort, trap) rather than exiting with an error.
    func assertCleanFailure(_ outcome: Outcome, mentions needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(outcome.status, 1, "expected exit 1 with a message, got \(outcome.status): \(outcome.all)", file: file, line: line)
        for needle in needles {
            XCTAssertTrue(outcome.all.contains(needle), "message lacks '\(needle)': \(outcome.all)", file: file, line: line)
        }
    }

    // MARK: Weights files

    /// The shipped weights with their metadata and data rewritten.
    func editedWeights(in folder: URL, name: String, metadata: [String: String] = [:],
                       data transform: ((inout [Float]) -> Void)? = nil) throws -> URL {
        let bytes = try Data(contentsOf: Self.weights)
        let length = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + length))) as! [String: Any]
        var meta = header["__metadata__"] as! [String: String]
        for (key, value) in metadata { meta[key] = value }
        header["__metadata__"] = meta
        var payload = bytes.subdata(in: (8 + length)..<bytes.count)
        if let transform {
            var floats = payload.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            transform(&floats)
            payload = floats.withUnsafeBufferPointer { Data(buffer: $0) }
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(payload)
        let url = folder.appendingPathComponent(name)
        try out.write(to: url)
        return url
    }

    /// A few synthetic test photos (the shapes the shipped model detects).
    func photos(in folder: URL, count: Int = 2) throws -> [URL] {
        let voc = try syntheticVOC(in: folder, train: 0, test: count)
        return try FileManager.default.contentsOfDirectory(at: voc.appendingPathComponent("JPEGImages"), includingPropertiesForKeys: nil)
            .sorted { $0.path < $1.path }
    }

    func testHugeClassCountInMetadataIsRefusedBeforeAllocating() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        for classes in ["100000000", "2305843009213693952"] {
            let weights = try editedWeights(in: dir, name: "classes-\(classes).safetensors", metadata: ["n_classes": classes])
            let outcome = try ssd(["detect", photo.path, "--weights", weights.path])
            assertCleanFailure(outcome, mentions: [weights.path, "classes"])
        }
    }

    func testHugeTopKMeansAll() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        let outcome = try ssd(["detect", photo.path, "--weights", Self.weights.path, "--top-k", "10000000000"])
        XCTAssertEqual(outcome.status, 0, outcome.all)
        XCTAssertTrue(outcome.output.contains(photo.path), outcome.all)
    }

    func testNonFiniteWeightsAreRefused() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        let nan = try editedWeights(in: dir, name: "nan.safetensors") { $0 = [Float](repeating: .nan, count: $0.count) }
        assertCleanFailure(try ssd(["detect", photo.path, "--weights", nan.path]), mentions: [nan.path, "NaN"])
        assertCleanFailure(try ssd(["eval", "--voc", dir.appendingPathComponent("voc").path, "--weights", nan.path]),
                           mentions: [nan.path, "NaN"])
    }

    func testOverflowingOutputsAreReportedNotWrittenAsJSONErrors() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        // Finite weights whose activations overflow: every output becomes infinite or NaN.
        let huge = try editedWeights(in: dir, name: "huge.safetensors") { values in
            for i in values.indices { values[i] = values[i] < 0 ? -1e30 : 1e30 }
        }
        let json = dir.appendingPathComponent("out.json")
        let outcome = try ssd(["detect", photo.path, "--weights", huge.path, "--json", json.path])
        assertCleanFailure(outcome, mentions: [photo.path, "not finite"])
        XCTAssertFalse(outcome.all.contains("NSCocoaErrorDomain"), outcome.all)
        XCTAssertFalse(outcome.output.contains("nothing found"), "no silent 'nothing found': \(outcome.all)")
        let eval = try ssd(["eval", "--voc", dir.appendingPathComponent("voc").path, "--weights", huge.path])
        assertCleanFailure(eval, mentions: ["not finite"])
    }

    /// A device reads forever and a FIFO waits for a writer: every file a command reads is
    /// refused by its kind, in words (it said "permission" before).
    func testDevicesAndFIFOsAreRefusedByKind() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        let fifo = dir.appendingPathComponent("fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        for path in ["/dev/zero", fifo.path] {
            for arguments in [["detect", photo.path, "--weights", path], ["map", "--input", path],
                              ["convert", "pth", path, "-o", dir.appendingPathComponent("x.safetensors").path],
                              ["detect", path, "--weights", Self.weights.path]] {
                let outcome = try ssd(arguments)
                XCTAssertEqual(outcome.status, 1, "\(arguments): \(outcome.all)")
                XCTAssertTrue(outcome.error.contains("\(path): cannot read: not a regular file"), "\(arguments): \(outcome.all)")
            }
        }
    }

    // MARK: detect

    func testOneBadPhotoDoesNotLoseTheOthers() throws {
        let dir = try scratch()
        let good = try photos(in: dir, count: 2)
        let bad = dir.appendingPathComponent("broken.jpg")
        try Data("not a jpeg at all".utf8).write(to: bad)
        let json = dir.appendingPathComponent("detections.json")
        let outcome = try ssd(["detect", good[0].path, bad.path, good[1].path, "--weights", Self.weights.path, "--json", json.path])
        XCTAssertEqual(outcome.status, 1, outcome.all)
        XCTAssertTrue(outcome.error.contains(bad.path), outcome.all)
        let records = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [[String: Any]]
        XCTAssertEqual(records.compactMap { $0["image"] as? String }, [good[0].path, good[1].path])
    }

    func testPhotosWithTheSameNameGetTheirOwnAnnotatedFiles() throws {
        let dir = try scratch()
        let source = try photos(in: dir, count: 2)
        var inputs: [URL] = []
        for (i, photo) in source.enumerated() {
            let folder = dir.appendingPathComponent("set\(i)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let copy = folder.appendingPathComponent("photo.jpg")
            try FileManager.default.copyItem(at: photo, to: copy)
            inputs.append(copy)
        }
        let out = dir.appendingPathComponent("annotated")
        let outcome = try ssd(["detect"] + inputs.map(\.path) + ["--weights", Self.weights.path, "--out", out.path])
        XCTAssertEqual(outcome.status, 0, outcome.all)
        let written = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".png") }
        XCTAssertEqual(written.count, 2, "\(written)")
    }

    func testUnwritableOutputsFailBeforeInference() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        let blocker = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: blocker)
        let json = blocker.appendingPathComponent("out.json").path  // under a regular file: cannot exist
        let detect = try ssd(["detect", photo.path, "--weights", Self.weights.path, "--json", json])
        assertCleanFailure(detect, mentions: ["--json"])
        XCTAssertFalse(detect.output.contains(photo.path), "no inference before the check: \(detect.all)")
        let eval = try ssd(["eval", "--voc", dir.appendingPathComponent("voc").path, "--weights", Self.weights.path, "--json", json])
        assertCleanFailure(eval, mentions: ["--json"])
        XCTAssertFalse(eval.output.contains("mAP"), "no evaluation before the check: \(eval.all)")
    }

    func testJSONThroughASymlinkKeepsTheLink() throws {
        let dir = try scratch()
        let photo = try photos(in: dir, count: 1)[0]
        let target = dir.appendingPathComponent("real.json"), link = dir.appendingPathComponent("link.json")
        try Data("[]".utf8).write(to: target)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
        let outcome = try ssd(["detect", photo.path, "--weights", Self.weights.path, "--json", link.path])
        XCTAssertEqual(outcome.status, 0, outcome.all)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), target.path)
        let records = try JSONSerialization.jsonObject(with: Data(contentsOf: target)) as! [[String: Any]]
        XCTAssertEqual(records.count, 1)
    }

    // MARK: eval

    /// The same test set listed with the classes in another order gives the same mAP: labels
    /// are matched by name through label_map.json.
    func testEvalMapsLabelsByName() throws {
        let dir = try scratch()
        let voc = try syntheticVOC(in: dir, train: 0, test: 6)
        func lists(_ name: String, _ classes: [String]) throws -> URL {
            let folder = dir.appendingPathComponent(name)
            let made = try ssd(["create-data-lists", "--voc07", voc.path, "--output", folder.path, "--classes",
                                classes.joined(separator: ","), "--train-split", "test", "--test-split", "test"])
            XCTAssertEqual(made.status, 0, made.all)
            return folder
        }
        func mAP(_ folder: URL) throws -> Double {
            let json = dir.appendingPathComponent("\(folder.lastPathComponent).json")
            let outcome = try ssd(["eval", "--data", folder.path, "--weights", Self.weights.path, "--json", json.path])
            XCTAssertEqual(outcome.status, 0, outcome.all)
            return try (JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any])["mAP"] as! Double
        }
        let inOrder = try mAP(lists("ordered", SyntheticVOC.classes))
        let reversed = try mAP(lists("reversed", SyntheticVOC.classes.reversed()))
        XCTAssertGreaterThan(inOrder, 0.3, "the shipped model finds the shapes")
        XCTAssertEqual(inOrder, reversed, accuracy: 1e-12)
        let other = try lists("other", Array(SyntheticVOC.classes.dropLast()) + ["hexagon"])
        assertCleanFailure(try ssd(["eval", "--data", other.path, "--weights", Self.weights.path]), mentions: ["hexagon", "ring"])
    }

    // MARK: map

    func testMapRejectsLabelsThatAreNotClassIndices() throws {
        let dir = try scratch()
        let box = [0.1, 0.1, 0.5, 0.5]
        for (label, why) in [("1e300", "not a label"), ("1.7", "not a label"), ("-1", "not a label"), ("99", "only 20 classes")] {
            let text = """
                {"true_boxes": [[\(box), \(box)]], "true_labels": [[1, \(label)]], "true_difficulties": [[0, 0]],
                 "det_boxes": [[\(box)]], "det_labels": [[1]], "det_scores": [[0.9]]}
                """
            let input = dir.appendingPathComponent("case.json")
            try Data(text.utf8).write(to: input)
            let outcome = try ssd(["map", "--input", input.path])
            assertCleanFailure(outcome, mentions: [input.path, "true_labels'[0][1]", why])
            XCTAssertFalse(outcome.all.contains("USAGE"), "a data error, not a usage error: \(outcome.all)")
        }
    }

    // MARK: flags

    func testNegativeNumbersAreValidatedNotMissing() throws {
        let outcome = try ssd(["train", "--data", "/nonexistent", "--batch-size", "-1"])
        XCTAssertNotEqual(outcome.status, 0)
        XCTAssertTrue(outcome.error.contains("--batch-size must be at least 1"), outcome.error)
        let topK = try ssd(["detect", "x.jpg", "--weights", "w", "--top-k", "-5"])
        XCTAssertTrue(topK.error.contains("--top-k must be at least 1"), topK.error)
    }

    func testHyperparametersMustBeFiniteAndInRange() throws {
        for (flag, value) in [("--lr", "inf"), ("--lr", "nan"), ("--momentum", "nan"), ("--momentum", "1.5"),
                              ("--weight-decay", "inf"), ("--weight-decay", "-1"), ("--decay-factor", "nan"),
                              ("--decay-factor", "0"), ("--bias-lr-multiplier", "inf"), ("--gradient-clip", "inf")] {
            let outcome = try ssd(["train", "--data", "/nonexistent", flag, value])
            XCTAssertNotEqual(outcome.status, 0, "\(flag) \(value)")
            XCTAssertTrue(outcome.error.contains(flag), "\(flag) \(value): \(outcome.error)")
        }
    }
}
