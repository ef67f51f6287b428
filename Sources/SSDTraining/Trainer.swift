import Foundation
import SSDData
import SSDDetection
import SSDDistributed
import SSDEngine
import SSDLayers

/// Which optimizer trains the model.
public enum OptimizerKind: String, Sendable, CaseIterable {
    /// The reference's: momentum SGD with weight decay, biases at twice the rate, step decay.
    case sgd
    /// Adam with a cosine decay: what trains the compact model from scratch in minutes.
    case adam
}

/// Settings of a training run. Defaults are the reference's `train.py`.
public struct TrainingOptions: Sendable {
    public var batchSize = 8
    public var iterations = 120_000
    public var optimizer: OptimizerKind = .sgd
    public var sgd = SGDConfiguration()
    public var adam = AdamConfiguration()
    /// Seeds the data order and augmentations; with the iteration it determines every batch.
    public var seed: UInt64 = 0
    /// A checkpoint is written every this many iterations, and at the end.
    public var checkpointEvery = 1000
    /// A log line (losses averaged since the previous one) every this many iterations.
    public var logEvery = 10
    public var localization: LocalizationLoss? = nil
    public init() {}
}

/// What the training loop reports after every iteration.
public struct TrainingProgress: Sendable {
    public var iteration: Int
    public var totalIterations: Int
    public var loss: Float
    public var learningRate: Float
    public var imagesPerSecond: Double
    public var elapsedSeconds: Double
    /// Data-parallel runs: seconds per step spent in collectives and bytes this rank sent per
    /// step, averaged since the previous log line (0 in one process).
    public var exchangeSecondsPerStep: Double = 0
    public var exchangedBytesPerStep: Double = 0
}

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// The loss became NaN or infinite; the last checkpoint written is kept as it was
    /// (`checkpoint` names it, nil when none was written yet).
    case nonFiniteLoss(iteration: Int, checkpoint: String?)
    /// A parameter or optimizer state became NaN or infinite (`tensor` names the first); nothing
    /// is saved, and the last checkpoint written (if any) is kept as it was.
    case nonFiniteState(iteration: Int, tensor: String, checkpoint: String?)
    case checkpoint(String)
    case data(String)

    public var description: String {
        func last(_ checkpoint: String?) -> String {
            checkpoint.map { "The last good checkpoint is \($0)" } ?? "No checkpoint was written by this run"
        }
        switch self {
        case let .nonFiniteLoss(iteration, checkpoint):
            return "the loss became non-finite at iteration \(iteration); stopped (is the learning rate too high?). \(last(checkpoint))"
        case let .nonFiniteState(iteration, tensor, checkpoint):
            return "\(tensor) became non-finite by iteration \(iteration); stopped without saving it (is the learning rate too high?). "
                + last(checkpoint)
        case let .checkpoint(m), let .data(m): return m
        }
    }
}

/// What a checkpoint says about the run that wrote it.
public struct CheckpointInfo: Sendable {
    public var configuration: SSDConfiguration
    public var iteration: Int
    public var seed: UInt64
    public var optimizer: OptimizerKind
    public var batchSize: Int
    public var classNames: [String]

    /// Reads the metadata of the checkpoint at `url`.
    public init(url: URL) throws {
        let file = try SafetensorsFile(url: url)
        try self.init(file: file)
    }

    public init(file: SafetensorsFile) throws {
        let m = file.metadata
        func value(_ key: MetadataKey) throws -> String {
            guard let v = m[key] else { throw TrainingError.checkpoint("\(file.path): not a training checkpoint (no '\(key.rawValue)' in its metadata)") }
            return v
        }
        configuration = try SSDConfiguration(metadata: m, file: file)
        guard let iteration = Int(try value(.iteration)), iteration >= 0,
              let seed = UInt64(try value(.seed)), let optimizer = OptimizerKind(rawValue: try value(.optimizer)),
              let batch = Int(try value(.batchSize)), batch > 0
        else { throw TrainingError.checkpoint("\(file.path): malformed training metadata \(m)") }
        self.iteration = iteration
        self.seed = seed
        self.optimizer = optimizer
        batchSize = batch
        classNames = ClassNames.decode(m[.classNames]) ?? []
    }
}

