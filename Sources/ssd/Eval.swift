import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDDistributed
import SSDEvaluation
import SSDLayers
import SSDTraining

/// `ssd eval`: the reference's eval.py.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: detections on a test set, per-class AP and mAP.",
        discussion: """
            Evaluation thresholds are the reference's (min score 0.01, overlap 0.45, top 200) so results compare with the paper. \
            `mpirun -np K ssd eval …` shares the batches among K processes (rank r takes batches r, r + K, …) and rank 0 \
            scores the gathered detections: the same mAP as one process.
            """)

    @OptionGroup var engine: EngineOptions
    @Option(help: "Weights or checkpoint (safetensors).") var weights: String
    @Option(help: "Refuse weights of any other model (\(ModelKind.allCases.map(\.rawValue).joined(separator: ", "))); the weights say which they are.")
    var model: ModelKind?
    @Option(help: "A VOC-layout folder to evaluate on (with --split).") var voc: String?
    @Option(help: "The split of --voc.") var split: String = "test"
    @Option(help: "A folder of data lists (TEST_images.json, TEST_objects.json) instead of --voc.") var data: String?
    @Option(help: "voc07 (11-point, the reference), voc12 (area) or coco (pycocotools' AP@[.50:.95]).") var metric: APMetric = .voc07
    @Option(help: "Minimum class score of a detection (default the model\'s: 0.2 to show, 0.01 to evaluate; ssdlite320 0.001)") var minScore: Float?
    @Option(help: "NMS overlap threshold (default the model\'s).") var maxOverlap: Float?
    @Option(help: "Detections kept per image (default the model\'s).") var topK: Int?
    @Option(help: "Images per forward pass.") var batchSize: Int = 8
    @Option(help: "Write {\"mAP\", \"APs\", \"metric\"} here.") var json: String?
    @Option(help: "Write the per-class AP bar chart here (PNG). Default with --json: beside it, as NAME_ap.png.") var plot: String?
    @Option(help: "Write the detections in COCO's results format here (--data lists made from a COCO file: they keep its ids).")
    var cocoResults: String?

    func validate() throws {
        if (voc == nil) == (data == nil) { throw ValidationError("give exactly one of --voc and --data") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1") }
        if let minScore, !(0..<1).contains(minScore) { throw ValidationError("--min-score must be in [0, 1)") }
        if let maxOverlap, !(0...1).contains(maxOverlap) { throw ValidationError("--max-overlap must be in [0, 1]") }
        if cocoResults != nil && data == nil {
            throw ValidationError("--coco-results needs --data lists made from a COCO file (`ssd create-data-lists --coco-test`): they keep its ids")
        }
    }

    func run() throws {
        engine.apply()
        let communicator = try Job.start(engine: engine)
        try Job.run(communicator) { try evaluate(communicator) }
    }

    func evaluate(_ communicator: Communicator) throws {
        let root = communicator.isRoot
        // Outputs are checked before the model runs, so a typo costs nothing.
        let jsonURL = try json.map { try outputFile($0, what: "--json") }
        let chart = try (plot ?? json.map { URL(fileURLWithPath: $0).deletingPathExtension().path + "_ap.png" })
            .map { try outputFile($0, what: "--plot") }
        let resultsURL = try cocoResults.map { try outputFile($0, what: "--coco-results") }
        let sourceIDs = try data.flatMap { try SourceIdentifiers.read(from: URL(fileURLWithPath: $0)) }
        if resultsURL != nil && sourceIDs?.imageIDs[.test] == nil {
            throw UserError("--coco-results: \(data!) has no \(SourceIdentifiers.fileName) with test image ids; "
                            + "make the lists from a COCO file (`ssd create-data-lists --coco-test FILE`)")
        }
        let (model, names) = try loadModel(weights, algorithm: engine.algorithm, expecting: self.model)
        let list: DataList
        if let voc {
            try requireExisting(voc, what: "--voc", folder: true)
            let report = try DataLists.build(trainRoots: [], testRoots: [URL(fileURLWithPath: voc)], classes: .given(names),
                                             testSplit: split, onSkip: { if root { printError("skipped \($0)") } })
            list = report.test
        } else {
            try requireExisting(data!, what: "--data", folder: true)
            let folder = URL(fileURLWithPath: data!)
            list = try relabel(DataLists.read(split: .test, from: folder),
                               from: folder.appendingPathComponent("label_map.json"), to: names)
        }
        guard !list.images.isEmpty else { throw UserError("\(voc ?? data!): the test list is empty") }
        let loader = try DataLoader(dataset: DetectionDataset(list: list, split: .test, input: model.inputFormat), batchSize: batchSize, shuffle: false)
        let bar = root ? ProgressBar(total: list.images.count, label: "eval") : nil
        let evaluated = try Evaluator.evaluate(model: model, loader: loader,
                                               settings: detectionSettings(model.architecture.evaluationDetection, minScore: minScore, maxOverlap: maxOverlap, topK: topK),
                                               metric: metric, communicator: communicator) { done, _ in bar?.update(done) }
        bar?.finish()
        guard let result = evaluated else { return }  // ranks other than 0: their detections went to rank 0
        printAPTable(names: names, result: result.scores)
        printError(String(format: "%d images; per image: forward %.1f ms, detection post-processing %.2f ms", result.images,
                          result.forwardMillisecondsPerImage, result.postProcessingMillisecondsPerImage))
        if let jsonURL { try writeAPJSON(names: names, result: result.scores, to: jsonURL.path) }
        if let chart {
            try Plots.averagePrecisions(names: names, result: result.scores, to: chart)
            print("AP chart: \(chart.path)")
        }
        if let resultsURL, let sourceIDs {
            let folder = URL(fileURLWithPath: data!)
            let imageIDs = sourceIDs.imageIDs[.test]!
            guard imageIDs.count == list.images.count else {
                throw UserError("\(folder.appendingPathComponent(SourceIdentifiers.fileName).path): TEST: \(imageIDs.count) image ids for "
                                + "\(list.images.count) listed images")
            }
            let categories = try cocoCategories(names: names, labelMap: folder.appendingPathComponent("label_map.json"), ids: sourceIDs)
            let sizes = try ImageCodec.sizes(of: list.images.map { URL(fileURLWithPath: $0) })
            let pixels = zip(result.detections, sizes).map { detections, size in
                detections.map { $0.scaled(x: Float(size.width), y: Float(size.height)) }
            }
            try writeAtomically(try COCO.results(pixels, imageIDs: imageIDs, categoryIDs: categories), to: resultsURL)
            print("COCO results: \(resultsURL.path)")
        }
    }

    /// The COCO category id of each of the model's classes `names`: the lists' label map names
    /// the category ids' order.
    func cocoCategories(names: [String], labelMap url: URL, ids: SourceIdentifiers) throws -> [Int] {
        let map = try DataLists.readLabelMap(url)
        guard ids.categoryIDs.count == map.classes.count else {
            throw UserError("\(SourceIdentifiers.fileName): \(ids.categoryIDs.count) category ids for the \(map.classes.count) classes of \(url.path)")
        }
        return try names.map { name in
            guard let label = map.label(of: name), label > 0 else { throw UserError("\(url.path): no class '\(name)'") }
            return ids.categoryIDs[label - 1]
        }
    }
}

