import SSDDistributed
import XCTest

/// How a batch splits over ranks, and when a process counts as launched into a job.
final class LaunchTests: XCTestCase {
    /// Every image of a batch goes to exactly one rank, in order, the slices differing by at most one.
    func testShardsCoverTheBatchOnceInOrder() {
        for size in 1...9 {
            for batch in size...40 {
                let ranges = (0..<size).map { Shards.range(rank: $0, size: size, batch: batch) }
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, batch)
                for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound, "\(batch) on \(size)") }
                let counts = ranges.map(\.count)
                XCTAssertLessThanOrEqual(counts.max()! - counts.min()!, 1, "\(batch) on \(size)")
                XCTAssertEqual(counts, counts.sorted(by: >), "the larger slices come first")
            }
        }
        XCTAssertEqual(Shards.describe(batch: 8, size: 3), "8 = 3 + 3 + 2")
        XCTAssertEqual(Shards.describe(batch: 8, size: 2), "8 = 4 + 4")
    }

    /// MPI is started only when a launcher's variables say there are several processes.
    func testLauncherEnvironment() {
        XCTAssertNil(Launch.processCount([:]))
        XCTAssertNil(Launch.processCount(["PATH": "/usr/bin"]))
        XCTAssertEqual(Launch.processCount(["OMPI_COMM_WORLD_SIZE": "4"]), 4)
        XCTAssertEqual(Launch.processCount(["PMI_SIZE": "2"]), 2)
        XCTAssertEqual(Launch.processCount(["SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "8"]), 8)
        // A Slurm batch script's own shell (no srun step task) is not a job of several processes.
        XCTAssertNil(Launch.processCount(["SLURM_STEP_NUM_TASKS": "8"]))
        XCTAssertNil(Launch.processCount(["OMPI_COMM_WORLD_SIZE": "many"]))
        XCTAssertEqual(Launch.localProcessCount(["OMPI_COMM_WORLD_LOCAL_SIZE": "2", "SLURM_NTASKS_PER_NODE": "4"]), 2)
        XCTAssertEqual(Launch.localProcessCount(["SLURM_NTASKS_PER_NODE": "4"]), 4)
        XCTAssertNil(Launch.localProcessCount(["MPI_LOCALNRANKS": "0"]))
        XCTAssertTrue(try Launch.communicator() is SingleProcess, "no launcher here: MPI untouched")
    }
}
