import Foundation
import SSDData

/// A mapping from data values to the 0...1 span of an axis, with its tick values.
public struct AxisScale: Sendable, Equatable {
    /// The values at the two ends of the axis.
    public let lower: Double
    public let upper: Double
    public let isLogarithmic: Bool
    /// Values that get a tick mark, grid line and label (inside `lower...upper`).
    public let ticks: [Double]
    /// The spacing the tick labels are formatted for (a linear step, or 1 decade for log axes).
    let labelStep: Double

    /// A linear axis over `minimum...maximum` (finite; either order) widened to "nice" tick values
    /// (1, 2 or 5 × 10^k apart, about `targetTicks` of them). A zero-width range is widened by 10 %
    /// of its value (or by 1 around 0). Huge ranges (up to ±Double.greatestFiniteMagnitude) work.
    public static func linear(minimum: Double, maximum: Double, targetTicks: Int = 6) -> AxisScale {
        var low = min(minimum, maximum), high = max(minimum, maximum)
        if !low.isFinite || !high.isFinite { (low, high) = (0, 1) }
        if low == high {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            (low, high) = (low - pad, high + pad)
        }
        let intervals = Double(max(2, targetTicks) - 1)
        let step = niceStep(high / intervals - low / intervals)
        var lower = (low / step).rounded(.down) * step
        var upper = (high / step).rounded(.up) * step
        if !lower.isFinite || lower > low { lower = low }
        if !upper.isFinite || upper < high { upper = high }
        var ticks: [Double] = []
        let first = (lower / step).rounded(.up)
        for index in 0..<40 {
            let value = (first + Double(index)) * step
            guard value.isFinite, value <= upper + abs(step) * 1e-9 else { break }
            if value >= lower - abs(step) * 1e-9 { ticks.append(abs(value) < abs(step) * 1e-9 ? 0 : value) }
        }
        return AxisScale(lower: lower, upper: upper, isLogarithmic: false, ticks: ticks, labelStep: step)
    }

    /// A base-10 logarithmic axis over whole decades covering `minimum...maximum` (both > 0; values
    /// ≤ 0 or non-finite give 1...10). Ticks at powers of ten (every k-th decade when there are
    /// many), and also at 2 and 5 × 10^k when the axis spans at most three decades.
    public static func logarithmic(minimum: Double, maximum: Double) -> AxisScale {
        var low = min(minimum, maximum), high = max(minimum, maximum)
        if !(low > 0) || !high.isFinite { (low, high) = (1, 10) }
        var lowExponent = max(-307, log10(low).rounded(.down))
        var highExponent = min(308, log10(high).rounded(.up))
        if highExponent <= lowExponent {
            if highExponent < 308 { highExponent = lowExponent + 1 } else { lowExponent = highExponent - 1 }
        }
        let decades = highExponent - lowExponent
        let every = max(1, (decades / 8).rounded(.up))
        let multiples: [Double] = decades <= 3 ? [1, 2, 5] : [1]
        var ticks: [Double] = []
        var exponent = lowExponent
        while exponent <= highExponent {
            for multiple in multiples where exponent < highExponent || multiple == 1 {
                ticks.append(multiple * pow(10, exponent))
            }
            exponent += every
        }
        return AxisScale(lower: pow(10, lowExponent), upper: pow(10, highExponent), isLogarithmic: true,
                         ticks: ticks, labelStep: 1)
    }

    /// An axis with no ticks over `lower...upper` (used for bar categories).
    static func plain(lower: Double, upper: Double) -> AxisScale {
        AxisScale(lower: lower, upper: upper, isLogarithmic: false, ticks: [], labelStep: 1)
    }

    /// Where `value` lies along the axis: 0 at `lower`, 1 at `upper` (outside for values beyond;
    /// NaN for non-positive values on a log axis).
    public func fraction(_ value: Double) -> Double {
        if isLogarithmic {
            guard value > 0 else { return .nan }
            return (log10(value) - log10(lower)) / (log10(upper) - log10(lower))
        }
        return (value / 2 - lower / 2) / (upper / 2 - lower / 2)
    }

