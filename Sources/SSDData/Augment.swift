import Foundation
import SSDEngine

/// The objects of one image: boxes as flat (x_min, y_min, x_max, y_max) quadruples, one label
/// and one difficulty flag (0 or 1) per box, always aligned.
public struct ObjectSet: Sendable, Equatable {
    /// Four values per object; pixels (0-based) before the resize, fractions of the image after it.
    public var boxes: [Float]
    public var labels: [Int]
    public var difficulties: [Int]

    public init(boxes: [Float] = [], labels: [Int] = [], difficulties: [Int] = []) {
        self.boxes = boxes
        self.labels = labels
        self.difficulties = difficulties
    }

    public var count: Int { labels.count }

    /// The objects at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ObjectSet {
        var result = ObjectSet()
        for i in indices {
            result.boxes.append(contentsOf: boxes[(4 * i)..<(4 * i + 4)])
            result.labels.append(labels[i])
            result.difficulties.append(difficulties[i])
        }
        return result
    }
}

/// One image ready for the network: side×side RGB (normalised when batched) and its objects in
/// fractional coordinates.
public struct PreparedSample: Sendable, Equatable {
    public var image: RGBImage
    public var objects: ObjectSet
}

/// The reference's `transform()` (utils.py): for training, photometric distortions, expand
/// (zoom out), the IoU-constrained random crop (zoom in), horizontal flip, then resize to
/// 300×300 and fractional boxes; for testing only the resize. Randomness comes from the
/// `SeededRandom` passed in, so a sample's augmentation depends on nothing else.
public enum Augmentation {
    /// The tutorial's output side (SSD300's input).
    public static let outputSize = 300
    /// The minimum overlaps the random crop draws from; nil means "do not crop".
    public static let cropOverlaps: [Float?] = [0, 0.1, 0.3, 0.5, 0.7, 0.9, nil]

    /// Uniform integer in [low, high], like Python's `random.randint`.
    @inline(__always) static func randomInt(_ low: Int, _ high: Int, _ rng: inout SeededRandom) -> Int {
        high <= low ? low : low + Int(rng.next() % UInt64(high - low + 1))
    }

    /// Uniform double in [low, high), like Python's `random.uniform`.
    @inline(__always) static func uniform(_ low: Double, _ high: Double, _ rng: inout SeededRandom) -> Double {
        low + (high - low) * rng.nextDouble()
    }

    /// Brightness, contrast, saturation and hue in a random order, each with chance 0.5; factors
    /// uniform in [0.5, 1.5], the hue's in [−18/255, 18/255].
    public static func photometricDistort(_ image: inout RGBImage, rng: inout SeededRandom) {
        var order = [0, 1, 2, 3]
        for i in stride(from: 3, to: 0, by: -1) { order.swapAt(i, randomInt(0, i, &rng)) }
        for d in order where rng.nextDouble() < 0.5 {
            if d == 3 {
                Photometric.adjustHue(&image, factor: uniform(-18.0 / 255, 18.0 / 255, &rng))
            } else {
                let factor = uniform(0.5, 1.5, &rng)
                switch d {
                case 0: Photometric.adjustBrightness(&image, factor: factor)
                case 1: Photometric.adjustContrast(&image, factor: factor)
                default: Photometric.adjustSaturation(&image, factor: factor)
                }
            }
        }
    }

    /// Byte → f32 (v/255) → byte (×255, truncated): the round trip the reference's
    /// `to_tensor` … `to_pil_image` puts every training pixel through (a few values drop by one).
    static let roundTrip: [UInt8] = (0..<256).map { UInt8(Float(Float($0) / 255) * 255) }
    /// The ImageNet mean the expanded canvas is filled with, as `to_pil_image` turns it to bytes.
    static let expandFill: [UInt8] = Normalization.imagenet.mean.map { UInt8($0 * 255) }

