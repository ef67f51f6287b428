import Foundation
import SSDEngine

/// Which transform a data set applies: the reference's training augmentations, or only the resize.
public enum DataSplit: String, Sendable, CaseIterable {
    case train = "TRAIN"
    case test = "TEST"
}

/// The training split's augmentation.
public enum TrainingAugmentation: String, Sendable, CaseIterable {
    /// The reference's: photometric distortions, expand, IoU-constrained crop, flip.
    case reference
    /// Flip only (the compact demo's setting).
    case flip
}

/// A data list plus the transform of its split: the reference's `PascalVOCDataset`.
public struct DetectionDataset: Sendable {
    public var list: DataList
    public var split: DataSplit
    /// Whether difficult objects are kept (the reference's `keep_difficult`).
    public var keepDifficult: Bool
    /// The augmentation of the training split.
    public var augmentation: TrainingAugmentation
    /// The model's input: every sample is resized to its side and normalised with its statistics.
    public var input: InputFormat

    public init(list: DataList, split: DataSplit, keepDifficult: Bool = true, augmentation: TrainingAugmentation = .reference,
                input: InputFormat = .reference) {
        self.list = list
        self.split = split
        self.keepDifficult = keepDifficult
        self.augmentation = augmentation
        self.input = input
    }

    public var count: Int { list.images.count }

    /// The random stream of sample `index` in `epoch`: a function of (seed, epoch, index) only.
    public static func sampleRandom(seed: UInt64, epoch: Int, index: Int) -> SeededRandom {
        func mix(_ x: UInt64) -> UInt64 {
            var z = x &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return SeededRandom(seed: mix(mix(mix(seed) ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: index)))
    }

    /// Sample `index` decoded and transformed, with randomness from (seed, epoch, index).
    /// Its objects are checked against the decoded image first, so that a bad object is an error
    /// naming the image file (not one about "image 4 of the batch" when the loss is computed):
    /// boxes finite with positive extent and inside the image (`VOC.boxProblem`), labels ≥ 1.
    public func sample(_ index: Int, seed: UInt64, epoch: Int) throws -> PreparedSample {
        guard index >= 0, index < count else { throw DataError.invalidArgument("sample \(index) of a data set of \(count)") }
        guard list.objects.count == list.images.count else {
            throw DataError.invalidArgument("data list has \(list.images.count) images but \(list.objects.count) object sets")
        }
        let path = list.images[index]
        let image = try ImageCodec.load(URL(fileURLWithPath: path))
        var objects = list.objects[index]
        try Self.check(objects, image: image, path: path)
        if !keepDifficult {
            objects = objects.subset((0..<objects.count).filter { objects.difficulties[$0] == 0 })
        }
        switch split {
        case .test: return Augmentation.test(image, objects, side: input.side)
        case .train:
            var rng = Self.sampleRandom(seed: seed, epoch: epoch, index: index)
            switch augmentation {
            case .reference: return Augmentation.train(image, objects, rng: &rng, side: input.side)
            case .flip: return Augmentation.flipOnly(image, objects, rng: &rng, side: input.side)
            }
        }
    }
}

extension DetectionDataset {
    /// Throws `DataError.badAnnotation` naming `path` (the image) and the object if a box is not
    /// four finite numbers with positive extent inside `image`, or a label is not ≥ 1.
    static func check(_ objects: ObjectSet, image: RGBImage, path: String) throws {
        guard objects.boxes.count == 4 * objects.count, objects.difficulties.count == objects.count else {
            throw DataError.badAnnotation(path: path, field: "objects",
                                          reason: "\(objects.boxes.count) box coordinates, \(objects.labels.count) labels, "
                                          + "\(objects.difficulties.count) difficulties in the data list")
        }
        for o in 0..<objects.count {
            let box = Array(objects.boxes[(4 * o)..<(4 * o + 4)])
            let field = "object[\(o)]"
            guard box.allSatisfy(\.isFinite), box[2] > box[0], box[3] > box[1] else {
                throw DataError.badAnnotation(path: path, field: "\(field).box", reason: "empty or non-finite box \(box) in the data list")
            }
            if let problem = VOC.boxProblem(box, width: image.width, height: image.height) {
                throw DataError.badAnnotation(path: path, field: "\(field).box", reason: "\(problem) (in the data list)")
            }
            guard objects.labels[o] >= 1 else {
                throw DataError.badAnnotation(path: path, field: "\(field).label",
                                              reason: "label \(objects.labels[o]) in the data list (objects are labelled 1…; 0 is background)")
            }
        }
    }
}

/// A batch: images (N, 3, 300, 300) normalised, and per image its fractional boxes (flat
/// xyxy), labels and difficulties — what `GroundTruth(boxes:labels:)` takes.
public struct DetectionBatch: @unchecked Sendable {
    public let images: Tensor
    public let boxes: [[Float]]
    public let labels: [[Int]]
    public let difficulties: [[Int]]
    /// The data set indices of the images, in batch order.
    public let indices: [Int]
}

/// Shuffled (or ordered) batches, prepared on background threads ahead of the consumer.
/// The same seed gives the same batches byte for byte whatever `threads` is: the epoch's order
/// depends on (seed, epoch) and each sample's augmentation on (seed, epoch, index).
public struct DataLoader: Sendable {
    public var dataset: DetectionDataset
    public var batchSize: Int
    public var shuffle: Bool
    public var dropLast: Bool
    public var seed: UInt64
    /// Background threads preparing batches.
    public var threads: Int
    /// How many batches may be prepared ahead of the one being consumed.
    public var prefetch: Int
    /// Data-parallel training: the positions within every batch that this loader prepares (one
    /// process's contiguous share of the global batch), or nil for the whole batch. The batches,
    /// their order and every sample's augmentation stay those of the whole loader.
    public var slice: Range<Int>?

