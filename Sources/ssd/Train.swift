import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDDistributed
import SSDEngine
import SSDLayers
import SSDTraining

extension OptimizerKind: ExpressibleByArgument {}
extension ModelKind: ExpressibleByArgument {}
extension LocalizationLoss: ExpressibleByArgument {}
extension TrainingAugmentation: ExpressibleByArgument {}

/// Set by SIGINT (and SIGUSR1, which `mpirun` forwards to every process): the training loop
/// checkpoints and stops after the current step.
nonisolated(unsafe) var interruptRequested = false

/// `ssd train`: the reference's train.py, every setting a flag.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an SSD300 on data lists made by `ssd create-data-lists`.",
        discussion: """
            Defaults are the reference's: batch 8, SGD lr 1e-3 (biases ×2), momentum 0.9, weight decay 5e-4, \
            120,000 iterations, lr ×0.1 at 80,000 and 100,000. Writes a checkpoint (weights, optimizer state, \
            iteration, seed) atomically every --checkpoint-every iterations, at the end and on Ctrl-C, a JSON-lines \
            log and a loss plot. --resume continues exactly where a checkpoint stopped.

            Data-parallel: `mpirun -np K ssd train …` or `srun ssd train …` splits every batch of --batch-size images \
            (the global batch) into K contiguous slices, one per process, sums the gradients over the processes and \
            takes the same step everywhere: the same weights as one process, up to float rounding. Rank 0 writes the \
            files and shows the progress. A checkpoint resumes on any number of processes.
            """)

    @OptionGroup var engine: EngineOptions

    @Option(help: "Folder with TRAIN_images.json, TRAIN_objects.json and label_map.json.")
    var data: String

    @Option(help: "Initial weights (safetensors), e.g. VGG16 from `ssd convert vgg16`: every tensor whose name the model has is loaded.")
    var weights: String?

    @Option(help: "A checkpoint of this run to continue from.")
    var resume: String?

    @Option(help: "Folder for the checkpoint, log and plots (default runs/MODEL).")
    var output: String?

    @Option(parsing: .unconditional, help: "Images per batch (default 8; a resumed run keeps its checkpoint's).")
    var batchSize: Int?
    @Option(parsing: .unconditional, help: "Training iterations (batches).") var iterations: Int = 120_000
    @Option(help: "sgd (the reference) or adam (cosine decay); default sgd, a resumed run keeps its checkpoint's.")
    var optimizer: OptimizerKind?
    @Option(parsing: .unconditional, help: "Learning rate.") var lr: Float = 1e-3
    @Option(help: "The network: \(ModelKind.allCases.map(\.rawValue).joined(separator: ", ")) (default ssd300; a resumed run keeps its checkpoint's).")
    var model: ModelKind?
    @Option(parsing: .unconditional, help: "Bias learning rate multiplier (SGD); default the model's (2 for the tutorial's models, 1 for ssdlite320).")
    var biasLrMultiplier: Float?
    @Option(parsing: .unconditional, help: "Momentum (SGD), in [0, 1).") var momentum: Float = 0.9
    @Option(parsing: .unconditional, help: "Weight decay.") var weightDecay: Float = 5e-4
    @Option(parsing: .upToNextOption, help: "Iterations at which the SGD learning rate is multiplied by --decay-factor.")
    var decayAt: [Int] = [80_000, 100_000]
    @Option(parsing: .unconditional, help: "Learning rate decay factor (SGD), in (0, 1].") var decayFactor: Float = 0.1
    @Option(parsing: .unconditional, help: "Clamp every gradient element to ±this (the reference's clip_gradient).") var gradientClip: Float?
    @Option(help: "Localisation loss: l1 (the tutorial's) or smooth-l1 (the paper's, and torchvision's); default the model's.")
    var localizationLoss: LocalizationLoss?
    @Option(parsing: .unconditional, help: "ssd300/ssd512: divide VGG's channel widths by this (default 1, compact 8).") var widthDivisor: Int?
    @Flag(help: "ssd300/ssd512: batch normalisation after each base and auxiliary convolution (compact has it).") var batchNorm = false
    @Option(help: "Seed of the data order and augmentations (and of new layers' initialisation); default 0, a resumed run keeps its checkpoint's.")
    var seed: UInt64?
    @Option(parsing: .unconditional, help: "Write a checkpoint every this many iterations.") var checkpointEvery: Int = 1000
    @Option(parsing: .unconditional, help: "Write a log line every this many iterations.") var logEvery: Int = 10
    @Option(parsing: .unconditional, help: "Threads preparing batches.") var workers: Int = 2
    @Flag(help: "Start afresh in an --output folder that holds an earlier run, replacing its checkpoint, log and plot.")
    var overwrite = false
    @Option(help: "Training augmentation: reference (photometric, expand, crop, flip) or flip.")
    var augmentation: TrainingAugmentation = .reference

    func validate() throws {
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a finite positive number, got \(lr)") }
        if !(momentum >= 0 && momentum < 1) { throw ValidationError("--momentum must be in [0, 1), got \(momentum)") }
        if !(weightDecay >= 0 && weightDecay.isFinite) { throw ValidationError("--weight-decay must be finite and at least 0, got \(weightDecay)") }
        if !(decayFactor > 0 && decayFactor <= 1) { throw ValidationError("--decay-factor must be in (0, 1], got \(decayFactor)") }
        if let biasLrMultiplier, !(biasLrMultiplier >= 0 && biasLrMultiplier.isFinite) {
            throw ValidationError("--bias-lr-multiplier must be finite and at least 0, got \(biasLrMultiplier)")
        }
        if let bad = decayAt.first(where: { $0 < 1 }) { throw ValidationError("--decay-at iterations must be at least 1, got \(bad)") }
        if let widthDivisor, widthDivisor < 1 { throw ValidationError("--width-divisor must be at least 1") }
        if checkpointEvery < 1 || logEvery < 1 { throw ValidationError("--checkpoint-every and --log-every must be at least 1") }
        if workers < 1 { throw ValidationError("--workers must be at least 1") }
        if let gradientClip, !(gradientClip > 0 && gradientClip.isFinite) { throw ValidationError("--gradient-clip must be a finite positive number") }
        if resume != nil && weights != nil { throw ValidationError("--resume and --weights contradict each other: a checkpoint has its own weights") }
    }

    var options: TrainingOptions {
        var o = TrainingOptions()
        o.batchSize = batchSize ?? 8
        o.iterations = iterations
        o.optimizer = optimizer ?? .sgd
        o.sgd = SGDConfiguration(learningRate: lr, biasLearningRateMultiplier: biasLrMultiplier ?? 2, momentum: momentum,
                                 weightDecay: weightDecay, decayIterations: decayAt, decayFactor: decayFactor,
                                 gradientClip: gradientClip)
        o.adam = AdamConfiguration(learningRate: lr, weightDecay: weightDecay, totalIterations: iterations,
                                   warmupIterations: min(200, iterations / 20))
        o.seed = seed ?? 0
        o.checkpointEvery = checkpointEvery
        o.logEvery = logEvery
        o.localization = localizationLoss
        return o
    }

    func run() throws {
        engine.apply()
        let communicator = try Job.start(engine: engine)
        try Job.run(communicator) { try train(communicator) }
    }

    func train(_ communicator: Communicator) throws {
        let root = communicator.isRoot
        /// Messages for the user come from rank 0 alone.
        func say(_ message: String) { if root { printError(message) } }
        try requireExisting(data, what: "--data", folder: true)
        let folder = URL(fileURLWithPath: data)
        let list = try DataLists.read(split: .train, from: folder)
        let labelMap = try DataLists.readLabelMap(folder.appendingPathComponent("label_map.json"))
        let classNames = labelMap.classes
        var configuration = SSDConfiguration(model: model ?? .ssd300, classCount: classNames.count + 1, widthDivisor: widthDivisor,
                                             batchNorm: batchNorm ? true : nil)
        do { try configuration.validate() } catch { throw UserError("\(error)") }
        var options = self.options
        if let resume {
            try requireExisting(resume, what: "--resume")
            let info = try CheckpointInfo(url: URL(fileURLWithPath: resume))
            // The checkpoint decides what it can continue: its model, optimizer, batch and seed.
            // A flag that says otherwise is a mistake, not a wish to be ignored.
            var conflicts: [String] = []
            if let batchSize, batchSize != info.batchSize { conflicts.append("--batch-size \(batchSize) (checkpoint: \(info.batchSize))") }
            if let seed, seed != info.seed { conflicts.append("--seed \(seed) (checkpoint: \(info.seed))") }
            if let optimizer, optimizer != info.optimizer { conflicts.append("--optimizer \(optimizer.rawValue) (checkpoint: \(info.optimizer.rawValue))") }
            let trained = info.configuration
            if let model, model != trained.model { conflicts.append("--model \(model) (checkpoint: \(trained.model))") }
            if let widthDivisor, widthDivisor != trained.widthDivisor {
                conflicts.append("--width-divisor \(widthDivisor) (checkpoint: \(trained.widthDivisor))")
            }
            if batchNorm && !trained.batchNorm { conflicts.append("--batch-norm (the checkpoint's model has none)") }
            guard conflicts.isEmpty else {
                throw UserError("\(resume): a resumed run keeps its checkpoint's model, batch size, seed and optimizer; drop "
                                + conflicts.joined(separator: ", "))
            }
            configuration = info.configuration
            options.optimizer = info.optimizer
            options.batchSize = info.batchSize
            options.seed = info.seed
            guard info.classNames.isEmpty || info.classNames == classNames else {
                throw UserError("\(resume): trained on classes \(info.classNames), --data has \(classNames)")
            }
            guard info.iteration < iterations else {
                throw UserError("\(resume): already at iteration \(info.iteration), --iterations is \(iterations): nothing to do "
                                + "(raise --iterations to train further)")
            }
        }
        guard !list.images.isEmpty else { throw UserError("\(data): the training list is empty") }
        guard list.images.count >= options.batchSize else {
            throw UserError("\(data): \(list.images.count) training images, fewer than one batch of \(options.batchSize)")
        }
        guard options.batchSize >= communicator.size else {
            throw UserError("--batch-size \(options.batchSize) cannot be shared by \(communicator.size) processes: it is the global batch, "
                            + "give at least \(communicator.size)")
        }
        let run = try RunFolder(path: output ?? "runs/\(configuration.model)", resume: resume, overwrite: overwrite)
        if biasLrMultiplier == nil {
            options.sgd.biasLearningRateMultiplier = configuration.architecture.optimizerGroups.biasLearningRateMultiplier
        }
        let model = try SSDModel(configuration: configuration, algorithm: engine.algorithm, seed: options.seed)
        if let weights { try loadInitialWeights(weights, into: model, report: root) }
        let dataset = DetectionDataset(list: list, split: .train, augmentation: augmentation, input: model.inputFormat)
        let loader = try DataLoader(dataset: dataset, batchSize: options.batchSize,
                                    dropLast: true, seed: options.seed, threads: workers)
        let trainer = try Trainer(model: model, loader: loader, options: options, classNames: classNames, communicator: communicator)
        if let resume {
            try trainer.resume(from: URL(fileURLWithPath: resume))
            say("resuming at iteration \(trainer.iteration) of \(options.iterations)")
        }
        // Every rank has checked the folder before rank 0 changes it (a barrier).
        var ready = [1.0]
        try communicator.sumInRankOrder(&ready)
        if root { try run.prepare(resumingAt: resume == nil ? nil : trainer.iteration) }
        say("training \(configuration) on \(list.images.count) images, \(loader.batchCount) batches an epoch; "
            + "writing \(run.checkpoint.path)")
        if communicator.size > 1 {
            say("\(communicator.size) processes, \(Threads.count) threads each; every batch of "
                + Shards.describe(batch: options.batchSize, size: communicator.size) + " images")
        }
        signal(SIGINT) { _ in interruptRequested = true }
        signal(SIGUSR1) { _ in interruptRequested = true }
        let bar = root ? ProgressBar(total: options.iterations, label: "train") : nil
        var exchange = (seconds: 0.0, bytes: 0.0)
        do {
            try trainer.run(checkpoint: run.checkpoint, log: root ? run.log : nil, shouldStop: { interruptRequested }) { p in
                exchange = (p.exchangeSecondsPerStep, p.exchangedBytesPerStep)
                bar?.update(p.iteration, detail: String(format: "loss %.3f lr %.1e %.1f img/s", p.loss, p.learningRate, p.imagesPerSecond))
            }
        } catch let error as TrainingError {
            bar?.finish()
            throw UserError(error.description, jobWide: Self.isJobWide(error))
        }
        bar?.finish()
        if communicator.size > 1 {
            say(String(format: "exchange per step: %.1f ms in collectives, %.2f MB sent by each process", exchange.seconds * 1000,
                       exchange.bytes / 1e6))
        }
        if root { try Plots.lossCurve(log: run.log, to: run.plot) }
        if interruptRequested || trainer.iteration < options.iterations {
            say("interrupted: checkpoint written at iteration \(trainer.iteration); continue with --resume \(run.checkpoint.path)")
            throw ExitCode(130)  // as a shell reports a process stopped by SIGINT
        }
        guard root else { return }
        var written = ["checkpoint: \(run.checkpoint.path)", "log: \(run.log.path)"]
        if FileManager.default.fileExists(atPath: run.plot.path) { written.append("loss plot: \(run.plot.path)") }
        print(written.joined(separator: "\n"))
    }
}