    /// The label of a tick value.
    public func label(_ value: Double) -> String {
        if isLogarithmic {
            let exponent = Int(log10(value).rounded())
            return (-3...4).contains(exponent) ? formatNumber(value, step: min(1, value)) : "1e\(exponent)"
        }
        return formatNumber(value, step: labelStep)
    }
}

/// The 1, 2 or 5 × 10^k nearest `rough` (positive, finite), as tick spacing.
func niceStep(_ rough: Double) -> Double {
    guard rough > 0, rough.isFinite else { return 1 }
    let magnitude = pow(10, log10(rough).rounded(.down))
    guard magnitude > 0, magnitude.isFinite else { return rough }
    let residual = rough / magnitude
    let factor: Double = residual < 1.5 ? 1 : residual < 3 ? 2 : residual < 7 ? 5 : 10
    let step = factor * magnitude
    return step.isFinite && step > 0 ? step : rough
}

/// A number as a short label for values `step` apart: fixed notation with as many decimals as the
/// step needs, scientific for very large or very small magnitudes.
func formatNumber(_ value: Double, step: Double) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    if value == 0 { return "0" }
    let magnitude = abs(value)
    let stepDecimals = step > 0 && step.isFinite ? -Int(log10(step).rounded(.down)) : 0
    if magnitude >= 1e6 || magnitude < 1e-4 || stepDecimals > 6 {
        let significant = max(1, min(15, Int(log10(magnitude).rounded(.down)) + stepDecimals + 1))
        return String(format: "%.*g", significant, value)
    }
    return String(format: "%.*f", max(0, stepDecimals), value)
}

/// Font sizes and colours shared by the plots.
enum PlotStyle {
    static let titleSize = 18
    static let axisTitleSize = 14
    static let tickLabelSize = 12
    static let tickLength = 5
    static let axisColor = RGBColor(red: 0, green: 0, blue: 0)
    static let gridColor = RGBColor(red: 225, green: 225, blue: 225)
    static let textColor = RGBColor(red: 30, green: 30, blue: 30)
    static let minimumSize = 64
}

/// The plot area of a rendered chart: inclusive pixel bounds and the two axis scales.
public struct PlotFrame: Sendable {
    public let left: Int
    public let top: Int
    public let right: Int
    public let bottom: Int
    public let xScale: AxisScale
    public let yScale: AxisScale

    /// The pixel column of data value `x` (fractional; ⌊⌋ gives the pixel).
    public func pixelX(_ x: Double) -> Double { Double(left) + xScale.fraction(x) * Double(right - left) }
    /// The pixel row of data value `y` (rows grow downwards).
    public func pixelY(_ y: Double) -> Double { Double(bottom) - yScale.fraction(y) * Double(bottom - top) }

