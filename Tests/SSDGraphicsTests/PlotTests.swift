import Foundation
import SSDBoxes
import SSDData
import SSDGraphics
import XCTest

final class PlotTests: XCTestCase {
    static let font: FontRenderer? = try? FontRenderer()

    func font() throws -> FontRenderer {
        try XCTUnwrap(PlotTests.font, "DejaVu Sans must be installed (fonts-dejavu-core)")
    }

    func nonWhiteCount(_ image: RGBImage, in frame: PlotFrame) -> Int {
        var count = 0
        for y in (frame.top + 1)..<frame.bottom {
            for x in (frame.left + 1)..<frame.right where image.color(x: x, y: y) != .white { count += 1 }
        }
        return count
    }

    /// True when `color` is at (x, y) or one of its 8 neighbours.
    func near(_ image: RGBImage, _ x: Int, _ y: Int, _ color: RGBColor) -> Bool {
        for dy in -1...1 { for dx in -1...1 where image.color(x: x + dx, y: y + dy) == color { return true } }
        return false
    }

    func testAxisTicksAreNiceAndLabelled() {
        let scale = AxisScale.linear(minimum: 0, maximum: 0.93)
        XCTAssertEqual(scale.lower, 0)
        XCTAssertEqual(scale.upper, 1, accuracy: 1e-12)
        XCTAssertEqual(scale.ticks.count, 6)
        XCTAssertEqual(scale.ticks.map(scale.label), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        let big = AxisScale.linear(minimum: 0, maximum: 120_000)
        XCTAssertEqual(big.ticks.map(big.label).prefix(3), ["0", "20000", "40000"])
        let constant = AxisScale.linear(minimum: 5, maximum: 5)
        XCTAssertLessThan(constant.lower, 5)
        XCTAssertGreaterThan(constant.upper, 5)
        XCTAssertEqual(constant.fraction(5), 0.5, accuracy: 1e-9)
        let huge = AxisScale.linear(minimum: -Double.greatestFiniteMagnitude, maximum: .greatestFiniteMagnitude)
        XCTAssertTrue(huge.fraction(0).isFinite)
        XCTAssertEqual(huge.fraction(0), 0.5, accuracy: 1e-9)
        XCTAssertFalse(huge.ticks.isEmpty)
        let log = AxisScale.logarithmic(minimum: 0.03, maximum: 250)
        XCTAssertEqual(log.lower, 0.01, accuracy: 1e-15)
        XCTAssertEqual(log.upper, 1000, accuracy: 1e-9)
        XCTAssertEqual(log.ticks.map(log.label), ["0.01", "0.1", "1", "10", "100", "1000"])
        XCTAssertEqual(log.fraction(1), 0.4, accuracy: 1e-12)
        let narrowLog = AxisScale.logarithmic(minimum: 2, maximum: 15)
        XCTAssertEqual(narrowLog.ticks.map(narrowLog.label), ["1", "2", "5", "10", "20", "50", "100"])
    }

    func testStraightLinePassesThroughExpectedPixels() throws {
        let font = try font()
        let xs = (0...100).map(Double.init)
        let plot = LinePlot(title: "Training loss", xTitle: "iteration", yTitle: "loss",
                            series: [PlotSeries(x: xs, y: xs.map { 3 - 0.02 * $0 })])
        let image = try plot.render(width: 800, height: 500, font: font)
        XCTAssertEqual(image.width, 800)
        XCTAssertEqual(image.height, 500)
        let frame = try plot.layout(width: 800, height: 500, font: font)
        XCTAssertGreaterThan(nonWhiteCount(image, in: frame), 500)
        let color = plot.color(ofSeries: 0)
        for x in [5.0, 33.0, 50.0, 77.0, 95.0] {
            let px = pixelIndex(frame.pixelX(x)), py = pixelIndex(frame.pixelY(3 - 0.02 * x))
            XCTAssertEqual(image.color(x: px, y: py), color, "curve at x = \(x)")
            let off = pixelIndex(frame.pixelY(3 - 0.02 * x + 0.3))
            XCTAssertNotEqual(image.color(x: px, y: off), color, "nothing 0.3 above the line")
        }
        XCTAssertTrue(frame.left > 20 && frame.right < 800 && frame.top > 20 && frame.bottom < 480)
        XCTAssertEqual(image.color(x: frame.left, y: (frame.top + frame.bottom) / 2), .black, "axis box")
        var text = 0
        for y in 0..<frame.top { for x in 0..<800 where image.color(x: x, y: y) != .white { text += 1 } }
        XCTAssertGreaterThan(text, 50, "the title is drawn above the plot area")
    }

    func testLogarithmicAxisMakesExponentialStraight() throws {
        let font = try font()
        let xs = (0...40).map { Double($0) / 10 }
        let plot = LinePlot(series: [PlotSeries(name: "loss", x: xs, y: xs.map { pow(10, $0) })], logarithmicY: true)
        let frame = try plot.layout(width: 640, height: 400, font: font)
        XCTAssertTrue(frame.yScale.isLogarithmic)
        let image = try plot.render(width: 640, height: 400, font: font)
        for x in [1.0, 2.0, 3.0] {
            XCTAssertTrue(near(image, pixelIndex(frame.pixelX(x)), pixelIndex(frame.pixelY(pow(10, x))), plot.color(ofSeries: 0)))
        }
        XCTAssertEqual(frame.pixelY(100) - frame.pixelY(1000), frame.pixelY(10) - frame.pixelY(100), accuracy: 1e-9)
    }

    func testDegenerateSeriesDoNotCrash() throws {
        let font = try font()
        let cases: [[PlotSeries]] = [
            [PlotSeries(values: [4.2])],
            [PlotSeries(values: Array(repeating: 7, count: 50))],
            [PlotSeries(values: [0, 0, 0])],
            [PlotSeries(values: [-Double.greatestFiniteMagnitude, 0, .greatestFiniteMagnitude])],
            [PlotSeries(values: [1, 1 + 1e-15, 1])],
            [PlotSeries(values: [1e-300, 1e300])],
            [PlotSeries(values: [1, .nan, 3, .infinity, 2])],
            [PlotSeries(name: "train", values: (0..<5000).map { 5 * exp(-Double($0) / 800) }),
             PlotSeries(name: "validation", x: [0, 2500, 4999], y: [5, 1, 0.5]),
             PlotSeries(name: "all missing", values: Array(repeating: .nan, count: 5000))],
        ]
        for series in cases {
            for logarithmic in [false, true] {
                let plot = LinePlot(title: "t", xTitle: "x", yTitle: "y", series: series, logarithmicY: logarithmic)
                if logarithmic, series[0].y.allSatisfy({ !($0 > 0) }) {
                    XCTAssertThrowsError(try plot.render(width: 300, height: 200, font: font))
                    continue
                }
                let image = try plot.render(width: 300, height: 200, font: font)
                XCTAssertEqual(image.pixels.count, 300 * 200 * 3)
                let frame = try plot.layout(width: 300, height: 200, font: font)
                XCTAssertGreaterThan(nonWhiteCount(image, in: frame), 0)
            }
        }
        let single = LinePlot(series: [PlotSeries(values: [4.2])])
        let frame = try single.layout(width: 300, height: 200, font: font)
        let image = try single.render(width: 300, height: 200, font: font)
        XCTAssertEqual(image.color(x: pixelIndex(frame.pixelX(0)) + 2, y: pixelIndex(frame.pixelY(4.2)) - 2),
                       single.color(ofSeries: 0), "a single point is a visible dot")
    }

    func testBadLinePlotInputThrows() throws {
        let font = try font()
        XCTAssertThrowsError(try LinePlot(series: []).render(width: 300, height: 200, font: font))
        XCTAssertThrowsError(try LinePlot(series: [PlotSeries(values: [])]).render(width: 300, height: 200, font: font))
        XCTAssertThrowsError(try LinePlot(series: [PlotSeries(values: [.nan])]).render(width: 300, height: 200, font: font))
        XCTAssertThrowsError(try LinePlot(series: [PlotSeries(x: [1, 2], y: [1])]).render(width: 300, height: 200, font: font))
        XCTAssertThrowsError(try LinePlot(series: [PlotSeries(values: [1, 2])]).render(width: 10, height: 200, font: font))
        XCTAssertThrowsError(try LinePlot(series: [PlotSeries(values: [1, 2])]).render(width: 300, height: -5, font: font))
    }

    func testBarLengthIsProportionalToValue() throws {
        let font = try font()
        let chart = BarChart(title: "AP per class", valueTitle: "AP",
                             bars: [.init(name: "aeroplane", value: 1.0), .init(name: "bicycle", value: 0.5),
                                    .init(name: "bird", value: 0.25), .init(name: "boat", value: 0)])
        let (frame, rectangles) = try chart.layout(width: 800, height: 500, font: font)
        let image = try chart.render(width: 800, height: 500, font: font)
        XCTAssertEqual(image.width, 800)
        XCTAssertEqual(image.height, 500)
        XCTAssertEqual(frame.xScale.lower, 0)
        XCTAssertEqual(frame.xScale.upper, 1, accuracy: 1e-12)
        let lengths = try rectangles.map { Double(try XCTUnwrap($0).x1 - (try XCTUnwrap($0).x0)) }
        XCTAssertEqual(lengths[0], Double(frame.right - frame.left), accuracy: 1.5)
        XCTAssertEqual(lengths[1], lengths[0] * 0.5, accuracy: 1.5)
        XCTAssertEqual(lengths[2], lengths[0] * 0.25, accuracy: 1.5)
        XCTAssertEqual(lengths[3], 0, accuracy: 1)
        // The pixels agree with the layout: bar colour along the bar, not past its end.
        var measured: [Int] = []
        for index in 0..<3 {
            let rectangle = try XCTUnwrap(rectangles[index])
            let y = (rectangle.y0 + rectangle.y1) / 2
            XCTAssertTrue(rectangle.y1 - rectangle.y0 > 10, "bars are thick")
            var run = 0
            for x in frame.left...frame.right where image.color(x: x, y: rectangle.y0 + 1) == chart.barColor { run += 1 }
            measured.append(run)
            XCTAssertNotEqual(image.color(x: rectangle.x1 + 2, y: y), chart.barColor)
        }
        XCTAssertEqual(Double(measured[1]) / Double(measured[0]), 0.5, accuracy: 0.02)
        XCTAssertEqual(Double(measured[2]) / Double(measured[0]), 0.25, accuracy: 0.02)
        // Bars are in order top to bottom, and the dashed mean line (0.4375) is drawn.
        XCTAssertLessThan(try XCTUnwrap(rectangles[0]).y1, try XCTUnwrap(rectangles[1]).y0)
        XCTAssertEqual(try XCTUnwrap(chart.mean), 0.4375, accuracy: 1e-12)
        let meanX = pixelIndex(frame.pixelX(0.4375))
        let meanPixels = (frame.top...frame.bottom).filter { near(image, meanX, $0, chart.meanColor) }.count
        XCTAssertGreaterThan(meanPixels, (frame.bottom - frame.top) / 4)
        // Class names are drawn left of the plot area.
        var names = 0
        for y in frame.top...frame.bottom { for x in 0..<frame.left - 6 where image.color(x: x, y: y) != .white { names += 1 } }
        XCTAssertGreaterThan(names, 100)
    }

    func testDegenerateBarChartsDoNotCrash() throws {
        let font = try font()
        let empty = BarChart(title: "nothing", bars: [])
        XCTAssertNil(empty.mean)
        let image = try empty.render(width: 400, height: 300, font: font)
        XCTAssertEqual(image.pixels.count, 400 * 300 * 3)
        let odd = BarChart(bars: [.init(name: "negative", value: -3), .init(name: "nan", value: .nan),
                                  .init(name: "inf", value: .infinity), .init(name: "big", value: 1e12),
                                  .init(name: "", value: 2)])
        let (_, rectangles) = try odd.layout(width: 400, height: 300, font: font)
        XCTAssertNil(rectangles[1])
        XCTAssertNil(rectangles[2])
        _ = try odd.render(width: 400, height: 300, font: font)
        let many = BarChart(bars: (0..<200).map { .init(name: "class \($0)", value: Double($0) / 200) })
        _ = try many.render(width: 400, height: 300, font: font)
        XCTAssertEqual(try BarChart(bars: [.init(name: "a", value: 0.5)]).render(width: 200, height: 120, font: font).width, 200)
        XCTAssertThrowsError(try BarChart(bars: []).render(width: 30, height: 300, font: font))
    }

    /// Writes sample images to $SSD_GRAPHICS_PREVIEW (a directory) to look at; skipped without it.
    func testWritePreviewImages() throws {
        guard let directory = ProcessInfo.processInfo.environment["SSD_GRAPHICS_PREVIEW"], !directory.isEmpty else {
            throw XCTSkip("set SSD_GRAPHICS_PREVIEW=DIR to write preview PNGs")
        }
        let font = try font()
        let root = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let iterations = (0..<3000).map { Double($0 * 40) }
        var seed: UInt64 = 42
        let loss = iterations.map { x -> Double in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return 2 + 12 * exp(-x / 15000) + Double(seed >> 40) / Double(1 << 24) * 1.5
        }
        let plot = LinePlot(title: "Training loss", xTitle: "iteration", yTitle: "MultiBox loss",
                            series: [PlotSeries(name: "loss", x: iterations, y: loss)])
        try ImageCodec.save(try plot.render(font: font), to: root.appendingPathComponent("loss.png"))
        var logPlot = plot
        logPlot.logarithmicY = true
        try ImageCodec.save(try logPlot.render(font: font), to: root.appendingPathComponent("loss-log.png"))
        let names = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                     "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
        let chart = BarChart(title: "Average precision per class (VOC07 11-point), mAP 0.772", valueTitle: "AP",
                             bars: names.enumerated().map { .init(name: $1, value: 0.5 + 0.45 * sin(Double($0))) })
        try ImageCodec.save(try chart.render(font: font), to: root.appendingPathComponent("ap.png"))
        var photo = RGBImage(width: 500, height: 375)
        for y in 0..<375 { for x in 0..<500 { photo.setPixel(x: x, y: y, color: RGBColor(red: UInt8(x / 2), green: UInt8(y / 2), blue: 90)) } }
        let annotator = try DetectionAnnotator()
        annotator.annotate(&photo, with: [
            DetectionAnnotation(Detection(box: Box(40, 80, 230, 330), label: 15, score: 0.9), name: "person"),
            DetectionAnnotation(Detection(box: Box(250, 2, 480, 200), label: 12, score: 0.8), name: "dog"),
            DetectionAnnotation(Detection(box: Box(300, 250, 520, 400), label: 3, score: 0.6), name: "bird"),
        ])
        try ImageCodec.save(photo, to: root.appendingPathComponent("annotated.png"))
    }
}

/// The pixel a fractional coordinate falls in.
func pixelIndex(_ value: Double) -> Int { Int(value.rounded(.down)) }
