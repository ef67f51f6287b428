import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDLayers
import SSDTraining

extension OptimizerKind: ExpressibleByArgument {}
extension LocalizationLoss: ExpressibleByArgument {}
extension TrainingAugmentation: ExpressibleByArgument {}

/// Set by SIGINT: the training loop checkpoints and stops after the current step.
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
            """)

    @OptionGroup var engine: EngineOptions

    @Option(help: "Folder with TRAIN_images.json, TRAIN_objects.json and label_map.json.")
    var data: String

    @Option(help: "Initial weights (safetensors), e.g. VGG16 from `ssd convert vgg16`: every tensor whose name the model has is loaded.")
    var weights: String?

    @Option(help: "A checkpoint of this run to continue from.")
    var resume: String?

    @Option(help: "Folder for the checkpoint, log and plots.")
    var output: String = "runs/ssd300"

    @Option(help: "Images per batch.") var batchSize: Int = 8
    @Option(help: "Training iterations (batches).") var iterations: Int = 120_000
    @Option(help: "sgd (the reference) or adam (cosine decay).") var optimizer: OptimizerKind = .sgd
    @Option(help: "Learning rate.") var lr: Float = 1e-3
    @Option(help: "Bias learning rate multiplier (SGD).") var biasLrMultiplier: Float = 2
    @Option(help: "Momentum (SGD).") var momentum: Float = 0.9
    @Option(help: "Weight decay.") var weightDecay: Float = 5e-4
    @Option(parsing: .upToNextOption, help: "Iterations at which the SGD learning rate is multiplied by --decay-factor.")
    var decayAt: [Int] = [80_000, 100_000]
    @Option(help: "Learning rate decay factor (SGD).") var decayFactor: Float = 0.1
    @Option(help: "Clamp every gradient element to ±this (the reference's clip_gradient).") var gradientClip: Float?
    @Option(help: "Localisation loss: l1 (the reference) or smooth-l1 (the paper).") var localizationLoss: LocalizationLoss = .l1
    @Option(help: "Divide VGG's channel widths by this (1 = the reference SSD300).") var widthDivisor: Int = 1
    @Flag(help: "Batch normalisation after each base and auxiliary convolution.") var batchNorm = false
    @Option(help: "Seed of the data order and augmentations (and of new layers' initialisation).") var seed: UInt64 = 0
    @Option(help: "Write a checkpoint every this many iterations.") var checkpointEvery: Int = 1000
    @Option(help: "Write a log line every this many iterations.") var logEvery: Int = 10
    @Option(help: "Threads preparing batches.") var workers: Int = 2
    @Option(help: "Training augmentation: reference (photometric, expand, crop, flip) or flip.")
    var augmentation: TrainingAugmentation = .reference

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if checkpointEvery < 1 || logEvery < 1 { throw ValidationError("--checkpoint-every and --log-every must be at least 1") }
        if workers < 1 { throw ValidationError("--workers must be at least 1") }
        if let gradientClip, !(gradientClip > 0) { throw ValidationError("--gradient-clip must be positive") }
        if resume != nil && weights != nil { throw ValidationError("--resume and --weights contradict each other: a checkpoint has its own weights") }
    }

    var options: TrainingOptions {
        var o = TrainingOptions()
        o.batchSize = batchSize
        o.iterations = iterations
        o.optimizer = optimizer
        o.sgd = SGDConfiguration(learningRate: lr, biasLearningRateMultiplier: biasLrMultiplier, momentum: momentum,
                                 weightDecay: weightDecay, decayIterations: decayAt, decayFactor: decayFactor,
                                 gradientClip: gradientClip)
        o.adam = AdamConfiguration(learningRate: lr, weightDecay: weightDecay, totalIterations: iterations,
                                   warmupIterations: min(200, iterations / 20))
        o.seed = seed
        o.checkpointEvery = checkpointEvery
        o.logEvery = logEvery
        o.localization = localizationLoss
        return o
    }

    func run() throws {
        engine.apply()
        try requireExisting(data, what: "--data", folder: true)
        let folder = URL(fileURLWithPath: data)
        let list = try DataLists.read(split: "TRAIN", from: folder)
        let labelMap = try DataLists.readLabelMap(folder.appendingPathComponent("label_map.json"))
        let classNames = labelMap.classes
        guard !list.images.isEmpty else { throw UserError("\(data): the training list is empty") }
        guard list.images.count >= batchSize else {
            throw UserError("\(data): \(list.images.count) training images, fewer than one batch of \(batchSize)")
        }
        var configuration = SSDConfiguration(classCount: classNames.count + 1, widthDivisor: widthDivisor, batchNorm: batchNorm)
        var options = self.options
        if let resume {
            try requireExisting(resume, what: "--resume")
            let info = try CheckpointInfo(url: URL(fileURLWithPath: resume))
            // The checkpoint decides what it can continue: its model, optimizer, batch and seed.
            configuration = info.configuration
            options.optimizer = info.optimizer
            options.batchSize = info.batchSize
            options.seed = info.seed
            guard info.classNames.isEmpty || info.classNames == classNames else {
                throw UserError("\(resume): trained on classes \(info.classNames), --data has \(classNames)")
            }
        }
        let model = try SSD300(configuration: configuration, algorithm: engine.algorithm, seed: options.seed)
        if let weights { try loadInitialWeights(weights, into: model) }
        let loader = try DataLoader(dataset: DetectionDataset(list: list, split: .train, augmentation: augmentation), batchSize: options.batchSize,
                                    dropLast: true, seed: options.seed, threads: workers)
        let trainer = try Trainer(model: model, loader: loader, options: options, classNames: classNames)
        if let resume {
            try trainer.resume(from: URL(fileURLWithPath: resume))
            printError("resuming at iteration \(trainer.iteration) of \(options.iterations)")
        }
        try makeFolder(output)
        let out = URL(fileURLWithPath: output)
        let checkpoint = out.appendingPathComponent("checkpoint.safetensors")
        let log = out.appendingPathComponent("train_log.jsonl")
        printError("training \(configuration) on \(list.images.count) images, \(loader.batchCount) batches an epoch; "
                   + "writing \(checkpoint.path)")
        signal(SIGINT) { _ in interruptRequested = true }
        let bar = ProgressBar(total: options.iterations, label: "train")
        do {
            try trainer.run(checkpoint: checkpoint, log: log, shouldStop: { interruptRequested }) { p in
                bar.update(p.iteration, detail: String(format: "loss %.3f lr %.1e %.1f img/s", p.loss, p.learningRate, p.imagesPerSecond))
            }
        } catch let error as TrainingError {
            bar.finish()
            throw UserError(error.description)
        }
        bar.finish()
        if interruptRequested { printError("interrupted: checkpoint written at iteration \(trainer.iteration); continue with --resume \(checkpoint.path)") }
        try Plots.lossCurve(log: log, to: out.appendingPathComponent("loss.png"))
        print("checkpoint: \(checkpoint.path)\nlog: \(log.path)\nloss plot: \(out.appendingPathComponent("loss.png").path)")
    }
}

/// Loads every tensor of `path` that the model has (same name, same shape), e.g. a converted
/// VGG16 base; at least one must match.
func loadInitialWeights(_ path: String, into model: SSD300) throws {
    try requireExisting(path, what: "--weights")
    let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
    var loaded = 0
    for (name, tensor) in model.stateTensors where file.entries[name] != nil {
        try file.load(name, into: tensor)
        loaded += 1
    }
    guard loaded > 0 else { throw UserError("\(path): none of its tensors is a parameter of this model") }
    printError("initialised \(loaded) of \(model.stateTensors.count) tensors from \(path)")
}
