import Dispatch
import Foundation

/// How many threads our own loops use (oneDNN's OpenMP pool is configured separately, by
/// `OMP_NUM_THREADS`). Defaults to the number of active processors.
public enum Threads {
    nonisolated(unsafe) public static var count: Int = ProcessInfo.processInfo.activeProcessorCount
}

/// Runs `body(i)` for `i` in `0..<n`, split into contiguous chunks across `Threads.count`
/// threads. Work items must be independent; small `n` runs inline.
@inlinable
public func parallelFor(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    let threads = min(Threads.count, max(1, n / max(minimumPerThread, 1)))
    if threads <= 1 || n <= 1 {
        if n > 0 { body(0..<n) }
        return
    }
    let chunk = (n + threads - 1) / threads
    DispatchQueue.concurrentPerform(iterations: threads) { t in
        let start = t * chunk
        let end = min(n, start + chunk)
        if start < end { body(start..<end) }
    }
}
