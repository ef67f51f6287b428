import Foundation

/// Runs our own parallel loops (`parallelFor`: Winograd transforms, batch normalisation, L2
/// norm, heads, optimizers) on the same threads as oneDNN's primitives.
///
/// Why: Debian's oneDNN runs on GNU OpenMP, whose workers spin-wait after each parallel region
/// (GOMP_SPINCOUNT, or forever with OMP_WAIT_POLICY=active). Our loops alternate with oneDNN's
/// primitives; run on a second pool (GCD), they compete with those spinning workers for the
/// same cores — measured 10–30× slowdowns of the Winograd transforms on a 2-core host. Running
/// them as OpenMP parallel regions of the same team avoids that. libgomp's entry points are
/// looked up at run time (dlsym), so nothing links against OpenMP: when oneDNN is built on
/// another runtime (TBB, sequential) they are absent and we fall back to GCD.
enum ComputeThreads {
    private typealias Region = @convention(c) (UnsafeMutableRawPointer?) -> Void
    private typealias GOMPParallel = @convention(c) (Region, UnsafeMutableRawPointer?, UInt32, UInt32) -> Void
    private typealias OMPQuery = @convention(c) () -> Int32

    private struct OpenMP {
        let parallel: GOMPParallel
        let threadNumber: OMPQuery
        let threadCount: OMPQuery
        let maxThreads: OMPQuery
        let inParallel: OMPQuery
    }

    private static let openMP: OpenMP? = {
        guard ProcessInfo.processInfo.environment["SSD_THREADS_GCD"] != "1",
              let handle = dlopen(nil, RTLD_NOW),
              let p = dlsym(handle, "GOMP_parallel"), let n = dlsym(handle, "omp_get_thread_num"),
              let c = dlsym(handle, "omp_get_num_threads"), let m = dlsym(handle, "omp_get_max_threads"),
              let i = dlsym(handle, "omp_in_parallel")
        else { return nil }
        return OpenMP(parallel: unsafeBitCast(p, to: GOMPParallel.self), threadNumber: unsafeBitCast(n, to: OMPQuery.self),
                      threadCount: unsafeBitCast(c, to: OMPQuery.self), maxThreads: unsafeBitCast(m, to: OMPQuery.self),
                      inParallel: unsafeBitCast(i, to: OMPQuery.self))
    }()

    /// "openmp" or "gcd": where the transforms run (for reports).
    static var runtime: String { openMP == nil ? "gcd" : "openmp" }

    /// Whether `run` uses the OpenMP team: then a GEMM called inside `run`'s body runs on its
    /// own thread (oneDNN does not nest parallel regions), so several GEMMs can share one region.
    static var isOpenMP: Bool { openMP != nil }

    /// Threads `run` would use for many items.
    static var threadCount: Int { openMP.map { Int($0.maxThreads()) } ?? Threads.count }

    /// The team's size at start-up: OpenMP's (OMP_NUM_THREADS), or the active processors.
    static var initialThreadCount: Int {
        openMP.map { Int($0.maxThreads()) } ?? ProcessInfo.processInfo.activeProcessorCount
    }

    /// Resizes the OpenMP team (oneDNN's and ours), where there is one.
    static func setThreadCount(_ n: Int) {
        typealias SetThreads = @convention(c) (Int32) -> Void
        guard openMP != nil, let handle = dlopen(nil, RTLD_NOW), let f = dlsym(handle, "omp_set_num_threads") else { return }
        unsafeBitCast(f, to: SetThreads.self)(Int32(n))
    }

    private struct Job {
        let n: Int
        let body: (Range<Int>, Int) -> Void
        let threadNumber: OMPQuery
        let threadCount: OMPQuery
    }

    /// Calls `body` on contiguous, disjoint ranges covering 0..<n, in parallel; like
    /// `parallelFor` (at least `minimumPerThread` items per thread), on the OpenMP team if any.
    /// Inside a parallel region (a thread of the team already) it runs inline.
    static func run(_ n: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        guard n > 0 else { return }
        guard let omp = openMP else { return gcdParallelFor(n, minimumPerThread: minimumPerThread, body) }
        let threads = omp.inParallel() != 0 ? 1 : min(Int(omp.maxThreads()), max(1, n / max(minimumPerThread, 1)))
        if threads <= 1 { return body(0..<n) }
        team(n, threads: threads) { range, _ in body(range) }
    }

    /// OpenMP only (`isOpenMP`): `body(range, thread)` on a team of at most `threads` threads,
    /// `thread` < `threadCount` naming the caller (for per-thread scratch).
    static func team(_ n: Int, threads: Int, _ body: (Range<Int>, Int) -> Void) {
        guard let omp = openMP else { preconditionFailure("ComputeThreads.team needs OpenMP") }
        withoutActuallyEscaping(body) { escapable in
            var job = Job(n: n, body: escapable, threadNumber: omp.threadNumber, threadCount: omp.threadCount)
            withUnsafeMutablePointer(to: &job) { pointer in
                omp.parallel({ raw in
                    let job = raw!.assumingMemoryBound(to: Job.self).pointee
                    let team = Int(job.threadCount()), me = Int(job.threadNumber())
                    let chunk = (job.n + team - 1) / team
                    let start = me * chunk, end = min(job.n, start + chunk)
                    if start < end { job.body(start..<end, me) }
                }, UnsafeMutableRawPointer(pointer), UInt32(threads), 0)
            }
        }
    }
}
