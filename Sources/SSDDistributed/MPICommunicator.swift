import CMPI
import Foundation

/// `Communicator` over MPI's world communicator (Open MPI; any launcher: `mpirun`, `srun`).
///
/// Sums are taken in rank order, so every rank gets the same bits and a job reduces the same
/// way every time: a float buffer is cut into one contiguous slice per rank; each rank receives
/// its slice from every rank (`MPI_Alltoallv`), adds the K copies in rank order, and the summed
/// slices are gathered back onto every rank (`MPI_Allgatherv`). Each rank sends 2(K−1)/K of the
/// buffer, what a ring allreduce sends. A few doubles are gathered whole (`MPI_Allgather`) and
/// added in rank order on every rank.
///
/// Faults: MPI errors are returned, not fatal, and thrown as `CommunicatorError.mpi`. A rank that
/// dies makes `mpirun` stop the job and name it; a rank that has waited `timeout` seconds in one
/// collective (a peer stuck, or gone where the launcher does not notice) prints which collective
/// it was waiting in and exits with status 75, which stops the job.
public final class MPICommunicator: Communicator {
    /// Seconds a rank waits in one collective before it gives up: `SSD_MPI_TIMEOUT`, else 600.
    public static var defaultTimeout: Double {
        ProcessInfo.processInfo.environment["SSD_MPI_TIMEOUT"].flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil } ?? 600
    }

    public let rank: Int
    public let size: Int
    public let timeout: Double
    private let world: MPI_Comm
    private var scratch: [Float] = []
    private var bytes = 0
    private var seconds = 0.0
    private let watchdog = Watchdog()

    /// Initialises MPI (once per process; `MPI_Finalize` runs at exit).
    public init(timeout: Double = MPICommunicator.defaultTimeout) throws {
        var provided: Int32 = 0
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            guard MPI_Init_thread(nil, nil, ssd_mpi_thread_funneled(), &provided) == ssd_mpi_success() else {
                throw CommunicatorError.launch("MPI_Init_thread failed: the launcher's environment is set but MPI could not start")
            }
            atexit { var done: Int32 = 0; MPI_Finalized(&done); if done == 0 { MPI_Finalize() } }
        }
        world = ssd_mpi_comm_world()
        MPI_Comm_set_errhandler(world, ssd_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        self.timeout = timeout
        watchdog.start(rank: rank, size: size, timeout: timeout)
    }

    public var traffic: (bytes: Int, seconds: Double) { (bytes, seconds) }

    /// Runs one collective under the watchdog and the clock; throws MPI's message on failure.
    private func collective(_ name: String, sent: Int, _ body: () -> Int32) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        watchdog.enter(name)
        let code = body()
        watchdog.leave()
        seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        bytes += sent
        guard code == ssd_mpi_success() else {
            var text = [CChar](repeating: 0, count: Int(ssd_mpi_max_error_string()) + 1)
            var length: Int32 = 0
            MPI_Error_string(code, &text, &length)
            throw CommunicatorError.mpi(operation: name, message: String(cString: text))
        }
    }

    public func sumInRankOrder(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        let n = buffer.count, k = size
        let slices = (0..<k).map { Shards.range(rank: $0, size: k, batch: n) }
        let mine = slices[rank]
        if scratch.count < k * mine.count { scratch = [Float](repeating: 0, count: k * mine.count) }
        var sendCounts = slices.map { Int32($0.count) }, sendOffsets = slices.map { Int32($0.lowerBound) }
        var receiveCounts = [Int32](repeating: Int32(mine.count), count: k)
        var receiveOffsets = (0..<k).map { Int32($0 * mine.count) }
        let base = buffer.baseAddress!
        let sentOut = 4 * (n - mine.count) + 4 * mine.count * (k - 1)
        try scratch.withUnsafeMutableBufferPointer { s in
            try collective("the gradient sum (alltoallv)", sent: 0) {
                MPI_Alltoallv(base, &sendCounts, &sendOffsets, ssd_mpi_float(),
                              s.baseAddress, &receiveCounts, &receiveOffsets, ssd_mpi_float(), world)
            }
            // Rank order: ((r0 + r1) + r2) + …, the same on whichever rank owns the slice.
            let out = base + mine.lowerBound, m = mine.count, sp = s.baseAddress!
            for i in 0..<m { out[i] = sp[i] }
            for r in 1..<max(k, 1) {
                let src = sp + r * m
                for i in 0..<m { out[i] += src[i] }
            }
        }
        try collective("the gradient sum (allgatherv)", sent: sentOut) {
            MPI_Allgatherv(ssd_mpi_in_place(), 0, ssd_mpi_float(), base, &sendCounts, &sendOffsets, ssd_mpi_float(), world)
        }
    }

    public func sumInRankOrder(_ values: inout [Double]) throws {
        let n = values.count, k = size
        var all = [Double](repeating: 0, count: n * k)
        try collective("a sum of statistics (allgather)", sent: 8 * n * (k - 1)) {
            MPI_Allgather(values, Int32(n), ssd_mpi_double(), &all, Int32(n), ssd_mpi_double(), world)
        }
        for i in 0..<n {
            var total = all[i]
            for r in 1..<max(k, 1) { total += all[r * n + i] }
            values[i] = total
        }
    }

    public func gather(_ values: [Float]) throws -> [[Float]]? {
        let k = size
        var count = Int32(values.count)
        var counts = [Int32](repeating: 0, count: k)
        try collective("a gather of sizes", sent: rank == 0 ? 0 : 4) {
            MPI_Gather(&count, 1, ssd_mpi_int(), &counts, 1, ssd_mpi_int(), 0, world)
        }
        var offsets = [Int32](repeating: 0, count: k)
        for r in 1..<max(k, 1) { offsets[r] = offsets[r - 1] + counts[r - 1] }
        var all = [Float](repeating: 0, count: rank == 0 ? Int(counts.reduce(0, +)) : 0)
        try collective("a gather (gatherv)", sent: rank == 0 ? 0 : 4 * values.count) {
            MPI_Gatherv(values, count, ssd_mpi_float(), &all, &counts, &offsets, ssd_mpi_float(), 0, world)
        }
        guard rank == 0 else { return nil }
        return (0..<k).map { Array(all[Int(offsets[$0])..<Int(offsets[$0] + counts[$0])]) }
    }

    public func broadcast(_ values: inout [Double]) throws {
        let n = values.count
        try collective("a broadcast", sent: rank == 0 ? 8 * n * (size - 1) : 0) {
            MPI_Bcast(&values, Int32(n), ssd_mpi_double(), 0, world)
        }
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }
}

/// Watches the collective in progress from a thread of its own: one that lasts longer than the
/// timeout means a peer is gone or stuck, and the process exits (status 75) naming what it was
/// waiting for, so that the launcher stops the job instead of letting it hang.
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var current: (name: String, since: UInt64)?

    func enter(_ name: String) {
        lock.lock(); current = (name, DispatchTime.now().uptimeNanoseconds); lock.unlock()
    }

    func leave() { lock.lock(); current = nil; lock.unlock() }

    func start(rank: Int, size: Int, timeout: Double) {
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: min(1, timeout / 4))
                lock.lock()
                let pending = current
                lock.unlock()
                guard let pending else { continue }
                let waited = Double(DispatchTime.now().uptimeNanoseconds - pending.since) / 1e9
                if waited > timeout {
                    let message = "rank \(rank) of \(size): waited \(Int(waited)) s in \(pending.name) for the other ranks "
                        + "(SSD_MPI_TIMEOUT=\(Int(timeout))); one of them is gone or stuck: stopping the job\n"
                    FileHandle.standardError.write(Data(message.utf8))
                    _exit(75)
                }
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
