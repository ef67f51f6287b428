import ArgumentParser
import Foundation
import SSDDistributed
import SSDEngine
import SSDTraining

/// How a command runs as one of the processes of an MPI job (`mpirun -np K ssd …`, `srun ssd …`).
enum Job {
    /// The job's communicator: MPI when a launcher started several processes, else one process
    /// (MPI untouched). Under MPI, unless `--threads` or `OMP_NUM_THREADS` says otherwise, each
    /// process takes its share of this machine's cores.
    static func start(engine: EngineOptions) throws -> Communicator {
        let communicator: Communicator
        do { communicator = try Launch.communicator() } catch { throw UserError("\(error)") }
        if communicator.size > 1, engine.threads == nil, ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] == nil {
            let local = Launch.localProcessCount() ?? communicator.size
            Threads.setCount(max(1, ProcessInfo.processInfo.activeProcessorCount / local))
        }
        return communicator
    }

    /// Runs `body` and ends the job as its outcome says. One process: errors propagate as
    /// always. Several: an error every rank meets at the same step (`jobWide`: a non-finite loss
    /// or state, Ctrl-C's exit) ends every rank alike, rank 0 alone reporting it; any other error
    /// is one rank's, which prints it prefixed with its rank and aborts the whole job (`MPI_Abort`),
    /// so the others do not wait for it. Ranks other than 0 wait a second first, so an error every
    /// rank meets (a bad flag, a missing file) is printed once, by rank 0.
    static func run(_ communicator: Communicator, _ body: () throws -> Void) throws {
        guard communicator.size > 1 else { return try body() }
        do {
            try body()
        } catch {
            if jobWide(error) {
                if communicator.isRoot || error is ExitCode { throw error }
                throw ExitCode.failure
            }
            if !communicator.isRoot { Thread.sleep(forTimeInterval: 1) }
            let message = error is ExitCode ? "stopped (exit code \((error as! ExitCode).rawValue))" : "\(error)"
            printError("rank \(communicator.rank) of \(communicator.size): error: \(message); stopping the job")
            communicator.abort(code: 1)
        }
    }

    private static func jobWide(_ error: Error) -> Bool {
        if error is ExitCode { return true }
        if let error = error as? UserError { return error.jobWide }
        switch error as? TrainingError {
        case .nonFiniteLoss?, .nonFiniteState?: return true
        default: return false
        }
    }
}
