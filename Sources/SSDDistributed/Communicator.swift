import Foundation

/// Errors of collective operations.
public enum CommunicatorError: Error, CustomStringConvertible, Equatable {
    /// MPI reported an error in `operation` (its message).
    case mpi(operation: String, message: String)
    /// The ranks disagree on something they must share (sizes of a collective, …).
    case mismatch(String)
    /// The launcher's environment says this is one of several processes, but MPI could not start.
    case launch(String)

    public var description: String {
        switch self {
        case let .mpi(operation, message): return "MPI error in \(operation): \(message)"
        case let .mismatch(m), let .launch(m): return m
        }
    }
}

/// The processes of one data-parallel job and the collectives they take part in together.
///
/// Every rank must call the same collectives in the same order with matching sizes (MPI's rule);
/// a rank that calls none while the others wait is caught by the watchdog (`MPICommunicator`).
/// Results of the reductions are identical, bit for bit, on every rank, and are summed in rank
/// order (rank 0's value first), so a job of K ranks reduces the same way every time.
public protocol Communicator: AnyObject {
    /// This process's index, 0…size−1. Rank 0 writes files and talks to the user.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }
    /// Replaces `buffer` on every rank with the element-wise sum of every rank's `buffer`
    /// (equal counts on all ranks), added in rank order: ((r0 + r1) + r2) + …
    func sumInRankOrder(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// The same for a few doubles (statistics, loss sums, flags).
    func sumInRankOrder(_ values: inout [Double]) throws
    /// Rank 0 receives every rank's `values` (any count per rank) in rank order; the others nil.
    func gather(_ values: [Float]) throws -> [[Float]]?
    /// Rank 0's `values` on every rank (the same count on every rank).
    func broadcast(_ values: inout [Double]) throws
    /// Stops the whole job with `code` (every rank, also those waiting in a collective).
    func abort(code: Int32) -> Never
    /// Bytes this rank has sent to other ranks so far, and seconds spent inside collectives
    /// (waiting for slower ranks included).
    var traffic: (bytes: Int, seconds: Double) { get }
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// The first image and count of rank `rank`'s contiguous slice of a global batch of `batch`
    /// images: equal slices when `size` divides `batch`, else the first `batch % size` ranks take
    /// one more.
    public func shard(of batch: Int) -> Range<Int> { Shards.range(rank: rank, size: size, batch: batch) }
}

/// How a global batch splits into contiguous per-rank slices.
public enum Shards {
    /// Rank `rank`'s images of a batch of `batch`: ⌊batch/size⌋ each, the first batch mod size one more.
    public static func range(rank: Int, size: Int, batch: Int) -> Range<Int> {
        let base = batch / size, extra = batch % size
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// "8 = 4 + 4" or "7 = 4 + 3": the split of `batch` over `size` ranks, for messages.
    public static func describe(batch: Int, size: Int) -> String {
        "\(batch) = " + (0..<size).map { String(range(rank: $0, size: size, batch: batch).count) }.joined(separator: " + ")
    }
}

/// One process: every collective is the identity. What `ssd` uses when no launcher started it.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sumInRankOrder(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func sumInRankOrder(_ values: inout [Double]) throws {}
    public func gather(_ values: [Float]) throws -> [[Float]]? { [values] }
    public func broadcast(_ values: inout [Double]) throws {}
    public func abort(code: Int32) -> Never { exit(code) }
    public var traffic: (bytes: Int, seconds: Double) { (0, 0) }
}

/// What the environment says about how this process was started.
public enum Launch {
    /// The number of processes a launcher started, from its environment: Open MPI's `mpirun`
    /// (`OMPI_COMM_WORLD_SIZE`), PMI-1/2 (`PMI_SIZE`), Slurm's `srun` (`SLURM_STEP_NUM_TASKS`
    /// with `SLURM_PROCID`, per task), or nil when no launcher is in sight.
    public static func processCount(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        if let n = environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) { return n }
        if let n = environment["PMI_SIZE"].flatMap(Int.init) { return n }
        // srun sets the step's task count; a batch script's own shell (no srun) has 1, or none.
        if environment["SLURM_PROCID"] != nil, let n = environment["SLURM_STEP_NUM_TASKS"].flatMap(Int.init) { return n }
        return nil
    }

    /// The communicator of this process: MPI when a launcher started more than one process,
    /// else `SingleProcess` (MPI is then never initialised: a plain `ssd train` does not touch it).
    /// `timeout`: seconds a rank may wait in one collective before it stops the job (see
    /// `MPICommunicator`).
    public static func communicator(timeout: Double = MPICommunicator.defaultTimeout) throws -> Communicator {
        guard let n = processCount(), n > 1 else { return SingleProcess() }
        return try MPICommunicator(timeout: timeout)
    }
}

extension Launch {
    /// Processes the launcher started on this machine (`OMPI_COMM_WORLD_LOCAL_SIZE`,
    /// `SLURM_NTASKS_PER_NODE`, `MPI_LOCALNRANKS`), or nil.
    public static func localProcessCount(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"] {
            if let n = environment[key].flatMap(Int.init), n > 0 { return n }
        }
        return nil
    }
}
