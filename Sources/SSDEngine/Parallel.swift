import Dispatch
import Foundation

/// How many threads our own loops use. Where oneDNN runs on OpenMP our loops run on its team,
/// sized by `OMP_NUM_THREADS` (or `Threads.setCount`); otherwise on GCD with `count` threads.
public enum Threads {
    nonisolated(unsafe) public private(set) static var count: Int = ComputeThreads.initialThreadCount

    /// Sets the threads of our loops and of oneDNN's OpenMP team alike.
    public static func setCount(_ n: Int) {
        count = max(1, n)
        ComputeThreads.setThreadCount(count)
    }
}

/// Runs `body` on contiguous, disjoint ranges covering `0..<n`, in parallel (at least
/// `minimumPerThread` items per thread; small `n` runs inline), on oneDNN's OpenMP team where
/// there is one (see `ComputeThreads`). Work items must be independent.
public func parallelFor(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    ComputeThreads.run(n, minimumPerThread: minimumPerThread, body)
}

/// `parallelFor` on GCD threads (`Threads.count`).
func gcdParallelFor(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
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