/// Class names travel in checkpoint metadata as a JSON array.
public enum ClassNames {
    public static func encode(_ names: [String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: names)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    public static func decode(_ text: String?) -> [String]? {
        guard let text, let data = text.data(using: .utf8),
              let names = try? JSONSerialization.jsonObject(with: data) as? [String] else { return nil }
        return names
    }
}

/// The training loop: batches from a `DataLoader` (shuffled, augmented, dropping the last
/// partial batch so every step has the same shape), forward, MultiBox loss, backward,
/// optimizer step; checkpoints (weights, optimizer state, iteration, seed) written atomically;
/// a JSON-lines log. Because every batch is a function of (seed, iteration), resuming from a
/// checkpoint continues exactly where it stopped.
///
/// Data-parallel (a `communicator` of K > 1 processes): each rank prepares and computes a
/// contiguous slice of every global batch (`Shards`); the loss is divided by the whole batch's
/// positives (`MultiBoxLoss.replicaSum`), batch normalisation takes the whole batch's statistics
/// (`BatchNorm2D.replicaSum`), the gradients are summed in rank order into the same bits on every
/// rank, and every rank takes the same optimizer step — one process's step on the whole batch up
/// to the order of float additions. Only rank 0 writes the checkpoint and the log. The batch
/// size, seed and sample order do not depend on K, so a checkpoint resumes on any K.
public final class Trainer {
    public let model: SSDModel
    public let optimizer: Optimizer
    public let loader: DataLoader
    public let options: TrainingOptions
    public let classNames: [String]
    public let communicator: Communicator
    public private(set) var iteration = 0
    private let loss: MultiBoxLoss
    /// Every parameter's gradient, end to end, for the one collective a step makes on them.
    private var flatGradients: [Float] = []

    /// `loader` must be built from the training split with `options.batchSize` (the global
    /// batch), `dropLast` and `options.seed`; the trainer gives it this rank's slice. With K
    /// ranks the batch must hold at least K images.
    public init(model: SSDModel, loader: DataLoader, options: TrainingOptions, classNames: [String],
                communicator: Communicator = SingleProcess()) throws {
        guard loader.batchSize == options.batchSize, loader.dropLast, loader.seed == options.seed, loader.batchCount > 0 else {
            throw TrainingError.data("the loader must use batch size \(options.batchSize), seed \(options.seed) and drop the last partial batch, and have at least one full batch")
        }
        guard options.batchSize >= communicator.size else {
            throw TrainingError.data("a batch of \(options.batchSize) cannot be shared by \(communicator.size) processes: give --batch-size at least \(communicator.size)")
        }
        self.model = model
        var loader = loader
        loader.slice = communicator.size > 1 ? communicator.shard(of: options.batchSize) : nil
        self.loader = loader
        self.communicator = communicator
        self.options = options
        self.classNames = classNames
        switch options.optimizer {
        case .sgd: optimizer = SGD(parameters: model.parameters, configuration: options.sgd)
        case .adam: optimizer = Adam(parameters: model.parameters, configuration: options.adam)
        }
        loss = model.makeLoss()
        if let localization = options.localization { loss.localization = localization }
        if communicator.size > 1 {
            let sum: (inout [Double]) throws -> Void = { [communicator] in try communicator.sumInRankOrder(&$0) }
            loss.replicaSum = sum
            for case let norm as BatchNorm2D in model.layers { norm.replicaSum = sum }
            flatGradients = [Float](repeating: 0, count: model.parameters.reduce(0) { $0 + $1.grad.count })
        }
    }

    /// Sums every parameter's gradient over the ranks (one collective on one flat buffer).
    private func sumGradients() throws {
        let parameters = optimizer.parameters
        try flatGradients.withUnsafeMutableBufferPointer { flat in
            var offset = 0
            for p in parameters {
                (flat.baseAddress! + offset).update(from: p.grad.data, count: p.grad.count)
                offset += p.grad.count
            }
            try communicator.sumInRankOrder(flat)
            offset = 0
            for p in parameters {
                p.grad.data.update(from: flat.baseAddress! + offset, count: p.grad.count)
                offset += p.grad.count
            }
        }
    }

    // MARK: Checkpoints

    /// The name of the first model or optimizer tensor holding a NaN or an infinity, or nil.
    public func firstNonFiniteTensor() -> String? {
        for (name, tensor) in model.stateTensors + optimizer.stateTensors where !tensor.isFinite { return name }
        return nil
    }

