import Foundation

/// Errors reading PyTorch files. Each names the file and the field or structure at fault, so the
/// CLI can print one clear line.
public enum InteropError: Error, CustomStringConvertible, Equatable {
    /// The bytes do not form a valid archive, pickle or storage: `field` says where.
    case corrupt(file: String, field: String, message: String)
    /// A valid construct this reader does not handle (a compression method, an opcode, a dtype).
    case unsupported(file: String, field: String, message: String)
    /// The pickle asks to call a global that is not on the allow-list; nothing was called.
    case forbiddenGlobal(file: String, global: String)
    /// A limit that keeps memory and recursion bounded was exceeded.
    case limitExceeded(file: String, field: String, message: String)
    /// The content is readable but not what the conversion needs.
    case unexpectedContent(file: String, message: String)
    /// The file cannot be read: missing, not a regular file (a device, a FIFO), no permission.
    case unreadable(file: String, reason: String)
    /// The output path names the input file itself (same path, a link to it, …): nothing was written.
    case outputIsInput(file: String, output: String)

    public var description: String {
        switch self {
        case let .corrupt(file, field, message): return "\(file): corrupt \(field): \(message)"
        case let .unsupported(file, field, message): return "\(file): unsupported \(field): \(message)"
        case let .forbiddenGlobal(file, global):
            return "\(file): refused to call '\(global)': not on the allow-list of PyTorch rebuild functions (nothing was executed)"
        case let .limitExceeded(file, field, message): return "\(file): \(field): \(message)"
        case let .unexpectedContent(file, message): return "\(file): \(message)"
        case let .unreadable(file, reason): return "\(file): cannot read: \(reason)"
        case let .outputIsInput(file, output):
            return "\(output): is the input file \(file) itself; refusing to replace the input (choose another -o)"
        }
    }
}

/// Overflow-checked arithmetic on untrusted sizes; throws instead of trapping.
enum Checked {
    static func multiply(_ a: Int, _ b: Int, file: String, field: String) throws -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw InteropError.corrupt(file: file, field: field, message: "size overflows (\(a) × \(b))") }
        return value
    }

    static func add(_ a: Int, _ b: Int, file: String, field: String) throws -> Int {
        let (value, overflow) = a.addingReportingOverflow(b)
        if overflow { throw InteropError.corrupt(file: file, field: field, message: "size overflows (\(a) + \(b))") }
        return value
    }
}
