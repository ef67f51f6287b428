import Foundation
import SSDEngine

/// Bilinear resampling that reproduces PIL's `Image.resize(size, Image.BILINEAR)` on 8-bit RGB
/// bit for bit (`ImagingResample` in PIL's Resample.c): the triangle filter's support is
/// widened by the scale when shrinking (antialiasing); each output pixel's weights are computed
/// in double precision, normalised to sum to one, then turned into fixed point with 22
/// fractional bits (rounded away from zero); sums start at one half and are shifted back and
/// clipped to 0…255. The horizontal pass runs first, over only the rows the vertical pass
/// reads, and its result is stored as 8-bit before the vertical pass.
public enum Resampler {
    static let precisionBits = 32 - 8 - 2

    /// One axis's resampling plan: for each output index the first input index, the number of
    /// inputs, and `taps` fixed-point weights (`taps` per output index, unused ones zero).
    struct Plan {
        var first: [Int]
        var count: [Int]
        var weights: [Int32]
        var taps: Int
    }

    /// PIL's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the box [0, inSize).
    static func plan(inSize: Int, outSize: Int) -> Plan {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale  // bilinear support is 1
        let taps = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let inverse = 1.0 / filterScale
            let xmin = max(0, Int(center - support + 0.5))
            let xmax = min(inSize, Int(center + support + 0.5)) - xmin
            var sum = 0.0
            for x in 0..<taps { k[x] = 0 }
            for x in 0..<max(xmax, 0) {
                var t = (Double(x + xmin) - center + 0.5) * inverse
                if t < 0 { t = -t }
                let w = t < 1.0 ? 1.0 - t : 0.0
                k[x] = w
                sum += w
            }
            for x in 0..<max(xmax, 0) where sum != 0 { k[x] /= sum }
            let one = Double(1 << precisionBits)
            for x in 0..<taps {
                let v = k[x]
                weights[xx * taps + x] = Int32(v < 0 ? (-0.5 + v * one) : (0.5 + v * one))
            }
            first[xx] = xmin
            count[xx] = max(xmax, 0)
        }
        return Plan(first: first, count: count, weights: weights, taps: taps)
    }

    @inline(__always) static func clip8(_ v: Int32) -> UInt8 {
        let shifted = v >> Int32(precisionBits)
        return shifted <= 0 ? 0 : (shifted >= 255 ? 255 : UInt8(shifted))
    }

    /// `image` resized to `width`×`height` exactly as PIL's bilinear filter does it.
    public static func resizeBilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if image.width == width && image.height == height { return image }
        let horizontal = plan(inSize: image.width, outSize: width)
        let vertical = plan(inSize: image.height, outSize: height)
        let needHorizontal = width != image.width
        let needVertical = height != image.height
        var source = image
        var rowOffsets = vertical.first
        if needHorizontal {
            // Only rows [firstRow, lastRow) feed the vertical pass.
            let firstRow = needVertical ? vertical.first[0] : 0
            let lastRow = needVertical ? vertical.first[height - 1] + vertical.count[height - 1] : image.height
            if needVertical { rowOffsets = vertical.first.map { $0 - firstRow } }
            source = horizontalPass(image, plan: horizontal, width: width, rows: firstRow..<lastRow)
        }
        guard needVertical else { return source }
        return verticalPass(source, plan: vertical, first: rowOffsets, height: height)
    }

    static func horizontalPass(_ image: RGBImage, plan: Plan, width: Int, rows: Range<Int>) -> RGBImage {
        var out = [UInt8](repeating: 0, count: width * rows.count * 3)
        let half = Int32(1 << (precisionBits - 1))
        let taps = plan.taps, inWidth = image.width
        image.pixels.withUnsafeBufferPointer { srcBuffer in
            out.withUnsafeMutableBufferPointer { dstBuffer in
                plan.weights.withUnsafeBufferPointer { weightBuffer in
                    plan.first.withUnsafeBufferPointer { firstBuffer in
                        plan.count.withUnsafeBufferPointer { countBuffer in
                            let src = srcBuffer.baseAddress!, dst = dstBuffer.baseAddress!
                            let weights = weightBuffer.baseAddress!, first = firstBuffer.baseAddress!, count = countBuffer.baseAddress!
                            var target = dst
                            for y in rows {
                                let line = src + y * inWidth * 3
                                for xx in 0..<width {
                                    let k = weights + xx * taps
                                    var s0 = half, s1 = half, s2 = half
                                    var p = line + first[xx] * 3
                                    var x = 0
                                    let n = count[xx]
                                    // Two taps per step (same integer sums in another order).
                                    while x + 1 < n {
                                        let w0 = k[x], w1 = k[x + 1]
                                        s0 &+= Int32(p[0]) &* w0 &+ Int32(p[3]) &* w1
                                        s1 &+= Int32(p[1]) &* w0 &+ Int32(p[4]) &* w1
                                        s2 &+= Int32(p[2]) &* w0 &+ Int32(p[5]) &* w1
                                        p += 6
                                        x += 2
                                    }
                                    if x < n {
                                        let w = k[x]
                                        s0 &+= Int32(p[0]) &* w; s1 &+= Int32(p[1]) &* w; s2 &+= Int32(p[2]) &* w
                                    }
                                    target[0] = clip8(s0); target[1] = clip8(s1); target[2] = clip8(s2)
                                    target += 3
                                }
                            }
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: width, rows.count, out)
    }

    static func verticalPass(_ image: RGBImage, plan: Plan, first: [Int], height: Int) -> RGBImage {
        let width = image.width
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let half = Int32(1 << (precisionBits - 1))
        let rowBytes = width * 3
        var sums = [Int32](repeating: 0, count: rowBytes)
        image.pixels.withUnsafeBufferPointer { srcBuffer in
            out.withUnsafeMutableBufferPointer { dstBuffer in
                sums.withUnsafeMutableBufferPointer { accBuffer in
                    plan.weights.withUnsafeBufferPointer { weightBuffer in
                        let src = srcBuffer.baseAddress!, dst = dstBuffer.baseAddress!, acc = accBuffer.baseAddress!
                        let weights = weightBuffer.baseAddress!
                        let vectorEnd = rowBytes & ~15
                        for yy in 0..<height {
                            let target = dst + yy * rowBytes
                            let taps = plan.count[yy], k = weights + yy * plan.taps
                            let base = src + first[yy] * rowBytes
                            // 16 bytes at a time: the same integer sums, so the same result.
                            var i = 0
                            while i < vectorEnd {
                                var sum = SIMD16<Int32>(repeating: half)
                                for y in 0..<taps {
                                    let bytes = UnsafeRawPointer(base + y * rowBytes + i).loadUnaligned(as: SIMD16<UInt8>.self)
                                    sum &+= SIMD16<Int32>(truncatingIfNeeded: bytes) &* SIMD16<Int32>(repeating: k[y])
                                }
                                let shifted = (sum &>> Int32(precisionBits)).clamped(lowerBound: SIMD16(repeating: 0), upperBound: SIMD16(repeating: 255))
                                UnsafeMutableRawPointer(target + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: shifted), as: SIMD16<UInt8>.self)
                                i += 16
                            }
                            if i < rowBytes {
                                acc.update(repeating: half, count: rowBytes - i)
                                for y in 0..<taps {
                                    let line = base + y * rowBytes
                                    for j in i..<rowBytes { acc[j - i] &+= Int32(line[j]) &* k[y] }
                                }
                                for j in i..<rowBytes { target[j] = clip8(acc[j - i]) }
                            }
                        }
                    }
                }
            }
        }
        return RGBImage(unchecked: width, height, out)
    }
}

/// What a model takes in: square images of `side` pixels, RGB in [0, 1] normalised per channel
/// by `mean` and `std`. The tutorial's models take 300×300 (SSD512: 512) with ImageNet's
/// statistics; torchvision's SSDLite 320×320 with mean and std 0.5.
public struct InputFormat: Sendable, Equatable {
    public var side: Int
    public var normalization: Normalization
    public init(side: Int, normalization: Normalization) {
        self.side = side
        self.normalization = normalization
    }
    /// The tutorial's SSD300 input.
    public static let reference = InputFormat(side: 300, normalization: .imagenet)
}

/// Conversion of 8-bit RGB to the network's input: planar (3, H, W) f32, each value
/// (v/255 − mean[c]) / std[c] computed in f32 as torchvision's `to_tensor` then `normalize` do.
public struct Normalization: Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]
    /// The 3×256 table of normalised values.
    private let table: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == 3 && std.count == 3, "a mean and a standard deviation per RGB channel")
        self.mean = mean
        self.std = std
        var t = [Float](repeating: 0, count: 768)
        for c in 0..<3 { for v in 0..<256 { t[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] } }
        table = t
    }

    public static func == (a: Normalization, b: Normalization) -> Bool { a.mean == b.mean && a.std == b.std }

    /// The ImageNet channel statistics the VGG base was trained with.
    public static let imagenet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    /// Writes `image` normalised into `destination`, which must hold 3·height·width floats (CHW).
    public func normalize(_ image: RGBImage, into destination: UnsafeMutablePointer<Float>) {
        let plane = image.width * image.height
        table.withUnsafeBufferPointer { t in
            image.pixels.withUnsafeBufferPointer { p in
                for i in 0..<plane {
                    destination[i] = t[Int(p[3 * i])]
                    destination[plane + i] = t[256 + Int(p[3 * i + 1])]
                    destination[2 * plane + i] = t[512 + Int(p[3 * i + 2])]
                }
            }
        }
    }

    /// `image` as a normalised (3, height, width) tensor.
    public func tensor(_ image: RGBImage) -> Tensor {
        let t = Tensor(shape: [3, image.height, image.width])
        normalize(image, into: t.data)
        return t
    }
}
