import SSDData

/// A horizontal bar chart, one bar per category (e.g. AP per class), names on the left, values at
/// the bar ends, and a dashed line at the mean of the finite values.
///
/// Bars start at value 0. Non-finite values draw no bar and are labelled "nan"/"inf" (or the
/// bar's `label`). An empty chart draws its axes and "no data".
public struct BarChart: Sendable {
    /// One category.
    public struct Bar: Sendable, Equatable {
        public var name: String
        public var value: Double
        /// Shown instead of the value (e.g. "n/a" for a class not evaluated, value NaN).
        public var label: String?
        public init(name: String, value: Double, label: String? = nil) {
            self.name = name
            self.value = value
            self.label = label
        }
    }

    public var title: String
    /// The value axis title (e.g. "AP").
    public var valueTitle: String
    public var bars: [Bar]
    /// Draws and labels the mean of the finite values.
    public var showsMean = true
    public var barColor = RGBColor(red: 0x1f, green: 0x5f, blue: 0xb4)
    public var meanColor = RGBColor(red: 0xd6, green: 0x27, blue: 0x28)
    /// The value axis range; nil: 0...1 when every value lies in it (APs), else a nice range over
    /// the values and 0.
    public var valueRange: ClosedRange<Double>?

    public init(title: String = "", valueTitle: String = "", bars: [Bar], valueRange: ClosedRange<Double>? = nil) {
        self.title = title
        self.valueTitle = valueTitle
        self.bars = bars
        self.valueRange = valueRange
    }

    /// The mean of the finite values, nil when there are none.
    public var mean: Double? {
        let finite = bars.map(\.value).filter(\.isFinite)
        return finite.isEmpty ? nil : finite.reduce(0, +) / Double(finite.count)
    }

    /// Font size for the category names: 12 px, less when rows are tight (not under 7 px).
    private func nameSize(rowHeight: Double) -> Int { max(7, min(PlotStyle.tickLabelSize, Int(rowHeight * 0.8))) }

    /// The plot area (x: values, y: bar index 0 at the top … count at the bottom) and each bar's
    /// inclusive pixel rectangle (nil for non-finite values), for an image of `width` × `height`.
    /// Throws `GraphicsError.invalidArgument` for sizes outside 64...20000 or too small, or a
    /// value range that is not finite.
    public func layout(width: Int, height: Int, font: FontRenderer)
        throws -> (frame: PlotFrame, rectangles: [(x0: Int, y0: Int, x1: Int, y1: Int)?]) {
        let finite = bars.map(\.value).filter(\.isFinite)
        let xScale: AxisScale
        if let valueRange {
            guard valueRange.lowerBound.isFinite, valueRange.upperBound.isFinite else {
                throw GraphicsError.invalidArgument("bar chart value range \(valueRange) is not finite")
            }
            xScale = AxisScale.linear(minimum: valueRange.lowerBound, maximum: valueRange.upperBound)
        } else if finite.allSatisfy({ (0...1).contains($0) }) {
            xScale = AxisScale.linear(minimum: 0, maximum: 1)
        } else {
            xScale = AxisScale.linear(minimum: min(0, finite.min() ?? 0), maximum: max(0, finite.max() ?? 1))
        }
        let count = max(bars.count, 1)
        let roughRow = Double(height) * 0.75 / Double(count)
        let size = nameSize(rowHeight: roughRow)
        let nameWidth = bars.map { font.measure($0.name, pixelSize: size).width }.max() ?? 0
        let frame = try PlotFrame.make(width: width, height: height, font: font, xScale: xScale,
                                       yScale: AxisScale.plain(lower: Double(count), upper: 0),
                                       yLabelWidth: min(nameWidth, width * 2 / 5), title: title,
                                       xTitle: valueTitle, yTitle: "",
                                       extraTop: showsMean ? font.measure("mean", pixelSize: PlotStyle.tickLabelSize).height + 4 : 0)
        let zero = frame.pixelX(min(max(0, xScale.lower), xScale.upper))
        let rectangles: [(x0: Int, y0: Int, x1: Int, y1: Int)?] = bars.enumerated().map { index, bar in
            guard bar.value.isFinite else { return nil }
            let top = frame.pixelY(Double(index) + 0.15), bottom = frame.pixelY(Double(index) + 0.85)
            let end = frame.pixelX(bar.value)
            return (pixelIndex(min(zero, end)), pixelIndex(top), pixelIndex(max(zero, end)), max(pixelIndex(top), pixelIndex(bottom) - 1))
        }
        return (frame, rectangles)
    }

