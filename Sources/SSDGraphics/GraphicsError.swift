/// Errors from fonts and rendering. Library code throws these; it never prints.
public enum GraphicsError: Error, CustomStringConvertible, Equatable {
    /// No file at the font path.
    case fontNotFound(path: String)
    /// A file exists at the font path but FreeType cannot load it as a font (`code` is FreeType's error).
    case fontUnloadable(path: String, code: Int)
    /// FreeType itself failed (initialisation, sizing); `operation` says what was attempted.
    case freeType(operation: String, code: Int)
    /// An argument out of its documented range (e.g. a plot smaller than its margins, no finite data).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .fontNotFound(let path): return "\(path): font file not found"
        case .fontUnloadable(let path, let code): return "\(path): cannot load font (FreeType error \(code))"
        case .freeType(let operation, let code): return "FreeType failed to \(operation) (error \(code))"
        case .invalidArgument(let message): return message
        }
    }
}