    /// Intersection over union of two xyxy boxes, as the reference's `find_jaccard_overlap`.
    @inline(__always) static func iou(_ a: (Float, Float, Float, Float), _ b: ArraySlice<Float>) -> Float {
        let b0 = b[b.startIndex], b1 = b[b.startIndex + 1], b2 = b[b.startIndex + 2], b3 = b[b.startIndex + 3]
        let iw = max(0, min(a.2, b2) - max(a.0, b0)), ih = max(0, min(a.3, b3) - max(a.1, b1))
        let inter = iw * ih
        let union = (a.2 - a.0) * (a.3 - a.1) + (b2 - b0) * (b3 - b1) - inter
        return union > 0 ? inter / union : 0
    }

    /// The random crop's decision for a canvas of `width`×`height` holding `objects`: the crop
    /// rectangle (left, top, width, height) and the objects kept, in crop coordinates; nil for
    /// "no crop". Minimum overlap from `cropOverlaps`, 50 trials per draw, each side 0.3–1 of
    /// the canvas, aspect (h/w) strictly within (0.5, 2), at least one box with IoU ≥ the
    /// minimum, keeping the boxes whose centres lie strictly inside, clamped to the crop.
    /// `minOverlap` is the minimum that the accepted crop satisfied.
    public static func randomCrop(width: Int, height: Int, objects: ObjectSet, rng: inout SeededRandom)
        -> (rect: (Int, Int, Int, Int), objects: ObjectSet, minOverlap: Float)?
    {
        guard objects.count > 0 else { return nil }
        while true {
            guard let minOverlap = cropOverlaps[randomInt(0, cropOverlaps.count - 1, &rng)] else { return nil }
            for _ in 0..<50 {
                let newH = Int(uniform(0.3, 1, &rng) * Double(height))
                let newW = Int(uniform(0.3, 1, &rng) * Double(width))
                guard newW > 0, newH > 0 else { continue }
                let aspect = Double(newH) / Double(newW)
                guard 0.5 < aspect, aspect < 2 else { continue }
                let left = randomInt(0, width - newW, &rng)
                let top = randomInt(0, height - newH, &rng)
                let crop = (Float(left), Float(top), Float(left + newW), Float(top + newH))
                var best: Float = 0
                for i in 0..<objects.count { best = max(best, iou(crop, objects.boxes[(4 * i)..<(4 * i + 4)])) }
                if best < minOverlap { continue }
                var kept: [Int] = []
                for i in 0..<objects.count {
                    let cx = (objects.boxes[4 * i] + objects.boxes[4 * i + 2]) / 2
                    let cy = (objects.boxes[4 * i + 1] + objects.boxes[4 * i + 3]) / 2
                    if cx > crop.0, cx < crop.2, cy > crop.1, cy < crop.3 { kept.append(i) }
                }
                if kept.isEmpty { continue }
                var result = objects.subset(kept)
                for j in 0..<result.count {
                    result.boxes[4 * j] = max(result.boxes[4 * j], crop.0) - crop.0
                    result.boxes[4 * j + 1] = max(result.boxes[4 * j + 1], crop.1) - crop.1
                    result.boxes[4 * j + 2] = min(result.boxes[4 * j + 2], crop.2) - crop.0
                    result.boxes[4 * j + 3] = min(result.boxes[4 * j + 3], crop.3) - crop.1
                }
                return ((left, top, newW, newH), result, minOverlap)
            }
        }
    }

    /// Mirrors the image left to right and the boxes as the reference does
    /// (x ↦ width − x − 1, then x_min and x_max swap). Applying it twice is the identity.
    public static func flip(_ image: inout RGBImage, _ objects: inout ObjectSet) {
        let w = image.width
        image.pixels.withUnsafeMutableBufferPointer { p in
            for y in 0..<image.height {
                var a = y * w * 3, b = (y * w + w - 1) * 3
                while a < b {
                    p.swapAt(a, b); p.swapAt(a + 1, b + 1); p.swapAt(a + 2, b + 2)
                    a += 3; b -= 3
                }
            }
        }
        let width = Float(w)
        for i in 0..<objects.count {
            let x1 = objects.boxes[4 * i], x2 = objects.boxes[4 * i + 2]
            objects.boxes[4 * i] = width - x2 - 1
            objects.boxes[4 * i + 2] = width - x1 - 1
        }
    }