    /// Writes weights, buffers, optimizer state and the run's metadata to `url`, atomically.
    /// Refuses (`nonFiniteState`) to write a state holding a NaN or an infinity, so a checkpoint
    /// on disk is always one that training and detection can use. Data-parallel, only rank 0
    /// writes; every rank makes the same check (they hold the same state) and stops alike.
    public func saveCheckpoint(to url: URL, lastGood: String? = nil) throws {
        if let name = firstNonFiniteTensor() {
            throw TrainingError.nonFiniteState(iteration: iteration, tensor: name, checkpoint: lastGood)
        }
        guard communicator.isRoot else { return }
        var metadata = model.configuration.metadata
        metadata[.iteration] = String(iteration)
        metadata[.seed] = String(options.seed)
        metadata[.optimizer] = options.optimizer.rawValue
        metadata[.batchSize] = String(options.batchSize)
        metadata[.classNames] = ClassNames.encode(classNames)
        try SafetensorsWriter.write(model.stateTensors + optimizer.stateTensors, metadata: metadata, to: url)
    }

    /// Restores weights, optimizer state and iteration from a checkpoint written by a run with
    /// the same configuration, optimizer, batch size and seed.
    public func resume(from url: URL) throws {
        let file = try SafetensorsFile(url: url)
        let info = try CheckpointInfo(file: file)
        guard info.configuration == model.configuration else {
            throw TrainingError.checkpoint("\(url.path): checkpoint is for \(info.configuration), this model is \(model.configuration)")
        }
        guard info.optimizer == options.optimizer, info.batchSize == options.batchSize, info.seed == options.seed else {
            throw TrainingError.checkpoint("\(url.path): checkpoint was trained with \(info.optimizer.rawValue), batch \(info.batchSize), seed \(info.seed); resume with the same")
        }
        try model.load(file)
        for (name, tensor) in optimizer.stateTensors { try file.load(name, into: tensor) }
        if let name = firstNonFiniteTensor() {
            throw TrainingError.checkpoint("\(url.path): \(name) holds NaN or infinite values; this checkpoint cannot be continued")
        }
        iteration = info.iteration
        optimizer.iteration = info.iteration
    }

    // MARK: The loop