    /// Renders the chart on a white `width` × `height` image with the default font (DejaVu Sans).
    public func render(width: Int = 800, height: Int = 500) throws -> RGBImage {
        try render(width: width, height: height, font: FontRenderer())
    }

    /// Renders the chart on a white `width` × `height` image with `font`. Throws as `layout`.
    public func render(width: Int = 800, height: Int = 500, font: FontRenderer) throws -> RGBImage {
        let (frame, rectangles) = try layout(width: width, height: height, font: font)
        var image = RGBImage(width: width, height: height, fill: (255, 255, 255))
        frame.drawDecorations(on: &image, font: font, title: title, xTitle: valueTitle, yTitle: "", numericYTicks: false)
        let rowHeight = Double(frame.bottom - frame.top) / Double(max(bars.count, 1))
        let size = nameSize(rowHeight: rowHeight)
        let valueSize = max(7, min(11, Int(rowHeight * 0.7)))
        for (index, bar) in bars.enumerated() {
            let middle = pixelIndex(frame.pixelY(Double(index) + 0.5))
            let nameMetrics = font.measure(bar.name, pixelSize: size)
            font.draw(bar.name, on: &image, x: frame.left - PlotStyle.tickLength - 4 - nameMetrics.width,
                      y: middle - nameMetrics.height / 2, color: PlotStyle.textColor, pixelSize: size)
            image.fillRectangle(x0: frame.left - PlotStyle.tickLength, y0: middle, x1: frame.left, y1: middle,
                                color: PlotStyle.axisColor)
            let valueText = bar.label ?? formatNumber(bar.value, step: 0.001)
            let valueMetrics = font.measure(valueText, pixelSize: valueSize)
            var textX = frame.left + 4
            if let rectangle = rectangles[index] {
                image.fillRectangle(x0: rectangle.x0, y0: rectangle.y0, x1: rectangle.x1, y1: rectangle.y1, color: barColor)
                textX = bar.value >= 0 ? rectangle.x1 + 4 : rectangle.x0 - 4 - valueMetrics.width
                if textX + valueMetrics.width > frame.right - 2 {  // no room past the end: inside, in white
                    font.draw(valueText, on: &image, x: rectangle.x1 - 4 - valueMetrics.width,
                              y: middle - valueMetrics.height / 2, color: .white, pixelSize: valueSize)
                    continue
                }
            }
            font.draw(valueText, on: &image, x: textX, y: middle - valueMetrics.height / 2,
                      color: PlotStyle.textColor, pixelSize: valueSize)
        }
        if bars.isEmpty {
            let metrics = font.measure("no data", pixelSize: PlotStyle.axisTitleSize)
            font.draw("no data", on: &image, x: (frame.left + frame.right - metrics.width) / 2,
                      y: (frame.top + frame.bottom - metrics.height) / 2, color: PlotStyle.textColor,
                      pixelSize: PlotStyle.axisTitleSize)
        }
        if showsMean, let mean {
            let x = frame.pixelX(mean)
            image.drawLine(x0: x, y0: Double(frame.top), x1: x, y1: Double(frame.bottom), color: meanColor,
                           thickness: 2, dash: 6)
            let text = "mean \(formatNumber(mean, step: 0.001))"
            let metrics = font.measure(text, pixelSize: PlotStyle.tickLabelSize)
            let textX = min(max(pixelIndex(x) - metrics.width / 2, frame.left), frame.right - metrics.width)
            font.draw(text, on: &image, x: textX, y: frame.top - 3 - metrics.height, color: meanColor,
                      pixelSize: PlotStyle.tickLabelSize)
        }
        return image
    }
}
