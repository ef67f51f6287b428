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
    @Option(help: "Folder for the annotated images.") var out: String?
    @Option(help: "Write the detections here as JSON.") var json: String?
    @Option(help: "Minimum class score of a detection.") var minScore: Float = 0.2
    @Option(help: "NMS overlap threshold.") var maxOverlap: Float = 0.5
    @Option(help: "Detections kept per image.") var topK: Int = 200
    @Option(help: "Comma-separated class names not to report.") var suppress: String?
    @Option(help: "TrueType font for the labels.") var font: String = FontRenderer.defaultPath

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one image") }
        if !(0..<1).contains(minScore) || !(0...1).contains(maxOverlap) { throw ValidationError("--min-score in [0, 1), --max-overlap in [0, 1]") }
        if topK < 1 { throw ValidationError("--top-k must be at least 1") }
    }

    func run() throws {
        engine.apply()
        for path in images { try requireExisting(path, what: "image") }
        let (model, names) = try loadModel(weights, algorithm: engine.algorithm)
        var suppressed = Set<Int>()
        for name in (suppress ?? "").split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces).lowercased() }) {
            guard let index = names.firstIndex(of: name) else {
                throw UserError("--suppress: unknown class '\(name)' (classes: \(names.joined(separator: ", ")))")
            }
            suppressed.insert(index + 1)
        }
        let annotator = out == nil ? nil : try DetectionAnnotator(fontPath: font)
        if let out { try makeFolder(out) }
        let bar = ProgressBar(total: images.count, label: "detect")
        let results = try Inference.detect(files: images.map { URL(fileURLWithPath: $0) }, model: model,
                                           settings: DetectionSettings(minScore: minScore, maxOverlap: maxOverlap, topK: topK),
                                           suppress: suppressed) { done, _ in bar.update(done) }
        bar.finish()
        var records: [[String: Any]] = []
        for result in results {
            var list: [[String: Any]] = []
            for (i, d) in result.detections.enumerated() {
                let box = result.pixelBox(i)
                list.append(["box": box.map { Double($0) }, "label": names[d.label - 1], "score": Double(d.score)])
            }
            records.append(["image": result.path, "width": result.width, "height": result.height, "detections": list])
            print("\(result.path): " + (list.isEmpty ? "nothing found" : result.detections.map {
                String(format: "%@ %.2f", names[$0.label - 1], $0.score) }.joined(separator: ", ")))
            if let out, let annotator {
                try saveAnnotated(result, names: names, annotator: annotator, folder: URL(fileURLWithPath: out))
            }
        }
        if let json {
            let data = try JSONSerialization.data(withJSONObject: records, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeAtomically(data, to: URL(fileURLWithPath: json))
        }
    }
}