    /// Trains until `options.iterations`, or until `shouldStop()` says so (checked after each
    /// step; a checkpoint is then written). Calls `progress` after every step. Throws
    /// `nonFiniteLoss` without touching the last checkpoint if the loss stops being finite.
    /// Data-parallel: every rank must call this; the loss, the stop request (any rank's) and the
    /// errors `nonFiniteLoss`/`nonFiniteState` are the whole job's, so every rank stops alike;
    /// the log (give it on rank 0 only) has the global loss and images per second.
    public func run(checkpoint url: URL, log logURL: URL?, shouldStop: () -> Bool = { false },
                    progress: (TrainingProgress) -> Void = { _ in }) throws {
        model.isTraining = true
        let log = try logURL.map { try JSONLinesLog(url: $0) }
        let n = options.batchSize, local = loader.slice?.count ?? n, ranks = communicator.size
        let gradLocs = Tensor(shape: [local, model.priorsCxcy.count / 4, 4])
        let gradScores = Tensor(shape: [local, model.priorsCxcy.count / 4, model.classCount])
        var exchangeStart = communicator.traffic
        let start = Date()
        var lastReport = Date(), imagesSinceReport = 0, rate = 0.0
        var sum = 0.0, sumConfidence = 0.0, sumLocalization = 0.0, count = 0
        // The checkpoint on disk is this run's (a fresh run starts without one; a resumed run
        // continues one), so it is the last good one if it exists.
        var lastCheckpoint: String? = FileManager.default.fileExists(atPath: url.path) ? url.path : nil
        while iteration < options.iterations {
            let epoch = iteration / loader.batchCount
            let batches = loader.epoch(epoch, startingAt: iteration % loader.batchCount)
            defer { batches.cancel() }
            while iteration < options.iterations, let batch = try batches.nextBatch() {
                let truths = zip(batch.boxes, batch.labels).map { GroundTruth(boxes: $0, labels: $1) }
                let learningRate = optimizer.currentLearningRate
                optimizer.zeroGrad()
                let (locs, scores) = try model.forward(batch.images)
                let value = try loss.compute(locs: locs, scores: scores, truths: truths, gradLocs: gradLocs, gradScores: gradScores)
                guard value.isFinite else { throw TrainingError.nonFiniteLoss(iteration: iteration, checkpoint: lastCheckpoint) }
                try model.backward(gradLocs: gradLocs, gradScores: gradScores)
                if ranks > 1 { try sumGradients() }
                optimizer.step()
                iteration += 1

                sum += Double(value)
                sumConfidence += Double(loss.lastConfidenceLoss)
                sumLocalization += Double(loss.lastLocalizationLoss)
                count += 1
                imagesSinceReport += n
                let now = Date()
                if now.timeIntervalSince(lastReport) >= 1 || rate == 0 {
                    rate = Double(imagesSinceReport) / max(now.timeIntervalSince(lastReport), 1e-9)
                    lastReport = now
                    imagesSinceReport = 0
                }
                var report = TrainingProgress(iteration: iteration, totalIterations: options.iterations, loss: value,
                                              learningRate: learningRate, imagesPerSecond: rate,
                                              elapsedSeconds: now.timeIntervalSince(start))
                if ranks > 1 {
                    let traffic = communicator.traffic
                    report.exchangeSecondsPerStep = (traffic.seconds - exchangeStart.seconds) / Double(count)
                    report.exchangedBytesPerStep = Double(traffic.bytes - exchangeStart.bytes) / Double(count)
                }
                if iteration % options.logEvery == 0 || iteration == options.iterations {
                    var line: [String: Any] = [
                        "iteration": iteration, "loss": sum / Double(count), "confidence_loss": sumConfidence / Double(count),
                        "localization_loss": sumLocalization / Double(count), "learning_rate": Double(learningRate),
                        "images_per_second": rate, "elapsed_seconds": now.timeIntervalSince(start),
                    ]
                    if ranks > 1 {
                        line["processes"] = ranks
                        line["exchange_seconds_per_step"] = report.exchangeSecondsPerStep
                        line["exchanged_bytes_per_step"] = report.exchangedBytesPerStep
                        exchangeStart = communicator.traffic
                    }
                    try log?.append(line)
                    sum = 0; sumConfidence = 0; sumLocalization = 0; count = 0
                }
                progress(report)
                var stop = shouldStop()
                if ranks > 1 {
                    // A stop asked of any rank (Ctrl-C, SIGTERM) stops all after the same step.
                    var flag = [stop ? 1.0 : 0.0]
                    try communicator.sumInRankOrder(&flag)
                    stop = flag[0] > 0
                }
                if iteration % options.checkpointEvery == 0 || iteration == options.iterations || stop {
                    try saveCheckpoint(to: url, lastGood: lastCheckpoint)
                    lastCheckpoint = url.path
                }
                if stop { return }
            }
        }
    }
}

/// The JSON-lines training log.
public enum TrainingLog {
    /// Cuts the log at `url` back to the lines of iterations ≤ `iteration` (what a checkpoint
    /// at that iteration had seen), dropping any torn last line; atomic. Returns how many lines
    /// were dropped. A missing log is left missing.
    @discardableResult
    public static func truncate(_ url: URL, toIteration iteration: Int) throws -> Int {
        guard FileManager.default.fileExists(atPath: url.path) else { return 0 }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingError.data("\(url.path): cannot read the log (\(error.localizedDescription))")
        }
        var kept = Data(), dropped = 0
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
               let i = object["iteration"] as? Int, i <= iteration {
                kept.append(contentsOf: line)
                kept.append(0x0A)
            } else {
                dropped += 1
            }
        }
        if dropped > 0 {
            do { try writeAtomically(kept, to: url) } catch {
                throw TrainingError.data("\(url.path): cannot rewrite the log (\(error))")
            }
        }
        return dropped
    }
}

/// Appends one JSON object per line to a file.
final class JSONLinesLog {
    private let handle: FileHandle
    let url: URL

    init(url: URL) throws {
        self.url = url
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw TrainingError.data("\(url.path): cannot create the log")
            }
        }
        do {
            handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
        } catch { throw TrainingError.data("\(url.path): cannot open the log (\(error.localizedDescription))") }
    }

    func append(_ object: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        data.append(0x0A)
        do { try handle.write(contentsOf: data) } catch {
            throw TrainingError.data("\(url.path): cannot write the log (\(error.localizedDescription))")
        }
    }

    deinit { try? handle.close() }
}