    /// Lays out a plot area in an image of `width` × `height`: room on the left for the widest
    /// y label (`yLabelWidth`) and the y title, below for x tick labels and the x title, above for
    /// the title, plus `extraTop` rows above the area. Throws when the image is too small for any plot area.
    static func make(width: Int, height: Int, font: FontRenderer, xScale: AxisScale, yScale: AxisScale,
                     yLabelWidth: Int, title: String, xTitle: String, yTitle: String,
                     extraTop: Int = 0) throws -> PlotFrame {
        guard width >= PlotStyle.minimumSize, height >= PlotStyle.minimumSize, width <= 20_000, height <= 20_000 else {
            throw GraphicsError.invalidArgument("plot size \(width)×\(height) is outside \(PlotStyle.minimumSize)...20000 pixels")
        }
        let tickHeight = font.measure("0", pixelSize: PlotStyle.tickLabelSize).height
        let titleHeight = title.isEmpty ? 0 : font.measure(title, pixelSize: PlotStyle.titleSize).height + 8
        let axisTitleHeight = font.measure("Xg", pixelSize: PlotStyle.axisTitleSize).height
        let left = 8 + (yTitle.isEmpty ? 0 : axisTitleHeight + 6) + yLabelWidth + 4 + PlotStyle.tickLength
        let top = 10 + titleHeight + tickHeight / 2 + max(0, extraTop)
        let lastLabel = xScale.ticks.last.map { font.measure(xScale.label($0), pixelSize: PlotStyle.tickLabelSize).width } ?? 0
        let right = width - 1 - max(16, lastLabel / 2 + 6)
        let bottom = height - 1 - (8 + PlotStyle.tickLength + 3 + tickHeight + (xTitle.isEmpty ? 0 : axisTitleHeight + 6))
        guard right - left >= 16, bottom - top >= 16 else {
            throw GraphicsError.invalidArgument("plot size \(width)×\(height) leaves no room for the plot area")
        }
        return PlotFrame(left: left, top: top, right: right, bottom: bottom, xScale: xScale, yScale: yScale)
    }

    /// Draws grid lines, the axis box, tick marks and numeric labels (y ones only when
    /// `numericYTicks`), the title and the axis titles.
    func drawDecorations(on image: inout RGBImage, font: FontRenderer, title: String, xTitle: String,
                         yTitle: String, numericYTicks: Bool) {
        let size = PlotStyle.tickLabelSize
        for tick in xScale.ticks {
            let x = pixelIndex(pixelX(tick))
            image.fillRectangle(x0: x, y0: top, x1: x, y1: bottom, color: PlotStyle.gridColor)
            image.fillRectangle(x0: x, y0: bottom, x1: x, y1: bottom + PlotStyle.tickLength, color: PlotStyle.axisColor)
            let label = xScale.label(tick), metrics = font.measure(label, pixelSize: size)
            font.draw(label, on: &image, x: x - metrics.width / 2, y: bottom + PlotStyle.tickLength + 3,
                      color: PlotStyle.textColor, pixelSize: size)
        }
        if numericYTicks {
            for tick in yScale.ticks {
                let y = pixelIndex(pixelY(tick))
                image.fillRectangle(x0: left, y0: y, x1: right, y1: y, color: PlotStyle.gridColor)
                image.fillRectangle(x0: left - PlotStyle.tickLength, y0: y, x1: left, y1: y, color: PlotStyle.axisColor)
                let label = yScale.label(tick), metrics = font.measure(label, pixelSize: size)
                font.draw(label, on: &image, x: left - PlotStyle.tickLength - 4 - metrics.width,
                          y: y - metrics.height / 2, color: PlotStyle.textColor, pixelSize: size)
            }
        }
        image.strokeRectangle(x0: left, y0: top, x1: right, y1: bottom, color: PlotStyle.axisColor)
        if !title.isEmpty {
            let metrics = font.measure(title, pixelSize: PlotStyle.titleSize)
            font.draw(title, on: &image, x: (image.width - metrics.width) / 2, y: 8, color: PlotStyle.textColor,
                      pixelSize: PlotStyle.titleSize)
        }
        if !xTitle.isEmpty {
            let metrics = font.measure(xTitle, pixelSize: PlotStyle.axisTitleSize)
            font.draw(xTitle, on: &image, x: (left + right - metrics.width) / 2, y: image.height - 6 - metrics.height,
                      color: PlotStyle.textColor, pixelSize: PlotStyle.axisTitleSize)
        }
        if !yTitle.isEmpty {
            let metrics = font.measure(yTitle, pixelSize: PlotStyle.axisTitleSize)
            font.draw(yTitle, on: &image, x: 8, y: (top + bottom - metrics.width) / 2, color: PlotStyle.textColor,
                      pixelSize: PlotStyle.axisTitleSize, orientation: .upward)
        }
    }
}