    /// Resizes to side×side (PIL-exact bilinear) and divides the boxes by the old size. Boxes are
    /// clamped to [0, 1]: the reference's flip can push an edge one pixel outside (x = −1).
    public static func resize(_ image: RGBImage, _ objects: ObjectSet, side: Int = outputSize) -> PreparedSample {
        var result = objects
        let w = Float(image.width), h = Float(image.height)
        for i in 0..<objects.count {
            result.boxes[4 * i] = min(max(objects.boxes[4 * i] / w, 0), 1)
            result.boxes[4 * i + 1] = min(max(objects.boxes[4 * i + 1] / h, 0), 1)
            result.boxes[4 * i + 2] = min(max(objects.boxes[4 * i + 2] / w, 0), 1)
            result.boxes[4 * i + 3] = min(max(objects.boxes[4 * i + 3] / h, 0), 1)
        }
        return PreparedSample(image: Resampler.resizeBilinear(image, width: side, height: side), objects: result)
    }

    /// The test transform: resize only.
    public static func test(_ image: RGBImage, _ objects: ObjectSet, side: Int = outputSize) -> PreparedSample {
        resize(image, objects, side: side)
    }

    /// The training transform, drawing every random decision from `rng` in the reference's order.
    public static func train(_ image: RGBImage, _ objects: ObjectSet, rng: inout SeededRandom,
                             side: Int = outputSize) -> PreparedSample {
        var distorted = image
        photometricDistort(&distorted, rng: &rng)
        // Expand: a canvas `scale` times larger filled with the mean, the image at a random place.
        var canvasW = image.width, canvasH = image.height, offsetX = 0, offsetY = 0
        var current = objects
        if rng.nextDouble() < 0.5 {
            let scale = uniform(1, 4, &rng)
            canvasH = Int(scale * Double(image.height))
            canvasW = Int(scale * Double(image.width))
            offsetX = randomInt(0, canvasW - image.width, &rng)
            offsetY = randomInt(0, canvasH - image.height, &rng)
            for i in 0..<current.count {
                current.boxes[4 * i] += Float(offsetX); current.boxes[4 * i + 2] += Float(offsetX)
                current.boxes[4 * i + 1] += Float(offsetY); current.boxes[4 * i + 3] += Float(offsetY)
            }
        }
        var rect = (0, 0, canvasW, canvasH)
        if let crop = randomCrop(width: canvasW, height: canvasH, objects: current, rng: &rng) {
            rect = crop.rect
            current = crop.objects
        }
        var cropped = materialize(distorted, canvasOffset: (offsetX, offsetY), crop: rect)
        if rng.nextDouble() < 0.5 { flip(&cropped, &current) }
        return resize(cropped, current, side: side)
    }

    /// A light training transform: horizontal flip (chance 0.5) and resize only — for small
    /// synthetic sets that a model should learn in minutes.
    public static func flipOnly(_ image: RGBImage, _ objects: ObjectSet, rng: inout SeededRandom,
                                side: Int = outputSize) -> PreparedSample {
        var flipped = image, current = objects
        if rng.nextDouble() < 0.5 { flip(&flipped, &current) }
        return resize(flipped, current, side: side)
    }

    /// The pixels of `crop` (left, top, width, height) on the expanded canvas, without building
    /// the canvas: image pixels (through the byte round trip) where the image lies, the mean elsewhere.
    /// The crop must lie within the canvas.
    public static func materialize(_ image: RGBImage, canvasOffset: (Int, Int), crop: (Int, Int, Int, Int)) -> RGBImage {
        let (left, top, w, h) = crop
        var out = RGBImage(width: w, height: h, fill: (expandFill[0], expandFill[1], expandFill[2]))
        let x0 = max(left, canvasOffset.0), x1 = min(left + w, canvasOffset.0 + image.width)
        guard x0 < x1 else { return out }
        roundTrip.withUnsafeBufferPointer { table in
            image.pixels.withUnsafeBufferPointer { src in
                out.pixels.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let sy = top + y - canvasOffset.1
                        guard sy >= 0, sy < image.height else { continue }
                        let s = (sy * image.width + (x0 - canvasOffset.0)) * 3
                        let d = (y * w + (x0 - left)) * 3
                        for i in 0..<((x1 - x0) * 3) { dst[d + i] = table[Int(src[s + i])] }
                    }
                }
            }
        }
        return out
    }
}
