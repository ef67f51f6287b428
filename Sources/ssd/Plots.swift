import Foundation
import SSDBoxes
import SSDData
import SSDEvaluation
import SSDGraphics
import SSDTraining

/// The plots the commands write next to their outputs.
enum Plots {
    /// The training loss curve (and its two parts) from a JSON-lines training log.
    static func lossCurve(log: URL, to url: URL) throws {
        let text: String
        do { text = try String(contentsOf: log, encoding: .utf8) } catch {
            throw UserError("\(log.path): cannot read the training log (\(error.localizedDescription))")
        }
        var x: [Double] = [], total: [Double] = [], confidence: [Double] = [], localization: [Double] = []
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let i = object["iteration"] as? Double, let l = object["loss"] as? Double else { continue }
            x.append(i)
            total.append(l)
            confidence.append(object["confidence_loss"] as? Double ?? .nan)
            localization.append(object["localization_loss"] as? Double ?? .nan)
        }
        guard !x.isEmpty else { return }
        let plot = LinePlot(title: "Training loss", xTitle: "iteration", yTitle: "MultiBox loss",
                            series: [PlotSeries(name: "total", x: x, y: total),
                                     PlotSeries(name: "confidence", x: x, y: confidence),
                                     PlotSeries(name: "localisation", x: x, y: localization)])
        try ImageCodec.save(try plot.render(width: 900, height: 520), to: url)
    }

    /// Per-class AP bars with the mean; a class not evaluated has no bar and reads "n/a".
    static func averagePrecisions(names: [String], result: APResult, to url: URL) throws {
        let chart = BarChart(title: String(format: "AP per class (%@), mAP %.3f", result.metric.rawValue, result.meanAveragePrecision),
                             valueTitle: "average precision",
                             bars: zip(names, result.averagePrecisions).map { name, ap in
                                 ap.map { BarChart.Bar(name: name, value: Double($0)) } ?? BarChart.Bar(name: name, value: .nan, label: "n/a")
                             },
                             valueRange: 0...1)
        try ImageCodec.save(try chart.render(width: 900, height: max(360, 90 + 26 * names.count)), to: url)
    }
}

/// Draws `photo`'s detections on the photo (the reference's boxes and labels) and writes it to
/// `folder` as NAME_detections.png.
func saveAnnotated(_ photo: PhotoDetections, names: [String], annotator: DetectionAnnotator, folder: URL) throws {
    let name = URL(fileURLWithPath: photo.path).deletingPathExtension().lastPathComponent + "_detections.png"
    try saveAnnotated(photo, names: names, annotator: annotator, to: folder.appendingPathComponent(name))
}

/// Draws `photo`'s detections on the photo (decoded again: inference keeps no full-size photo)
/// and writes it to `file` as PNG.
func saveAnnotated(_ photo: PhotoDetections, names: [String], annotator: DetectionAnnotator, to file: URL) throws {
    let drawn = photo.pixelDetections.map { DetectionAnnotation($0, name: names[$0.label - 1]) }
    let image = try ImageCodec.load(URL(fileURLWithPath: photo.path))
    try ImageCodec.save(annotator.annotated(image, with: drawn), to: file)
}
