import Foundation

/// A progress bar on standard error: redrawn in place on a terminal, a line every few seconds
/// otherwise (so logs stay readable).
final class ProgressBar {
    private let total: Int
    private let label: String
    private let interactive = isatty(STDERR_FILENO) != 0
    private var lastDraw = Date.distantPast
    private let start = Date()

    init(total: Int, label: String) {
        self.total = max(total, 1)
        self.label = label
    }

    /// Shows `done` of `total` with `detail` (e.g. "loss 3.2, 12 img/s").
    func update(_ done: Int, detail: String = "", force: Bool = false) {
        let now = Date()
        guard force || done >= total || now.timeIntervalSince(lastDraw) >= (interactive ? 0.1 : 10) else { return }
        lastDraw = now
        let fraction = Double(min(done, total)) / Double(total)
        let elapsed = now.timeIntervalSince(start)
        let eta = fraction > 0 ? elapsed / fraction - elapsed : 0
        let width = 24, filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "%@ %@ %3.0f%% %d/%d %@ [%@ < %@]", label, bar, fraction * 100, done, total, detail,
                          Self.clock(elapsed), Self.clock(eta))
        FileHandle.standardError.write(Data(((interactive ? "\r\u{1B}[K" : "") + line + (interactive ? "" : "\n")).utf8))
    }

    /// Ends the bar's line.
    func finish() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(max(seconds, 0).rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
