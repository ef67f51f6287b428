import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDEvaluation
import SSDGraphics
import SSDLayers
import SSDTraining

/// `ssd demo`: the whole pipeline on an embedded default, from nothing to annotated detections.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a synthetic VOC-layout set, train a compact SSD on it, evaluate it, and draw its detections.",
        discussion: """
            The compact model is an SSD300 at 1/8 of VGG's widths with batch normalisation, trained from scratch \
            with Adam (cosine decay) and flips only. Everything lands in --output: the data, the lists, the \
            checkpoint, the training log and loss plot, the AP table (JSON) and bars, and annotated test images.
            """)

    @OptionGroup var engine: EngineOptions
    @Option(help: "Folder for everything the demo writes.") var output: String = "demo-output"
    @Option(help: "Synthetic training images.") var trainImages: Int = 2000
    @Option(help: "Synthetic held-out test images.") var testImages: Int = 150
    @Option(help: "Training iterations.") var iterations: Int = 800
    @Option(help: "Images per batch.") var batchSize: Int = 16
    @Option(help: "Adam learning rate (cosine decay to zero).") var lr: Float = 2e-3
    @Option(help: "Seed of the data, the initialisation and the training order.") var seed: UInt64 = 1
    @Option(help: "Annotated test images to write.") var samples: Int = 12
    @Option(help: "Threads preparing batches.") var workers: Int = 2
    @Flag(help: "Replace what an earlier demo wrote in --output (its data, run and detections).") var overwrite = false

    func validate() throws {
        if trainImages < batchSize || testImages < 1 { throw ValidationError("need at least one batch of training images and one test image") }
        if iterations < 1 || batchSize < 1 || workers < 1 { throw ValidationError("--iterations, --batch-size and --workers must be at least 1") }
        if !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a finite positive number") }
    }

    func run() throws {
        engine.apply()
        let start = Date()
        printError("cpu: \(HostCPU.summary)")
        let out = URL(fileURLWithPath: output)
        // An earlier demo (or anything else) in --output is replaced only when asked.
        let earlier = ["data", "run", "detections"].filter { FileManager.default.fileExists(atPath: out.appendingPathComponent($0).path) }
        if !earlier.isEmpty {
            guard overwrite else {
                throw UserError("\(output): holds an earlier demo (\(earlier.joined(separator: ", "))); give --overwrite to replace it, "
                                + "or choose another --output")
            }
            for name in earlier {
                do { try FileManager.default.removeItem(at: out.appendingPathComponent(name)) } catch {
                    throw UserError("\(out.appendingPathComponent(name).path): cannot remove it for --overwrite (\(error.localizedDescription))")
                }
            }
        }
        try makeFolder(output)

        // 1. Data: a VOC-layout folder and the reference's lists.
        let voc = out.appendingPathComponent("data/voc"), lists = out.appendingPathComponent("data/lists")
        printError("generating \(trainImages) training and \(testImages) test images in \(voc.path) …")
        var options = SyntheticVOC.Options()
        options.trainCount = trainImages
        options.testCount = testImages
        options.seed = seed
        try SyntheticVOC.generate(at: voc, options: options)
        let report = try DataLists.build(trainRoots: [voc], testRoots: [voc], classes: .given(SyntheticVOC.classes))
        try makeFolder(lists.path)
        try DataLists.write(report, to: lists)
        let names = report.labelMap.classes

        // 2. Train the compact model.
        var training = TrainingOptions()
        training.batchSize = batchSize
        training.iterations = iterations
        training.optimizer = .adam
        training.adam = AdamConfiguration(learningRate: lr, weightDecay: 5e-4, totalIterations: iterations,
                                          warmupIterations: min(100, iterations / 10))
        training.seed = seed
        training.checkpointEvery = max(iterations / 4, 1)
        training.logEvery = 10
        let model = try SSDModel(configuration: .compact(classCount: names.count + 1), algorithm: engine.algorithm, seed: seed)
        let loader = try DataLoader(dataset: DetectionDataset(list: report.train, split: .train, augmentation: .flip, input: model.inputFormat),
                                    batchSize: batchSize, dropLast: true, seed: seed, threads: workers)
        let trainer = try Trainer(model: model, loader: loader, options: training, classNames: names)
        let run = out.appendingPathComponent("run")
        try makeFolder(run.path)
        let checkpoint = run.appendingPathComponent("checkpoint.safetensors"), log = run.appendingPathComponent("train_log.jsonl")
        try? FileManager.default.removeItem(at: log)
        printError("training \(model.configuration) for \(iterations) iterations of \(batchSize) images …")
        let bar = ProgressBar(total: iterations, label: "train")
        let trainStart = Date()
        do {
            try trainer.run(checkpoint: checkpoint, log: log) { p in
                bar.update(p.iteration, detail: String(format: "loss %.3f %.1f img/s", p.loss, p.imagesPerSecond))
            }
        } catch let error as TrainingError { throw UserError(error.description) }
        bar.finish()
        let trainSeconds = Date().timeIntervalSince(trainStart)
        try Plots.lossCurve(log: log, to: run.appendingPathComponent("loss.png"))
        // The weights alone (no optimizer state), with the class names, for `ssd detect`.
        let weights = run.appendingPathComponent("model.safetensors")
        try model.save(to: weights, metadata: [MetadataKey.classNames.rawValue: ClassNames.encode(names)])

        // 3. Evaluate on the held-out split.
        let testLoader = try DataLoader(dataset: DetectionDataset(list: report.test, split: .test, input: model.inputFormat), batchSize: batchSize, shuffle: false)
        let evalBar = ProgressBar(total: report.test.images.count, label: "eval ")
        let result = try Evaluator.evaluate(model: model, loader: testLoader) { done, _ in evalBar.update(done) }
        evalBar.finish()
        printAPTable(names: names, result: result.scores)
        try writeAPJSON(names: names, result: result.scores, to: run.appendingPathComponent("eval.json").path)
        try Plots.averagePrecisions(names: names, result: result.scores, to: run.appendingPathComponent("ap.png"))

        // 4. Annotated detections on some test images.
        let detections = out.appendingPathComponent("detections")
        try makeFolder(detections.path)
        let annotator = try DetectionAnnotator()
        let files = report.test.images.prefix(samples).map { URL(fileURLWithPath: $0) }
        for photo in try Inference.detect(files: Array(files), model: model, settings: .demo) {
            try saveAnnotated(photo, names: names, annotator: annotator, folder: detections)
        }
        print(String(format: "\nmAP (voc07) on %d held-out images: %.3f", result.images, result.scores.meanAveragePrecision))
        print(String(format: "training %.0f s (%.1f img/s on %@, oneDNN dispatching %@), everything %.0f s; "
                     + "per test image: forward %.1f ms, detection post-processing %.2f ms",
                     trainSeconds, Double(iterations * batchSize) / trainSeconds, HostCPU.tier.description,
                     HostCPU.dispatchTier.description, Date().timeIntervalSince(start), result.forwardMillisecondsPerImage,
                     result.postProcessingMillisecondsPerImage))
        print("checkpoint: \(checkpoint.path) (weights only: \(weights.path))")
        print("plots: \(run.appendingPathComponent("loss.png").path), \(run.appendingPathComponent("ap.png").path)")
        print("annotated test images: \(detections.path)/")
    }
}