/// `list` with its labels (numbered by the label map at `labelMapURL`) renumbered to the model's
/// classes `names`, matched by name: lists and checkpoint may number the same classes
/// differently. A class on one side only, or a label outside the list's map, is an error.
func relabel(_ list: DataList, from labelMapURL: URL, to names: [String]) throws -> DataList {
    guard FileManager.default.fileExists(atPath: labelMapURL.path) else {
        throw UserError("\(labelMapURL.path): missing; it says which class each label of the lists is (ssd create-data-lists writes it)")
    }
    let map = try DataLists.readLabelMap(labelMapURL)
    let model = names.map { $0.lowercased().trimmingCharacters(in: .whitespacesAndNewlines) }
    let onlyInLists = map.classes.filter { !model.contains($0) }, onlyInModel = model.filter { !map.classes.contains($0) }
    guard onlyInLists.isEmpty, onlyInModel.isEmpty else {
        var parts: [String] = []
        if !onlyInLists.isEmpty { parts.append("the lists have \(onlyInLists.joined(separator: ", ")), which the model lacks") }
        if !onlyInModel.isEmpty { parts.append("the model has \(onlyInModel.joined(separator: ", ")), which the lists lack") }
        throw UserError("\(labelMapURL.path): classes differ from the model's: " + parts.joined(separator: "; "))
    }
    // newLabel[l] is the model's label of the lists' label l.
    let newLabel = [0] + map.classes.map { model.firstIndex(of: $0)! + 1 }
    var relabelled = list
    for (i, objects) in list.objects.enumerated() {
        relabelled.objects[i].labels = try objects.labels.enumerated().map { j, label in
            guard label >= 1 && label < newLabel.count else {
                throw UserError("\(labelMapURL.deletingLastPathComponent().appendingPathComponent("TEST_objects.json").path): "
                                + "[\(i)].labels[\(j)]: label \(label) is not in label_map.json (1…\(map.classes.count))")
            }
            return newLabel[label]
        }
    }
    return relabelled
}
