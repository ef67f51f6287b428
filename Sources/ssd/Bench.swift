import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDLayers

/// Times a model's inference and training steps on random data.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model's (21 classes; default SSD300) inference and training steps on this machine.",
        discussion: """
            Runs on random images and random ground truth; weights are the default initialisation. \
            Peak memory is the whole process's, so run one workload per process to read it for that workload.
            """)

    enum Workload: String, ExpressibleByArgument, CaseIterable { case inference, train, data, all }

    @OptionGroup var engine: EngineOptions

    @Option(help: "What to time: inference (batch 1 and 8, and detection post-processing), train, data (decode and transforms), or all.")
    var workload: Workload = .all

    @Option(help: "Batch sizes for inference.")
    var inferenceBatches: [Int] = [1, 8]

    @Option(help: "Batch size of a training step.")
    var trainBatch: Int = 8

    @Option(help: "Timed repetitions per workload (after one warm-up).")
    var repeats: Int = 3

    @Option(help: "The network to time (21 classes): \(ModelKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var model: ModelKind = .ssd300

    @Flag(help: "Same as --model compact.")
    var compact = false

    @Flag(help: "Print where the time of each timed workload goes, layer by layer.")
    var profile = false

    @Option(help: "Write the figures as JSON to this file.")
    var json: String?

    @Option(help: "Weights (safetensors, 21 classes) to time detection post-processing on a trained model's outputs; default: the untrained initialisation, which leaves far more boxes above the 0.01 threshold.")
    var weights: String?

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if trainBatch < 1 || inferenceBatches.contains(where: { $0 < 1 }) { throw ValidationError("batch sizes must be at least 1") }
    }

    func run() throws {
        engine.apply()
        var results: [String: Double] = [:]
        let model = try SSDModel(compact ? .compact : self.model, classCount: 21, algorithm: engine.algorithm)
        let side = model.inputSize, priors = model.priorsCxcy.count / 4
        if let weights { try model.load(contentsOf: URL(fileURLWithPath: weights)) }
        print("cpu: \(HostCPU.summary); activation layout \((model.backend as? DNNLBackend)?.hostLayout.description ?? "nchw")")
        print("model: \(model.kind) (21 classes), input \(side)×\(side), \(priors) priors")
        if workload == .inference || workload == .all {
            model.isTraining = false  // inference kernels, weights prepared once
            for batch in inferenceBatches {
                let images = Tensor(shape: [batch, 3, side, side])
                var rng = SeededRandom(seed: 1)
                rng.fillNormal(images)
                try model.forward(images)  // warm-up: plans buffers and primitives
                Profiler.reset()
                Profiler.isEnabled = profile
                let seconds = try timed { for _ in 0..<repeats { try model.forward(images) } } / Double(repeats)
                Profiler.isEnabled = false
                results["inference_bs\(batch)_img_per_s"] = Double(batch) / seconds
                print(String(format: "inference  batch %2d: %7.1f ms/batch  %6.2f img/s", batch, seconds * 1000, Double(batch) / seconds))
                if profile { printProfile(stepSeconds: seconds, what: "an inference batch of \(batch)") }
            }
            // Detection post-processing (decode, softmax, per-class NMS) at the model's evaluation
            // settings (SSD300: min score 0.01, top 200) on the last batch's outputs.
            let (locs, scores) = (model.locs, model.scores)
            let settings = model.architecture.evaluationDetection
            var boxes = 0
            let seconds = try timed {
                for _ in 0..<repeats {
                    let found = try Detector.detectObjects(locs: locs, scores: scores, priorsCxcy: model.priorsCxcy, settings: settings)
                    boxes = found.reduce(0) { $0 + $1.count }
                }
            } / Double(repeats)
            let perImage = seconds * 1000 / Double(locs.dim(0))
            results["detect_ms_per_img"] = perImage
            print(String(format: "detect post-processing: %7.2f ms/img (%d boxes kept over %d images, %@ weights; min score %g, top %d)",
                         perImage, boxes, locs.dim(0), weights == nil ? "untrained" : "given", settings.minScore, settings.topK))
        }
        if workload == .train || workload == .all {
            let batch = trainBatch
            let images = Tensor(shape: [batch, 3, side, side])
            var rng = SeededRandom(seed: 2)
            rng.fillNormal(images)
            let truths = (0..<batch).map { _ -> GroundTruth in
                let x = rng.uniform(0, 0.5), y = rng.uniform(0, 0.5)
                return GroundTruth(boxes: [x, y, x + rng.uniform(0.1, 0.5), y + rng.uniform(0.1, 0.5)], labels: [1 + Int(rng.next() % 20)])
            }
            let loss = model.makeLoss()
            let sgd = SGD(parameters: model.parameters)
            let gl = Tensor(shape: [batch, priors, 4]), gs = Tensor(shape: [batch, priors, 21])
            model.isTraining = true
            func step() throws {
                Profiler.measure("zero gradients") { sgd.zeroGrad() }
                let (l, s) = try model.forward(images)
                _ = try Profiler.measure("multibox loss") {
                    try loss.compute(locs: l, scores: s, truths: truths, gradLocs: gl, gradScores: gs)
                }
                try model.backward(gradLocs: gl, gradScores: gs)
                Profiler.measure("sgd step") { sgd.step() }
            }
            try step()
            Profiler.reset()
            Profiler.isEnabled = profile
            let seconds = try timed { for _ in 0..<repeats { try step() } } / Double(repeats)
            Profiler.isEnabled = false
            results["train_bs\(batch)_img_per_s"] = Double(batch) / seconds
            print(String(format: "train step batch %2d: %7.1f ms/step   %6.2f img/s", batch, seconds * 1000, Double(batch) / seconds))
            if profile { printProfile(stepSeconds: seconds) }
        }
        if workload == .data || workload == .all {
            // Decode + the reference's training transforms, on a synthetic VOC set of VOC-sized JPEGs.
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-bench-\(getpid())")
            defer { try? FileManager.default.removeItem(at: folder) }
            var options = SyntheticVOC.Options()
            options.trainCount = 96
            options.testCount = 0
            try SyntheticVOC.generate(at: folder, options: options)
            let list = try DataLists.build(trainRoots: [folder], testRoots: [], classes: .given(SyntheticVOC.classes)).train
            for threads in [1, 2] {
                for split in [DataSplit.train, .test] {
                    let r = try DataThroughput.measure(DetectionDataset(list: list, split: split), threads: threads, count: 192)
                    let key = "data_pipeline_\(split == .train ? "train" : "test")_\(threads)thread_img_per_s"
                    results[key] = r.imagesPerSecond
                    print(String(format: "data %@ transforms, %d thread%@: %6.1f img/s (%.1f per thread-CPU-second)",
                                 split == .train ? "train" : "test ", threads, threads == 1 ? " " : "s", r.imagesPerSecond,
                                 r.imagesPerThreadCPUSecond))
                }
            }
            results["data_pipeline_img_per_s"] = results["data_pipeline_train_2thread_img_per_s"]
        }
        if let peak = peakResidentMiB() {
            switch workload {
            case .train: results["peak_rss_train_bs\(trainBatch)_mb"] = peak
            case .inference: results["peak_rss_inference_mb"] = peak
            case .data, .all: results["peak_rss_mb"] = peak
            }
            print(String(format: "peak resident memory: %.0f MiB", peak))
        }
        if let json {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeAtomically(data, to: URL(fileURLWithPath: json))
        }
    }
}

