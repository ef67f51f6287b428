import SSDData

/// One curve of a line plot: y against x.
public struct PlotSeries: Sendable {
    /// Shown in the legend when non-empty.
    public var name: String
    public var x: [Double]
    public var y: [Double]
    /// nil: the plot's palette colour for the series' position.
    public var color: RGBColor?

    /// A series of points (x[i], y[i]); the two arrays must have the same length.
    public init(name: String = "", x: [Double], y: [Double], color: RGBColor? = nil) {
        self.name = name
        self.x = x
        self.y = y
        self.color = color
    }

    /// A series of `values` at x = 0, 1, 2, …
    public init(name: String = "", values: [Double], color: RGBColor? = nil) {
        self.init(name: name, x: values.indices.map(Double.init), y: values, color: color)
    }
}

/// A line chart (e.g. training loss against iteration): one or more series, numeric axes with
/// ticks and grid, axis titles, a title, a legend for named series that have a drawable point,
/// optional log-scale y.
///
/// Points with a non-finite coordinate (or y ≤ 0 on a log axis) are skipped and break the line.
/// A series of one point is drawn as a dot. Constant series get an axis widened around the value.
public struct LinePlot: Sendable {
    public var title: String
    public var xTitle: String
    public var yTitle: String
    public var series: [PlotSeries]
    public var logarithmicY: Bool
    /// Line width in pixels.
    public var lineWidth = 2

    /// Default series colours, in order (cycled).
    public static let palette: [RGBColor] = ["#1f5fb4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                             "#e377c2", "#17becf"].compactMap { RGBColor(hex: $0) }

    public init(title: String = "", xTitle: String = "", yTitle: String = "", series: [PlotSeries],
                logarithmicY: Bool = false) {
        self.title = title
        self.xTitle = xTitle
        self.yTitle = yTitle
        self.series = series
        self.logarithmicY = logarithmicY
    }

    /// The colour series `index` is drawn in.
    public func color(ofSeries index: Int) -> RGBColor {
        series[index].color ?? LinePlot.palette[index % LinePlot.palette.count]
    }

    private func isDrawable(x: Double, y: Double) -> Bool {
        x.isFinite && y.isFinite && (!logarithmicY || y > 0)
    }

    /// The plot area and scales for an image of `width` × `height`. Throws
    /// `GraphicsError.invalidArgument` when a series' x and y differ in length, when no point is
    /// drawable, or when the size is outside 64...20000 or leaves no plot area.
    public func layout(width: Int, height: Int, font: FontRenderer) throws -> PlotFrame {
        var xLow = Double.infinity, xHigh = -Double.infinity, yLow = Double.infinity, yHigh = -Double.infinity
        for (index, curve) in series.enumerated() {
            guard curve.x.count == curve.y.count else {
                throw GraphicsError.invalidArgument("series \(index) has \(curve.x.count) x values but \(curve.y.count) y values")
            }
            for (x, y) in zip(curve.x, curve.y) where isDrawable(x: x, y: y) {
                xLow = min(xLow, x); xHigh = max(xHigh, x); yLow = min(yLow, y); yHigh = max(yHigh, y)
            }
        }
        guard xLow <= xHigh else {
            throw GraphicsError.invalidArgument("line plot has no drawable point (empty, non-finite\(logarithmicY ? " or non-positive" : ""))")
        }
        let xScale = AxisScale.linear(minimum: xLow, maximum: xHigh)
        let yScale = logarithmicY ? AxisScale.logarithmic(minimum: yLow, maximum: yHigh)
                                  : AxisScale.linear(minimum: yLow, maximum: yHigh)
        let labelWidth = yScale.ticks.map { font.measure(yScale.label($0), pixelSize: PlotStyle.tickLabelSize).width }.max() ?? 0
        return try PlotFrame.make(width: width, height: height, font: font, xScale: xScale, yScale: yScale,
                                  yLabelWidth: labelWidth, title: title, xTitle: xTitle, yTitle: yTitle)
    }

    /// Renders the plot on a white `width` × `height` image with the default font (DejaVu Sans).
    public func render(width: Int = 800, height: Int = 500) throws -> RGBImage {
        try render(width: width, height: height, font: FontRenderer())
    }

    /// Renders the plot on a white `width` × `height` image with `font`. Throws as `layout`.
    public func render(width: Int = 800, height: Int = 500, font: FontRenderer) throws -> RGBImage {
        let frame = try layout(width: width, height: height, font: font)
        var image = RGBImage(width: width, height: height, fill: (255, 255, 255))
        frame.drawDecorations(on: &image, font: font, title: title, xTitle: xTitle, yTitle: yTitle, numericYTicks: true)
        for index in series.indices {
            let curve = series[index], color = color(ofSeries: index)
            var previous: (Double, Double)?
            for (x, y) in zip(curve.x, curve.y) {
                guard isDrawable(x: x, y: y) else { previous = nil; continue }
                let point = (frame.pixelX(x), frame.pixelY(y))
                if let previous {
                    image.drawLine(x0: previous.0, y0: previous.1, x1: point.0, y1: point.1, color: color, thickness: lineWidth)
                } else {
                    image.drawLine(x0: point.0, y0: point.1, x1: point.0, y1: point.1, color: color, thickness: lineWidth)
                }
                previous = point
            }
            if curve.x.count == 1, let x = curve.x.first, let y = curve.y.first, isDrawable(x: x, y: y) {
                let px = pixelIndex(frame.pixelX(x)), py = pixelIndex(frame.pixelY(y))
                image.fillRectangle(x0: px - 3, y0: py - 3, x1: px + 3, y1: py + 3, color: color)
            }
        }
        drawLegend(on: &image, frame: frame, font: font)
        return image
    }

    private func drawLegend(on image: inout RGBImage, frame: PlotFrame, font: FontRenderer) {
        let entries = series.indices.filter { index in
            !series[index].name.isEmpty && zip(series[index].x, series[index].y).contains { isDrawable(x: $0, y: $1) }
        }
        guard !entries.isEmpty else { return }
        let size = PlotStyle.tickLabelSize
        let rowHeight = font.measure("Xg", pixelSize: size).height + 4
        let textWidth = entries.map { font.measure(series[$0].name, pixelSize: size).width }.max() ?? 0
        let boxWidth = 8 + 22 + 6 + textWidth + 8, boxHeight = 6 + rowHeight * entries.count + 2
        let x0 = frame.right - 10 - boxWidth, y0 = frame.top + 10
        image.fillRectangle(x0: x0, y0: y0, x1: x0 + boxWidth, y1: y0 + boxHeight, color: .white)
        image.strokeRectangle(x0: x0, y0: y0, x1: x0 + boxWidth, y1: y0 + boxHeight, color: PlotStyle.gridColor)
        for (row, index) in entries.enumerated() {
            let top = y0 + 6 + row * rowHeight, middle = top + rowHeight / 2 - 2
            image.fillRectangle(x0: x0 + 8, y0: middle - 1, x1: x0 + 30, y1: middle, color: color(ofSeries: index))
            font.draw(series[index].name, on: &image, x: x0 + 36, y: top, color: PlotStyle.textColor, pixelSize: size)
        }
    }
}
