import Foundation

/// Errors raised by the data module. Each names the file and, where there is one, the field at
/// fault, so a command-line tool can print one clear line.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file that is missing or cannot be read.
    case unreadableFile(path: String, reason: String)
    /// An image file whose bytes are truncated, corrupt, or of a kind we do not decode.
    case badImage(path: String, reason: String)
    /// An annotation whose field is missing or wrong (`field` names it, e.g. `object[2].bndbox.xmin`).
    case badAnnotation(path: String, field: String, reason: String)
    /// An object whose class name is not in the label map.
    case unknownClass(path: String, field: String, name: String)
    /// A split file (ImageSets/Main/NAME.txt) without any image identifier.
    case emptySplit(path: String)
    /// A data-list JSON file whose content does not have the reference format.
    case badList(path: String, field: String, reason: String)
    /// A value outside what the operation accepts.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unreadableFile(path, reason): return "\(path): cannot read: \(reason)"
        case let .badImage(path, reason): return "\(path): bad image: \(reason)"
        case let .badAnnotation(path, field, reason): return "\(path): \(field): \(reason)"
        case let .unknownClass(path, field, name): return "\(path): \(field): unknown class '\(name)'"
        case let .emptySplit(path): return "\(path): split file lists no images"
        case let .badList(path, field, reason): return "\(path): \(field): \(reason)"
        case let .invalidArgument(message): return message
        }
    }
}

/// Reads a whole file, turning every failure into `DataError.unreadableFile`.
func readFile(_ url: URL) throws -> Data {
    do {
        return try Data(contentsOf: url)
    } catch {
        let reason = FileManager.default.fileExists(atPath: url.path) ? "\(error.localizedDescription)" : "no such file"
        throw DataError.unreadableFile(path: url.path, reason: reason)
    }
}

/// Writes `data` to a temporary file beside `url` and renames it into place, so a reader never
/// sees a half-written file.
public func writeFileAtomically(_ data: Data, to url: URL) throws {
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try data.write(to: temporary)
        if rename(temporary.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw DataError.unreadableFile(path: url.path, reason: "cannot rename into place (errno \(errno))")
        }
    } catch let error as DataError {
        throw error
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw DataError.unreadableFile(path: url.path, reason: "cannot write: \(error.localizedDescription)")
    }
}