/// The files of a training run in its --output folder, and the rules that keep an earlier run's
/// safe: a fresh run does not start over one (unless --overwrite), a resumed run cuts the log
/// back to its checkpoint, and temporary files left by a killed run are removed.
struct RunFolder {
    let folder: URL
    let checkpoint: URL, log: URL, plot: URL
    let resume: String?
    let overwrite: Bool

    init(path: String, resume: String?, overwrite: Bool) throws {
        folder = URL(fileURLWithPath: path)
        checkpoint = folder.appendingPathComponent("checkpoint.safetensors")
        log = folder.appendingPathComponent("train_log.jsonl")
        plot = folder.appendingPathComponent("loss.png")
        self.resume = resume
        self.overwrite = overwrite
        let existing = [checkpoint, log].filter { FileManager.default.fileExists(atPath: $0.path) }
        guard !existing.isEmpty, !overwrite else { return }
        if let resume {
            // Continuing this folder's own checkpoint is what --resume is for; writing over
            // another run's files is not.
            guard sameFile(resume, checkpoint.path) || !FileManager.default.fileExists(atPath: checkpoint.path) else {
                throw UserError("\(path): holds another run's checkpoint; resume from \(checkpoint.path), choose another --output, "
                                + "or give --overwrite to replace it")
            }
        } else {
            throw UserError("\(path): holds an earlier run (\(existing.map(\.lastPathComponent).joined(separator: ", "))); "
                            + "continue it with --resume \(checkpoint.path), choose another --output, or give --overwrite to start afresh")
        }
    }

