import Dispatch

/// Wall-clock time per named region, for finding where a step's time goes. Off by default:
/// `measure` then costs one branch. Not thread-safe: regions are timed from the thread that
/// drives the model (work inside may be parallel).
public enum Profiler {
    nonisolated(unsafe) public static var isEnabled = false
    nonisolated(unsafe) private static var totals: [String: (seconds: Double, calls: Int)] = [:]

    /// Runs `body`, adding its duration to `name` when enabled.
    @inlinable
    public static func measure<T>(_ name: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        guard isEnabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { record(name(), seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        return try body()
    }

    public static func record(_ name: String, seconds: Double) {
        let t = totals[name, default: (0, 0)]
        totals[name] = (t.seconds + seconds, t.calls + 1)
    }

    /// Totals so far, largest first.
    public static var report: [(name: String, seconds: Double, calls: Int)] {
        totals.map { ($0.key, $0.value.seconds, $0.value.calls) }.sorted { $0.seconds > $1.seconds }
    }

    public static func reset() { totals = [:] }
}