    public init(dataset: DetectionDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
                seed: UInt64 = 0, threads: Int = 2, prefetch: Int = 4) throws {
        guard batchSize > 0, threads > 0, prefetch > 0 else {
            throw DataError.invalidArgument("batch size, threads and prefetch must be positive (got \(batchSize), \(threads), \(prefetch))")
        }
        guard dataset.count > 0 else { throw DataError.invalidArgument("the data set has no images") }
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.threads = threads
        self.prefetch = prefetch
    }

    /// Number of batches per epoch.
    public var batchCount: Int { dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize }

    /// The order of the data set in `epoch` (Fisher–Yates from (seed, epoch) when shuffling).
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<dataset.count)
        guard shuffle else { return order }
        var rng = DetectionDataset.sampleRandom(seed: seed ^ 0x5348_5546_464C_4531, epoch: epoch, index: -1)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        return order
    }

    /// Batch `number` of `epoch`, prepared on the calling thread.
    public func batch(_ number: Int, epoch: Int, order: [Int]? = nil) throws -> DetectionBatch {
        let order = order ?? self.order(epoch: epoch)
        guard number >= 0, number * batchSize < order.count else {
            throw DataError.invalidArgument("batch \(number) of an epoch of \(batchCount) batches")
        }
        var indices = Array(order[(number * batchSize)..<min(order.count, (number + 1) * batchSize)])
        if let slice { indices = Array(indices[min(slice.lowerBound, indices.count)..<min(slice.upperBound, indices.count)]) }
        let side = dataset.input.side
        let images = Tensor(shape: [indices.count, 3, side, side])  // (N, 3, S, S)
        let plane = 3 * side * side
        var boxes: [[Float]] = [], labels: [[Int]] = [], difficulties: [[Int]] = []
        for (n, index) in indices.enumerated() {
            let sample = try dataset.sample(index, seed: seed, epoch: epoch)
            dataset.input.normalization.normalize(sample.image, into: images.data + n * plane)
            boxes.append(sample.objects.boxes)
            labels.append(sample.objects.labels)
            difficulties.append(sample.objects.difficulties)
        }
        return DetectionBatch(images: images, boxes: boxes, labels: labels, difficulties: difficulties, indices: indices)
    }

    /// The batches of `epoch` from batch `start` on (to resume mid-epoch), prepared by `threads`
    /// background threads at most `prefetch` ahead.
    public func epoch(_ epoch: Int, startingAt start: Int = 0) -> EpochBatches {
        EpochBatches(loader: self, epoch: epoch, numbers: Array(Swift.max(0, start)..<batchCount))
    }

    /// The batches `numbers` of `epoch` (each in 0..<batchCount), in that order, prepared as
    /// `epoch(_:startingAt:)` prepares them: one process's share of an evaluation, say.
    public func epoch(_ epoch: Int, batches numbers: [Int]) -> EpochBatches {
        EpochBatches(loader: self, epoch: epoch, numbers: numbers.filter { (0..<batchCount).contains($0) })
    }
}

/// One epoch's batches in order; `next()` waits for the batch if it is not ready yet and
/// rethrows the error of a sample that could not be prepared. Stops its threads when released.
public final class EpochBatches: Sequence, IteratorProtocol {
    private let shared: Shared

