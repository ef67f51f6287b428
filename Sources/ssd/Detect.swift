import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDGraphics
import SSDLayers
import SSDTraining

/// `ssd detect`: the reference's detect.py on any number of photos.
struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detect objects in photos: annotated images and a JSON list of detections.",
        discussion: "Boxes are in the photo's pixels (x_min, y_min, x_max, y_max). Thresholds default to the reference's detect.py.")

    @OptionGroup var engine: EngineOptions
    @Argument(help: "Photos (JPEG or PNG).") var images: [String]
    @Option(help: "Weights or checkpoint (safetensors).") var weights: String
    @Option(help: "Refuse weights of any other model (\(ModelKind.allCases.map(\.rawValue).joined(separator: ", "))); the weights say which they are.")
    var model: ModelKind?
    @Option(help: "Folder for the annotated images.") var out: String?
    @Option(help: "Write the detections here as JSON.") var json: String?
    @Option(parsing: .unconditional, help: "Minimum class score of a detection (default the model\'s: 0.2 to show, 0.01 to evaluate; ssdlite320 0.001)") var minScore: Float?
    @Option(parsing: .unconditional, help: "NMS overlap threshold (default the model\'s).") var maxOverlap: Float?
    @Option(parsing: .unconditional, help: "Detections kept per image (default the model\'s).") var topK: Int?
    @Option(help: "Comma-separated class names not to report.") var suppress: String?
    @Option(help: "TrueType font for the labels.") var font: String = FontRenderer.defaultPath
    @Option(help: "Write the detections in COCO's results format here (needs --coco).") var cocoResults: String?
    @Option(help: "The COCO annotation file that gives the images' ids (by file_name) and the classes' category ids (by name).")
    var coco: String?

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one image") }
        if let minScore, !(0..<1).contains(minScore) { throw ValidationError("--min-score must be in [0, 1)") }
        if let maxOverlap, !(0...1).contains(maxOverlap) { throw ValidationError("--max-overlap must be in [0, 1]") }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1") }
        if (cocoResults == nil) != (coco == nil) {
            throw ValidationError("--coco-results and --coco go together: the annotation file gives the ids the results use")
        }
    }

    func run() throws {
        engine.apply()
        for path in images { try requireExisting(path, what: "image") }
        // Outputs are checked before the model runs, so a typo costs nothing.
        let jsonURL = try json.map { try outputFile($0, what: "--json") }
        let resultsURL = try cocoResults.map { try outputFile($0, what: "--coco-results") }
        let outFolder = try out.map { folder -> URL in
            try makeFolder(folder)
            return try outputFile(URL(fileURLWithPath: folder).appendingPathComponent("annotated.png").path, what: "--out")
                .deletingLastPathComponent()
        }
        let (model, names) = try loadModel(weights, algorithm: engine.algorithm, expecting: self.model)
        let cocoIDs = try coco.map { file -> (images: [Int], categories: [Int]) in
            try requireExisting(file, what: "--coco")
            return try COCO.identifiers(annotations: URL(fileURLWithPath: file), files: images.map { URL(fileURLWithPath: $0) }, classes: names)
        }
        var pixelDetections = [[Detection]?](repeating: nil, count: images.count)
        var suppressed = Set<Int>()
        for name in (suppress ?? "").split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces).lowercased() }) {
            guard let index = names.firstIndex(of: name) else {
                throw UserError("--suppress: unknown class '\(name)' (classes: \(names.joined(separator: ", ")))")
            }
            suppressed.insert(index + 1)
        }
        let annotator = out == nil ? nil : try DetectionAnnotator(fontPath: font)
        let annotatedNames = Self.annotatedNames(for: images)
        let bar = ProgressBar(total: images.count, label: "detect")
        var records: [[String: Any]] = [], failures: [String] = []
        try Inference.detect(files: images.map { URL(fileURLWithPath: $0) }, model: model,
                             settings: detectionSettings(model.architecture.demoDetection, minScore: minScore, maxOverlap: maxOverlap, topK: topK),
                             suppress: suppressed, progress: { done, _ in bar.update(done) }) { index, outcome in
            switch outcome {
            case let .failure(failure):
                failures.append(failure.description)
                printError("skipped \(failure)")
            case let .success(result):
                pixelDetections[index] = result.pixelDetections
                var list: [[String: Any]] = []
                for d in result.pixelDetections {
                    list.append(["box": d.box.array.map { Double($0) }, "label": names[d.label - 1], "score": Double(d.score)])
                }
                var record: [String: Any] = ["image": result.path, "width": result.width, "height": result.height, "detections": list]
                print("\(result.path): " + (list.isEmpty ? "nothing found" : result.detections.map {
                    String(format: "%@ %.2f", names[$0.label - 1], $0.score) }.joined(separator: ", ")))
                if let outFolder, let annotator {
                    let file = outFolder.appendingPathComponent(annotatedNames[index])
                    do {
                        try saveAnnotated(result, names: names, annotator: annotator, to: file)
                        record["annotated"] = file.path
                    } catch {
                        failures.append("\(result.path): cannot write \(file.path) (\(error))")
                        printError("skipped \(failures.last!)")
                    }
                }
                records.append(record)
            }
        }
        bar.finish()
        if let jsonURL {
            let data = try JSONSerialization.data(withJSONObject: records, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeAtomically(data, to: jsonURL)
        }
        if let resultsURL, let cocoIDs {
            // Images that failed are left out (and reported below).
            let done = pixelDetections.indices.filter { pixelDetections[$0] != nil }
            try writeAtomically(try COCO.results(done.map { pixelDetections[$0]! }, imageIDs: done.map { cocoIDs.images[$0] },
                                                 categoryIDs: cocoIDs.categories), to: resultsURL)
        }
        if !failures.isEmpty {
            let summary = failures.count == images.count ? "no image could be processed"
                : "\(failures.count) of \(images.count) images failed (the others' results were written)"
            throw UserError(summary + ": " + failures.joined(separator: "; "))
        }
    }

    /// The annotated file name of each input: NAME_detections.png, and for inputs that share a
    /// base name (a/x.jpg, b/x.jpg), NAME_2_detections.png… in input order, so none overwrites another.
    static func annotatedNames(for paths: [String]) -> [String] {
        var seen: [String: Int] = [:]
        return paths.map { path in
            let base = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            let n = (seen[base] ?? 0) + 1
            seen[base] = n
            return n == 1 ? "\(base)_detections.png" : "\(base)_\(n)_detections.png"
        }
    }
}
