import Foundation
import SSDData
import XCTest

/// Base of the tests that run the `ssd` executable as a user would: the binary built beside the
/// test bundle, a scratch folder per test, and small data sets made on the fly.
class BinaryTestCase: XCTestCase {
    /// The `ssd` binary built beside this test bundle, or `$SSD_BINARY` (to run these tests
    /// against another build, e.g. an older one, to see which cases it fails).
    var binary: URL {
        get throws {
            if let path = ProcessInfo.processInfo.environment["SSD_BINARY"] { return URL(fileURLWithPath: path) }
            var dir = Bundle(for: Self.self).bundleURL
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("ssd")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
            throw XCTSkip("the ssd executable was not built beside the tests")
        }
    }

    struct Outcome {
        let status: Int32
        let output: String
        let error: String
        /// Standard output and standard error together, for messages that may go to either.
        var all: String { output + error }
    }

    /// Runs `ssd arguments`, optionally sending `signal` to it after `signalAfter` seconds.
    func ssd(_ arguments: [String], environment: [String: String]? = nil, currentDirectory: URL? = nil,
             signal: Int32? = nil, signalAfter: Double = 0) throws -> Outcome {
        try launch(try binary, arguments, environment: environment, currentDirectory: currentDirectory,
                   signal: signal, signalAfter: signalAfter)
    }

    /// Runs `executable arguments` (`ssd`, or a launcher such as `mpirun` that runs it), as `ssd` does.
    func launch(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil, currentDirectory: URL? = nil,
                signal: Int32? = nil, signalAfter: Double = 0) throws -> Outcome {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        if let signal {
            DispatchQueue.global().asyncAfter(deadline: .now() + signalAfter) { kill(process.processIdentifier, signal) }
        }
        // Read both pipes concurrently so a chatty child cannot block on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let errorData = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errorData.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                       error: String(decoding: errorData.data, as: UTF8.self))
    }

    /// A fresh scratch folder, removed after the test.
    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A synthetic VOC-layout folder (coloured shapes, the demo's six classes) under `folder`.
    func syntheticVOC(in folder: URL, train: Int = 8, test: Int = 4, seed: UInt64 = 1) throws -> URL {
        let voc = folder.appendingPathComponent("voc")
        var options = SyntheticVOC.Options()
        options.trainCount = train
        options.testCount = test
        options.seed = seed
        _ = try SyntheticVOC.generate(at: voc, options: options)
        return voc
    }

    /// Data lists made by `ssd create-data-lists` from `voc` with the synthetic classes.
    func dataLists(from voc: URL, in folder: URL, extra: [String] = []) throws -> URL {
        let lists = folder.appendingPathComponent("lists")
        let made = try ssd(["create-data-lists", "--voc07", voc.path, "--output", lists.path,
                            "--classes", SyntheticVOC.classes.joined(separator: ","), "--train-split", "trainval",
                            "--test-split", "test"] + extra)
        XCTAssertEqual(made.status, 0, made.all)
        return lists
    }

    /// The compact model's training flags (1/8 widths, batch norm), small enough for tests.
    static let compactModel = ["--model", "compact"]
}
