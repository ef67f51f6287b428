import ArgumentParser
import Foundation
import SSDEngine

/// Options every compute command shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Convolution algorithm: direct (closest to PyTorch), winograd (faster, ~1e-6 relative difference on outputs), or auto.")
    var algorithm: ConvolutionAlgorithm = .winograd

    @Option(help: "Threads, for oneDNN and our own loops alike (default: OMP_NUM_THREADS, else all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func apply() {
        if let threads { Threads.setCount(threads) }
    }
}

extension ConvolutionAlgorithm: ExpressibleByArgument {}

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The process's peak resident set size in MiB (VmHWM), or nil where /proc is absent.
func peakResidentMiB() -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first
        return kb.map { $0 / 1024 }
    }
    return nil
}

/// Seconds of wall-clock time taken by `body`.
func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// A one-line error for the user (printed by argument-parser as "Error: …", exit code 1).
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Throws a one-line error unless `path` names an existing file (or folder, when `folder`).
func requireExisting(_ path: String, what: String, folder: Bool = false) throws {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
        throw UserError("\(path): no such \(folder ? "folder" : "file") (\(what))")
    }
    if folder != isFolder.boolValue { throw UserError("\(path): expected a \(folder ? "folder" : "file") (\(what))") }
}

/// Creates `path` as a folder (and its parents) if needed.
func makeFolder(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw UserError("\(path): cannot create the folder (\(error.localizedDescription))")
    }
}