    /// State shared with the worker threads, guarded by `condition`.
    private final class Shared: @unchecked Sendable {
        let loader: DataLoader
        let epoch: Int
        let order: [Int]
        /// The batch numbers delivered, in order; claims and deliveries count positions in it.
        let numbers: [Int]
        let condition = NSCondition()
        var nextToClaim = 0
        var nextToDeliver = 0
        var ready: [Int: Result<DetectionBatch, Error>] = [:]
        var stopped = false
        init(loader: DataLoader, epoch: Int, numbers: [Int]) {
            self.loader = loader
            self.epoch = epoch
            self.order = loader.order(epoch: epoch)
            self.numbers = numbers
        }
    }

    init(loader: DataLoader, epoch: Int, numbers: [Int]) {
        shared = Shared(loader: loader, epoch: epoch, numbers: numbers)
        for _ in 0..<Swift.max(0, Swift.min(loader.threads, numbers.count)) {
            let state = shared
            let thread = Thread { EpochBatches.work(state) }
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    private static func work(_ s: Shared) {
        while true {
            s.condition.lock()
            while !s.stopped && s.nextToClaim < s.numbers.count && s.nextToClaim >= s.nextToDeliver + s.loader.prefetch {
                s.condition.wait()
            }
            if s.stopped || s.nextToClaim >= s.numbers.count {
                s.condition.unlock()
                return
            }
            let position = s.nextToClaim
            s.nextToClaim += 1
            s.condition.unlock()
            let result = Result { try s.loader.batch(s.numbers[position], epoch: s.epoch, order: s.order) }
            s.condition.lock()
            s.ready[position] = result
            s.condition.broadcast()
            s.condition.unlock()
        }
    }

    /// The next batch, nil after the last; throws if that batch could not be prepared.
    public func nextBatch() throws -> DetectionBatch? {
        let s = shared
        s.condition.lock()
        defer { s.condition.unlock() }
        guard s.nextToDeliver < s.numbers.count, !s.stopped else { return nil }
        while s.ready[s.nextToDeliver] == nil { s.condition.wait() }
        let result = s.ready.removeValue(forKey: s.nextToDeliver)
        s.nextToDeliver += 1
        s.condition.broadcast()
        switch result {
        case let .success(batch)?: return batch
        case let .failure(error)?: throw error
        case nil: return nil
        }
    }

    /// `Sequence` conformance: stops (returns nil) at the first error; use `nextBatch()` to see errors.
    public func next() -> DetectionBatch? { try? nextBatch() }

    /// Stops the worker threads; batches being prepared are finished and discarded.
    public func cancel() {
        shared.condition.lock()
        shared.stopped = true
        shared.condition.broadcast()
        shared.condition.unlock()
    }

    deinit { cancel() }
}

/// Throughput of decode + transform, for the command-line bench.
public enum DataThroughput {
    /// A measurement: images per wall-clock second, and per second of CPU time of one thread
    /// (the figure that does not depend on what else the machine is running).
    public struct Result: Sendable {
        public var imagesPerSecond: Double
        public var imagesPerThreadCPUSecond: Double
    }

    /// Measures `count` samples of `dataset` (cycling through it) read, decoded, transformed and
    /// normalised by `threads` threads working on disjoint samples. Throws the first sample error.
    public static func measure(_ dataset: DetectionDataset, threads: Int, count: Int, seed: UInt64 = 0) throws -> Result {
        let n = max(1, count), workers = max(1, threads)
        let lock = NSLock()
        var firstError: Error?
        var cpuSeconds = 0.0
        func threadCPUTime() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let start = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let cpuStart = threadCPUTime()
            let buffer = Tensor(shape: [3, dataset.input.side, dataset.input.side])
            var i = worker
            var failure: Error?
            while i < n && failure == nil {
                do {
                    let sample = try dataset.sample(i % dataset.count, seed: seed, epoch: i / dataset.count)
                    dataset.input.normalization.normalize(sample.image, into: buffer.data)
                } catch {
                    failure = error
                }
                i += workers
            }
            let used = threadCPUTime() - cpuStart
            lock.lock()
            cpuSeconds += used
            if firstError == nil, let failure { firstError = failure }
            lock.unlock()
        }
        if let firstError { throw firstError }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return Result(imagesPerSecond: Double(n) / seconds, imagesPerThreadCPUSecond: Double(n) / max(cpuSeconds, 1e-9))
    }
}