extension Bench {
    /// The profile of the timed steps: each region's ms per step and share of the step.
    func printProfile(stepSeconds: Double, what: String = "a training step") {
        let rows = Profiler.report
        print("\nwhere \(what)'s time goes (ms per step, share of the step):")
        var covered = 0.0
        for row in rows {
            let ms = row.seconds / Double(repeats) * 1000
            covered += ms
            print(String(format: "  %8.1f ms  %5.1f%%  %@", ms, ms / (stepSeconds * 1000) * 100, row.name))
        }
        print(String(format: "  %8.1f ms  %5.1f%%  (everything else)", stepSeconds * 1000 - covered,
                     (stepSeconds * 1000 - covered) / (stepSeconds * 1000) * 100))
    }
}

/// Prints what this build and machine will use.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the CPU tier, oneDNN's version and the kernel oneDNN chose for every primitive of every model.",
        discussion: """
            Runs one inference forward and one training step of each model at batch 1 to create every primitive. \
            A "ref:" implementation is oneDNN's slow reference loop: on a hot path it is a bug (please report it with this output).
            """)

    @OptionGroup var engine: EngineOptions

    @Flag(help: "Only the summary: no list of primitives.")
    var brief = false

    @Option(parsing: .upToNextOption, help: "Only these models (default: all).")
    var models: [ModelKind] = []

    func run() throws {
        engine.apply()
        let backend = DNNLBackend()
        print("cpu: \(HostCPU.summary)")
        print("backend: \(backend.name), activation layout \(backend.hostLayout), threads: \(Threads.count), "
              + "algorithm: \(engine.algorithm.rawValue)")
        var slow = 0
        for kind in models.isEmpty ? ModelKind.allCases : models {
            let configuration = SSDConfiguration(model: kind, classCount: 21)
            let model = try SSDModel(configuration: configuration, algorithm: engine.algorithm)
            let count = model.parameters.reduce(0) { $0 + $1.value.count }
            let name = "\(kind) (21 classes, \(model.inputSize)×\(model.inputSize)): \(model.parameters.count) parameter tensors, "
                + "\(count) values, \(model.priorsCxcy.count / 4) priors"
            let kernels = try KernelSurvey.survey(configuration, algorithm: engine.algorithm)
            var byImplementation: [String: Int] = [:]
            for k in kernels { byImplementation[k.implementation, default: 0] += 1 }
            let summary = byImplementation.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            print("\n\(name)\n  \(kernels.count) kernels: \(summary)")
            if !brief { for k in kernels { print("  \(k)") } }
            let references = kernels.filter(\.isReference)
            slow += references.count
            for k in references { print("  SLOW (reference implementation): \(k.operation)") }
        }
        if slow > 0 { printError("warning: \(slow) primitives use oneDNN's reference implementation on this host") }
    }
}
