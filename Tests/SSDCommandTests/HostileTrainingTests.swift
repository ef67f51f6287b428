import Foundation
import XCTest

/// Careless and unlucky training runs through the binary: a learning rate that blows up, a
/// fresh run pointed at an old one, resumes with contradicting flags, Ctrl-C, kill -9 (issue 10).
final class HostileTrainingTests: BinaryTestCase {
    /// A small training set (8 synthetic images) and its lists.
    func trainingLists(in dir: URL) throws -> URL {
        try dataLists(from: try syntheticVOC(in: dir, train: 8, test: 2), in: dir)
    }

    /// `ssd train` of the compact model at batch 2 on `lists` into `output`.
    func train(_ lists: URL, _ output: URL, iterations: Int, _ extra: [String] = []) throws -> Outcome {
        try ssd(["train", "--data", lists.path, "--output", output.path, "--iterations", String(iterations), "--batch-size", "2",
                 "--optimizer", "adam", "--workers", "1", "--log-every", "1"] + Self.compactModel + extra)
    }

    func loggedIterations(_ output: URL) throws -> [Int] {
        let text = try String(contentsOf: output.appendingPathComponent("train_log.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["iteration"] as? Int
        }
    }

    /// Every float of a safetensors file's data is finite (all its tensors are F32).
    func allFinite(_ url: URL) throws -> Bool {
        let bytes = try Data(contentsOf: url)
        let length = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        return bytes.subdata(in: (8 + length)..<bytes.count).withUnsafeBytes { $0.bindMemory(to: Float.self).allSatisfy(\.isFinite) }
    }

    func testAnExplodingRunNeverSavesANonFiniteCheckpoint() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        let outcome = try ssd(["train", "--data", lists.path, "--output", output.path, "--iterations", "6", "--batch-size", "2",
                               "--lr", "1e8", "--checkpoint-every", "1", "--workers", "1"] + Self.compactModel)
        XCTAssertEqual(outcome.status, 1, outcome.all)
        XCTAssertTrue(outcome.error.contains("non-finite"), outcome.all)
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        if FileManager.default.fileExists(atPath: checkpoint.path) {
            XCTAssertTrue(try allFinite(checkpoint), "the checkpoint left behind holds NaN or infinity")
            XCTAssertTrue(outcome.error.contains(checkpoint.path), "names the last good checkpoint: \(outcome.error)")
        } else {
            XCTAssertTrue(outcome.error.contains("No checkpoint"), "says none was written: \(outcome.error)")
        }
    }

    func testAFreshRunDoesNotReplaceAnEarlierOne() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(lists, output, iterations: 2).status, 0)
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        let before = try Data(contentsOf: checkpoint)
        let again = try train(lists, output, iterations: 2)
        XCTAssertEqual(again.status, 1, again.all)
        XCTAssertTrue(again.error.contains("--resume") && again.error.contains("--overwrite"), again.error)
        XCTAssertEqual(try Data(contentsOf: checkpoint), before, "the earlier checkpoint is untouched")
        XCTAssertEqual(try loggedIterations(output), [1, 2])
        let overwritten = try train(lists, output, iterations: 3, ["--overwrite"])
        XCTAssertEqual(overwritten.status, 0, overwritten.all)
        XCTAssertEqual(try loggedIterations(output), [1, 2, 3], "a fresh log, not appended to the old one")
    }

    /// A run that crashed after logging past its last checkpoint resumes with the log cut back,
    /// so no iteration is logged twice.
    func testResumeCutsTheLogBackToTheCheckpoint() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        XCTAssertEqual(try train(lists, output, iterations: 2).status, 0)
        let atTwo = try Data(contentsOf: checkpoint)
        XCTAssertEqual(try train(lists, output, iterations: 4, ["--resume", checkpoint.path]).status, 0)
        XCTAssertEqual(try loggedIterations(output), [1, 2, 3, 4])
        try atTwo.write(to: checkpoint)  // as if killed after logging 3 and 4 but before checkpointing them
        let resumed = try train(lists, output, iterations: 4, ["--resume", checkpoint.path])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertEqual(try loggedIterations(output), [1, 2, 3, 4])
    }

    func testResumeRefusesContradictingFlagsAndFinishedRuns() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        let checkpoint = output.appendingPathComponent("checkpoint.safetensors")
        XCTAssertEqual(try train(lists, output, iterations: 2).status, 0)
        for flags in [["--batch-size", "4"], ["--seed", "7"], ["--optimizer", "sgd"]] {
            let outcome = try ssd(["train", "--data", lists.path, "--output", output.path, "--iterations", "4",
                                   "--resume", checkpoint.path] + flags)
            XCTAssertEqual(outcome.status, 1, "\(flags): \(outcome.all)")
            XCTAssertTrue(outcome.error.contains(flags[0]), "\(flags): \(outcome.error)")
        }
        let finished = try ssd(["train", "--data", lists.path, "--output", output.path, "--iterations", "2", "--resume", checkpoint.path])
        XCTAssertEqual(finished.status, 1, finished.all)
        XCTAssertTrue(finished.error.contains("already at iteration 2"), finished.error)
        XCTAssertFalse(finished.output.contains("loss plot"), "prints no paths: \(finished.output)")
    }

    func testInterruptCheckpointsAndExits130() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        let process = Process()
        process.executableURL = try binary
        process.arguments = ["train", "--data", lists.path, "--output", output.path, "--iterations", "100000", "--batch-size", "2",
                             "--optimizer", "adam", "--workers", "1", "--log-every", "1"] + Self.compactModel
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Interrupt once training is under way (the log has a line).
        let log = output.appendingPathComponent("train_log.jsonl")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ((try? Data(contentsOf: log))?.count ?? 0) == 0 { usleep(100_000) }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 130)
        XCTAssertTrue(FileManager.default.fileExists(atPath: output.appendingPathComponent("checkpoint.safetensors").path))
    }

    /// `ssd demo` into a folder holding an earlier demo replaces it only with --overwrite.
    func testDemoDoesNotReplaceAnEarlierDemoUnasked() throws {
        let dir = try scratch()
        let output = dir.appendingPathComponent("demo").path
        let small = ["demo", "--output", output, "--train-images", "4", "--test-images", "1", "--iterations", "1",
                     "--batch-size", "2", "--samples", "1", "--workers", "1"]
        XCTAssertEqual(try ssd(small).status, 0)
        let checkpoint = URL(fileURLWithPath: output).appendingPathComponent("run/checkpoint.safetensors")
        let before = try Data(contentsOf: checkpoint)
        let again = try ssd(small)
        XCTAssertEqual(again.status, 1, again.all)
        XCTAssertTrue(again.error.contains("--overwrite"), again.error)
        XCTAssertEqual(try Data(contentsOf: checkpoint), before)
        let replaced = try ssd(small + ["--overwrite"])
        XCTAssertEqual(replaced.status, 0, replaced.all)
    }

    func testTemporaryFilesOfAKilledRunAreRemovedAtTheNextStart() throws {
        let dir = try scratch()
        let lists = try trainingLists(in: dir), output = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(lists, output, iterations: 1).status, 0)
        // What kill -9 during a checkpoint write leaves: a temporary of a process that is gone.
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let stale = output.appendingPathComponent(".checkpoint.safetensors.tmp-\(dead.processIdentifier)")
        try Data(count: 1000).write(to: stale)
        let resumed = try train(lists, output, iterations: 2, ["--resume", output.appendingPathComponent("checkpoint.safetensors").path])
        XCTAssertEqual(resumed.status, 0, resumed.all)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path), "stale temporary removed")
    }
}
