import Foundation
import SSDData
import SSDEngine
import SSDTestSupport
import XCTest

final class LoaderTests: XCTestCase {
    static func syntheticList(_ root: URL, train: Int, test: Int) throws -> DataListsReport {
        var options = SyntheticVOC.Options()
        options.trainCount = train
        options.testCount = test
        try SyntheticVOC.generate(at: root, options: options)
        return try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes))
    }

    static func collect(_ loader: DataLoader, epoch: Int) throws -> [DetectionBatch] {
        var batches: [DetectionBatch] = []
        let epochBatches = loader.epoch(epoch)
        while let b = try epochBatches.nextBatch() { batches.append(b) }
        return batches
    }

    /// The same seed gives byte-identical batches on 1 and 3 threads; another epoch or seed
    /// gives other batches; shapes and ground truth are as documented; every image appears once.
    func testSeededBatchesIndependentOfThreads() throws {
        let root = try temporaryFolder("loader")
        defer { try? FileManager.default.removeItem(at: root) }
        let report = try Self.syntheticList(root, train: 10, test: 3)
        let dataset = DetectionDataset(list: report.train, split: .train)
        let one = try Self.collect(DataLoader(dataset: dataset, batchSize: 4, seed: 42, threads: 1), epoch: 0)
        let three = try Self.collect(DataLoader(dataset: dataset, batchSize: 4, seed: 42, threads: 3, prefetch: 2), epoch: 0)
        XCTAssertEqual(one.map { $0.images.shape }, [[4, 3, 300, 300], [4, 3, 300, 300], [2, 3, 300, 300]])
        XCTAssertEqual(one.flatMap { $0.indices }.sorted(), Array(0..<10))
        for (a, b) in zip(one, three) {
            XCTAssertEqual(a.indices, b.indices)
            XCTAssertEqual(a.boxes, b.boxes)
            XCTAssertEqual(a.labels, b.labels)
            XCTAssertEqual(a.difficulties, b.difficulties)
            XCTAssertEqual(memcmp(a.images.data, b.images.data, a.images.count * 4), 0, "images differ between thread counts")
            for n in 0..<a.indices.count {
                XCTAssertEqual(a.boxes[n].count, 4 * a.labels[n].count)
                XCTAssert(a.boxes[n].allSatisfy { $0 >= 0 && $0 <= 1 })
            }
        }
        let nextEpoch = try Self.collect(DataLoader(dataset: dataset, batchSize: 4, seed: 42, threads: 2), epoch: 1)
        XCTAssertNotEqual(one.flatMap { $0.indices }, nextEpoch.flatMap { $0.indices })
        let otherSeed = try Self.collect(DataLoader(dataset: dataset, batchSize: 4, seed: 7, threads: 2), epoch: 0)
        XCTAssertNotEqual(one.map { $0.boxes }, otherSeed.map { $0.boxes })

        // The test split in order: resize + normalise of the decoded image, nothing random.
        let test = DetectionDataset(list: report.test, split: .test)
        let batches = try Self.collect(DataLoader(dataset: test, batchSize: 2, shuffle: false, dropLast: true, threads: 2), epoch: 3)
        XCTAssertEqual(batches.count, 1)
        XCTAssertEqual(batches[0].indices, [0, 1])
        let expected = Normalization.imagenet.tensor(Resampler.resizeBilinear(try ImageCodec.load(URL(fileURLWithPath: report.test.images[1])), width: 300, height: 300))
        XCTAssertEqual(memcmp(batches[0].images.data + 270_000, expected.data, 270_000 * 4), 0)
    }

    /// A corrupt image surfaces as an error from `nextBatch()` naming the file; nothing crashes,
    /// and abandoning an epoch midway stops its threads.
    func testCorruptImageIsAnError() throws {
        let root = try temporaryFolder("corrupt")
        defer { try? FileManager.default.removeItem(at: root) }
        let report = try Self.syntheticList(root, train: 6, test: 1)
        let broken = report.train.images[2]
        let bytes = try Data(contentsOf: URL(fileURLWithPath: broken))
        try bytes.prefix(bytes.count / 3).write(to: URL(fileURLWithPath: broken))
        let loader = try DataLoader(dataset: DetectionDataset(list: report.train, split: .train), batchSize: 1, shuffle: false, threads: 2)
        let epoch = loader.epoch(0)
        XCTAssertNotNil(try epoch.nextBatch())
        XCTAssertNotNil(try epoch.nextBatch())
        XCTAssertThrowsError(try epoch.nextBatch()) { error in
            guard case let DataError.badImage(path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, broken)
        }
        XCTAssertNotNil(try epoch.nextBatch())
        epoch.cancel()
        XCTAssertNil(try epoch.nextBatch())
        XCTAssertThrowsError(try DataLoader(dataset: DetectionDataset(list: report.train, split: .train), batchSize: 0))
    }

    /// Decode + train transform throughput on 1 and 2 threads (reported, not asserted).
    func testThroughputIsMeasured() throws {
        let root = try temporaryFolder("bench")
        defer { try? FileManager.default.removeItem(at: root) }
        let lists = try Self.syntheticList(root, train: 24, test: 1)
        for split in [DataSplit.train, .test] {
            let dataset = DetectionDataset(list: lists.train, split: split)
            for threads in [1, 2] {
                let rate = try DataThroughput.measure(dataset, threads: threads, count: 96)
                report("data \(split.rawValue.lowercased()) decode+transform, \(threads) thread(s), img/s (wall; per thread-CPU-second)",
                       String(format: "%.0f; %.0f", rate.imagesPerSecond, rate.imagesPerThreadCPUSecond))
                XCTAssertGreaterThan(rate.imagesPerSecond, 0)
            }
        }
    }
}
