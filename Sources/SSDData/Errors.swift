import Foundation
import SSDFiles

/// Errors raised by the data module. Each names the file and, where there is one, the field at
/// fault, so a command-line tool can print one clear line.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file that is missing or cannot be read.
    case unreadableFile(path: String, reason: String)
    /// A file or folder that cannot be written or created (`reason` says why, in words).
    case unwritableFile(path: String, reason: String)
    /// An image file whose bytes are truncated, corrupt, or of a kind we do not decode.
    case badImage(path: String, reason: String)
    /// An annotation whose field is missing or wrong (`field` names it, e.g. `object[2].bndbox.xmin`).
    case badAnnotation(path: String, field: String, reason: String)
    /// No image file found for an annotation: `path` is the annotation (or its entry), `reason`
    /// says what was tried.
    case missingImage(path: String, reason: String)
    /// An object whose class name is not in the label map.
    case unknownClass(path: String, field: String, name: String)
    /// A split file (ImageSets/Main/NAME.txt) without any image identifier.
    case emptySplit(path: String)
    /// A data-list JSON file whose content does not have the reference format.
    case badList(path: String, field: String, reason: String)
    /// A list left without images or objects (`what` names it; `reason` counts what was skipped, and why).
    case emptyList(what: String, reason: String)
    /// A value outside what the operation accepts.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unreadableFile(path, reason): return "\(path): cannot read: \(reason)"
        case let .unwritableFile(path, reason): return "\(path): cannot write: \(reason)"
        case let .badImage(path, reason): return "\(path): bad image: \(reason)"
        case let .badAnnotation(path, field, reason): return "\(path): \(field): \(reason)"
        case let .missingImage(path, reason): return "\(path): no image: \(reason)"
        case let .unknownClass(path, field, name): return "\(path): \(field): unknown class '\(name)'"
        case let .emptySplit(path): return "\(path): split file lists no images"
        case let .badList(path, field, reason): return "\(path): \(field): \(reason)"
        case let .emptyList(what, reason): return "\(what) is empty: \(reason)"
        case let .invalidArgument(message): return message
        }
    }
}

/// Largest sizes of the files the data module reads whole. Each admits far more than a real
/// file of its kind holds, and stops a wrong path (a disk image, `/dev/zero`) from being read
/// into memory.
public enum FileLimits {
    /// A Pascal VOC annotation (VOC's are about 1 KB): 16 MiB.
    public static let annotation = 16 << 20
    /// An `ImageSets/Main/*.txt` split file (VOC's largest is 200 KB): 64 MiB.
    public static let split = 64 << 20
    /// A reference-format JSON list or label map (VOC 07+12's objects list is 4 MB; a list of
    /// every COCO image about 60 MB): 1 GiB.
    public static let list = 1 << 30
    /// An image file: 1 GiB (the decoded size is bounded by `ImageCodec.maximumPixels`).
    public static let image = 1 << 30
}

/// The reason a Foundation or POSIX error gives, in words: the POSIX error underneath a Cocoa
/// error when there is one (Foundation on Linux otherwise says "error 512").
func describe(_ error: Error) -> String {
    let ns = error as NSError
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if let data = error as? DataError { return data.description }
    return ns.localizedFailureReason ?? "\(ns.domain) error \(ns.code)"
}

/// What kind of file `mode` (a `stat` mode) describes, in words.
func fileKind(_ mode: mode_t) -> String { RegularFile.kind(mode) }

/// Reads a whole regular file of at most `limit` bytes. Everything else is
/// `DataError.unreadableFile` naming the path and saying why in words: no such file,
/// permission denied, not a regular file (a folder, a device such as `/dev/zero`, a FIFO —
/// refused without reading or waiting for a writer), or larger than `limit`.
public func readFile(_ url: URL, limit: Int) throws -> Data {
    let path = url.path
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else {
        let code = errno
        throw DataError.unreadableFile(path: path, reason: code == ENOENT ? "no such file" : String(cString: strerror(code)))
    }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw DataError.unreadableFile(path: path, reason: String(cString: strerror(errno))) }
    guard info.st_mode & S_IFMT == S_IFREG else {
        throw DataError.unreadableFile(path: path, reason: "not a regular file but \(fileKind(info.st_mode))")
    }
    let size = Int(info.st_size)
    guard size <= limit else {
        throw DataError.unreadableFile(path: path, reason: "\(size) bytes, more than the \(limit >> 20) MiB this kind of file may have")
    }
    var data = Data(count: size)
    var done = 0
    while done < size {
        let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw DataError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        if n == 0 { break }  // shrank while being read: keep what is there
        done += n
    }
    return done == size ? data : data.prefix(done)
}

/// Creates the folder at `url` and its missing parents (like `mkdir -p`). Errors are
/// `DataError.unwritableFile` naming the path that could not be made and why in words ("a file
/// is in the way", "Permission denied"), where Foundation on Linux can say only "error 512".
public func createFolder(_ url: URL) throws {
    let path = url.standardizedFileURL.path
    var prefix = ""
    for component in path.split(separator: "/", omittingEmptySubsequences: true) {
        prefix += "/" + component
        if mkdir(prefix, 0o755) == 0 { continue }
        let code = errno
        var info = stat()
        if stat(prefix, &info) == 0 {
            if info.st_mode & S_IFMT == S_IFDIR { continue }
            throw DataError.unwritableFile(path: path, reason: "cannot create the folder: \(prefix) is \(fileKind(info.st_mode)), not a folder")
        }
        throw DataError.unwritableFile(path: path, reason: "cannot create the folder \(prefix): \(String(cString: strerror(code)))")
    }
}

/// Writes `data` to a temporary file beside `url` and renames it into place, so a reader never
/// sees a half-written file. Errors (`DataError.unwritableFile`) name the path and give the
/// system's reason in words.
public func writeFileAtomically(_ data: Data, to url: URL) throws {
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    try createFolder(directory)
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw DataError.unwritableFile(path: url.path, reason: String(cString: strerror(errno))) }
    var failure: Int32 = 0
    data.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 { if errno == EINTR { continue }; failure = errno; return }
            done += n
        }
    }
    if close(fd) != 0 && failure == 0 { failure = errno }
    if failure == 0 && rename(temporary.path, url.path) != 0 {
        failure = errno
        var info = stat()
        if stat(url.path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR {
            unlink(temporary.path)
            throw DataError.unwritableFile(path: url.path, reason: "a folder is in the way")
        }
    }
    if failure != 0 {
        unlink(temporary.path)
        throw DataError.unwritableFile(path: url.path, reason: String(cString: strerror(failure)))
    }
}
