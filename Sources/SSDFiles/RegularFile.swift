import Foundation

/// What every reader of a user's file checks first: that the path names a regular file it may
/// read. Devices (`/dev/zero` reads forever), FIFOs (reading waits for a writer), sockets and
/// folders are refused by their kind, before anything is opened.
public enum RegularFile {
    /// Why `path` cannot be read as a regular file, in words ("no such file", "not a regular
    /// file but a FIFO", "permission denied"), or nil when it can.
    public static func problem(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return errno == ENOENT ? "no such file" : String(cString: strerror(errno)).lowercased()
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return "not a regular file but \(kind(info.st_mode))" }
        guard access(path, R_OK) == 0 else { return "permission denied" }
        return nil
    }

    /// The kind of file a `st_mode` describes, as a noun phrase ("a FIFO", "a folder").
    public static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFREG: return "a file"
        default: return "an unknown kind of file"
        }
    }
}
