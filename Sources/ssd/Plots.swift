import Foundation
import SSDData
import SSDEvaluation
import SSDGraphics

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

    /// Per-class AP bars with the mean.
    static func averagePrecisions(names: [String], result: APResult, to url: URL) throws {
        let chart = BarChart(title: String(format: "AP per class (%@), mAP %.3f", result.metric.rawValue, result.meanAveragePrecision),
                             valueTitle: "average precision",
                             bars: zip(names, result.averagePrecisions).map { BarChart.Bar(name: $0, value: Double($1)) },
                             valueRange: 0...1)
        try ImageCodec.save(try chart.render(width: 900, height: max(360, 90 + 26 * names.count)), to: url)
    }
}