    /// Makes the folder, removes what a killed run left, and sets the log up: emptied for a
    /// fresh run (--overwrite), cut back to `iteration` for a resumed one.
    func prepare(resumingAt iteration: Int?) throws {
        try makeFolder(folder.path)
        removeStaleTemporaries()
        if let iteration {
            let dropped = try TrainingLog.truncate(log, toIteration: iteration)
            if dropped > 0 { printError("\(log.path): dropped \(dropped) log lines past the checkpoint's iteration \(iteration)") }
        } else if overwrite {
            for file in [checkpoint, log, plot] where FileManager.default.fileExists(atPath: file.path) {
                do { try FileManager.default.removeItem(at: file) } catch {
                    throw UserError("\(file.path): cannot remove it for --overwrite (\(error.localizedDescription))")
                }
            }
        }
    }

    /// Atomic writes go through `.NAME.tmp-PID` files; a run killed mid-write (kill -9, power
    /// loss) leaves one behind. Those of processes no longer alive are removed.
    func removeStaleTemporaries() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return }
        for name in names where name.hasPrefix(".") {
            guard let range = name.range(of: ".tmp-", options: .backwards),
                  let pid = Int32(name[range.upperBound...]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
                printError("removed \(name), left in \(folder.path) by a run that was killed while writing")
            }
        }
    }
}

/// Whether two paths name the same file (same device and inode), following links.
func sameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
}

/// Loads every tensor of `path` that the model has (same name, same shape), e.g. a converted
/// VGG16 base; at least one must match.
func loadInitialWeights(_ path: String, into model: SSDModel, report: Bool = true) throws {
    try requireExisting(path, what: "--weights")
    let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
    var loaded = 0
    for (name, tensor) in model.stateTensors where file.entries[name] != nil {
        try file.load(name, into: tensor)
        loaded += 1
    }
    guard loaded > 0 else { throw UserError("\(path): none of its tensors is a parameter of this model") }
    try requireFiniteWeights(model, from: path)
    if report { printError("initialised \(loaded) of \(model.stateTensors.count) tensors from \(path)") }
}

extension Train {
    /// Errors every process of a data-parallel run meets at the same step: the loss and the
    /// state are the same on every rank.
    static func isJobWide(_ error: TrainingError) -> Bool {
        switch error {
        case .nonFiniteLoss, .nonFiniteState: return true
        default: return false
        }
    }
}
