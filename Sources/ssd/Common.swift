import ArgumentParser
import Foundation
import SSDData
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
    /// Every process of an MPI job meets this error at the same point (see `Job.run`).
    let jobWide: Bool
    init(_ message: String, jobWide: Bool = false) {
        description = message
        self.jobWide = jobWide
    }
}

/// Throws a one-line error unless `path` names an existing file (or folder, when `folder`).
func requireExisting(_ path: String, what: String, folder: Bool = false) throws {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
        throw UserError("\(path): no such \(folder ? "folder" : "file") (\(what))")
    }
    if folder != isFolder.boolValue { throw UserError("\(path): expected a \(folder ? "folder" : "file") (\(what))") }
}

/// Creates `path` as a folder (and its parents) if needed; the error names the part of the path
/// in the way and why, in words (SSDData's `createFolder`).
func makeFolder(_ path: String) throws {
    try createFolder(URL(fileURLWithPath: path))
}

/// A file the command will write, checked before any long work starts: its folder exists (or is
/// made) and takes new files, and it is not a folder. A symbolic link is followed, so the
/// link's target is replaced and the link stays a link.
func outputFile(_ path: String, what: String) throws -> URL {
    var url = URL(fileURLWithPath: path)
    var info = stat()
    if lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
        url = url.resolvingSymlinksInPath()
    }
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
        throw UserError("\(path): is a folder, not a file (\(what))")
    }
    let folder = url.deletingLastPathComponent()
    do { try makeFolder(folder.path) } catch { throw UserError("\(what) \(path): \(error)") }
    // Probe with a real file: permission bits say nothing for root or a read-only file system.
    let probe = folder.appendingPathComponent(".ssd-write-probe-\(getpid())-\(UUID().uuidString)")
    let descriptor = open(probe.path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
    guard descriptor >= 0 else {
        throw UserError("\(path): cannot write in \(folder.path) (\(what): \(String(cString: strerror(errno))))")
    }
    close(descriptor)
    unlink(probe.path)
    return url
}

/// Throws unless every number is finite: JSON has no NaN or infinity, and a file that holds
/// them is useless to whoever reads it.
func requireFinite(_ values: [Double], _ what: String) throws {
    if let bad = values.first(where: { !$0.isFinite }) {
        throw UserError("\(what) holds a non-finite value (\(bad)); nothing written")
    }
}
