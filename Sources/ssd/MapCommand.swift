import ArgumentParser
import Foundation
import SSDData
import SSDEvaluation
import SSDLayers

extension APMetric: ExpressibleByArgument {}

/// `ssd map`: scores a file of ground truth and detections, without a model.
struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Compute per-class AP and mAP from a JSON file of ground truth and detections.",
        discussion: """
            The input holds per-image lists: true_boxes, true_labels, true_difficulties, det_boxes, det_labels, \
            det_scores (the schema of shared/fixtures/ssd300/map_case.json). Labels are 1…n; 0 is background.
            """)

    @Option(help: "The JSON file of ground truth and detections.")
    var input: String

    @Option(help: "voc07 (the reference's 11-point AP), voc12 (area under the curve) or coco (pycocotools' AP@[.50:.95]; difficult objects are crowd regions; classes without other objects: n/a).")
    var metric: APMetric = .voc07

    @Option(help: "Class names for labels 1…n, comma-separated. Default: the 20 VOC classes.")
    var classes: String?

    @Option(help: "Also write {\"mAP\", \"APs\", \"metric\"} to this JSON file (AP null: not evaluated).")
    var json: String?

    func validate() throws {
        if let classes, classes.split(separator: ",").isEmpty { throw ValidationError("--classes needs at least one name") }
    }

    func run() throws {
        let names = classes.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } ?? LabelMap.voc.classes
        let file = try EvaluationFile(url: URL(fileURLWithPath: input))
        try file.requireLabels(atMost: names.count, path: input)
        let result = try MeanAveragePrecision.compute(truths: file.truths, detections: file.detections,
                                                      classCount: names.count + 1, metric: metric)
        printAPTable(names: names, result: result)
        if let json { try writeAPJSON(names: names, result: result, to: json) }
    }
}

/// Prints per-class APs and the mean, one line each; "n/a" for a class not evaluated.
func printAPTable(names: [String], result: APResult) {
    let width = max(names.map(\.count).max() ?? 5, 5)
    for (name, ap) in zip(names, result.averagePrecisions) {
        print(name.padding(toLength: width, withPad: " ", startingAt: 0) + (ap.map { String(format: "  %.4f", $0) } ?? "  n/a"))
    }
    print("mAP".padding(toLength: width, withPad: " ", startingAt: 0)
          + String(format: "  %.4f  (%@)", result.meanAveragePrecision, result.metric.rawValue))
}

/// Writes `{"mAP": …, "APs": {class name: AP}, "metric": …}` atomically; a class not evaluated
/// has AP null.
func writeAPJSON(names: [String], result: APResult, to path: String) throws {
    var aps: [String: Any] = [:]
    for (name, ap) in zip(names, result.averagePrecisions) { aps[name] = ap.map { Double($0) as Any } ?? NSNull() }
    try requireFinite([Double(result.meanAveragePrecision)] + result.averagePrecisions.compactMap { $0.map { Double($0) } }, "the AP table")
    let object: [String: Any] = ["mAP": Double(result.meanAveragePrecision), "APs": aps, "metric": result.metric.rawValue]
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try writeAtomically(data, to: URL(fileURLWithPath: path))
}
