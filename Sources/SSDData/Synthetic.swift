import Foundation
import SSDEngine

/// The annotation formats a synthetic set can be written in.
public enum SyntheticFormat: String, Sendable, CaseIterable {
    /// Pascal VOC: `Annotations/ID.xml`, `JPEGImages/ID.jpg`, `ImageSets/Main/{trainval,test}.txt`.
    case voc
    /// Pascal VOC with PNG images (`JPEGImages/ID.png`, named by `<filename>`).
    case vocPNG = "voc-png"
    /// COCO: `images/ID.jpg`, `train.json` and `test.json` (file names `images/ID.jpg`,
    /// categories 1…6 in class order).
    case coco
    /// Create ML: `train/` and `test/`, each with its images and `annotations.json`.
    case createML = "createml"
}

/// A synthetic detection set: coloured shapes of several classes on textured backgrounds, with
/// their annotations in any `SyntheticFormat` — small, deterministic data the demo trains on and
/// the tests read.
public enum SyntheticVOC {
    /// The classes drawn, in label order (1…6).
    public static let classes = ["circle", "square", "triangle", "diamond", "cross", "ring"]

    /// What to generate.
    public struct Options: Sendable {
        public var trainCount = 64
        public var testCount = 16
        public var seed: UInt64 = 1
        /// Image sizes are drawn uniformly from these ranges (the reference's VOC images are about 400×350).
        public var widths = 360...440
        public var heights = 300...380
        public var jpegQuality = 92
        /// The annotation format and image files.
        public var format = SyntheticFormat.voc
        /// Every this-many-th image holds no object (a negative); 0: none does.
        public var negativeEvery = 0
        public init() {}
    }

    /// Writes the set into `root` in `options.format` (see `SyntheticFormat` for the layout) and
    /// returns the identifiers of the training and test images. Each image has 1–3 objects
    /// (none for every `negativeEvery`-th) whose longer side is 25–70% of the image's shorter
    /// side, overlapping each other by IoU < 0.3. The pixels do not depend on the format.
    @discardableResult
    public static func generate(at root: URL, options: Options = Options()) throws -> (train: [String], test: [String]) {
        guard options.trainCount >= 0, options.testCount >= 0, options.trainCount + options.testCount > 0,
              options.widths.lowerBound >= 32, options.heights.lowerBound >= 32, options.negativeEvery >= 0 else {
            throw DataError.invalidArgument("synthetic set: need some images of at least 32×32 pixels")
        }
        let format = options.format
        let imageFolder: (Bool) -> String = { isTrain in
            switch format {
            case .voc, .vocPNG: return "JPEGImages"
            case .coco: return "images"
            case .createML: return isTrain ? "train" : "test"
            }
        }
        switch format {
        case .voc, .vocPNG: for sub in ["Annotations", "JPEGImages", "ImageSets/Main"] { try createFolder(root.appendingPathComponent(sub)) }
        case .coco: try createFolder(root.appendingPathComponent("images"))
        case .createML: for sub in ["train", "test"] { try createFolder(root.appendingPathComponent(sub)) }
        }
        var train: [String] = [], test: [String] = []
        var records: [[(fileName: String, width: Int, height: Int, objects: [VOCObject])]] = [[], []]
        for i in 0..<(options.trainCount + options.testCount) {
            let id = String(format: "%06d", i + 1)
            let isTrain = i < options.trainCount
            var rng = DetectionDataset.sampleRandom(seed: options.seed, epoch: -7, index: i)
            let negative = options.negativeEvery > 0 && (i + 1) % options.negativeEvery == 0
            let (image, drawn) = makeImage(rng: &rng, options: options, objects: !negative)
            let fileName = "\(id).\(format == .vocPNG ? "png" : "jpg")"
            try ImageCodec.save(image, to: root.appendingPathComponent("\(imageFolder(isTrain))/\(fileName)"), jpegQuality: options.jpegQuality)
            // Pixel corners: a drawn rectangle [x0, x1) × [y0, y1) spans x0 … x1 in COCO's and
            // Create ML's continuous coordinates, and VOC's 1-based x0 + 1 … x1 (0-based x0 … x1 − 1).
            let objects = drawn.map { VOCObject(name: classes[$0.classIndex], difficult: false,
                                                box: [Float($0.x0), Float($0.y0), Float($0.x1), Float($0.y1)]) }
            switch format {
            case .voc, .vocPNG:
                try writeFileAtomically(Data(annotationXML(fileName: fileName, image: image, objects: drawn).utf8),
                                        to: root.appendingPathComponent("Annotations/\(id).xml"))
            case .coco:
                records[isTrain ? 0 : 1].append(("images/\(fileName)", image.width, image.height, objects))
            case .createML:
                records[isTrain ? 0 : 1].append((fileName, image.width, image.height, objects))
            }
            if isTrain { train.append(id) } else { test.append(id) }
        }
        switch format {
        case .voc, .vocPNG:
            try writeFileAtomically(Data((train.joined(separator: "\n") + "\n").utf8), to: root.appendingPathComponent("ImageSets/Main/trainval.txt"))
            try writeFileAtomically(Data((test.joined(separator: "\n") + "\n").utf8), to: root.appendingPathComponent("ImageSets/Main/test.txt"))
        case .coco:
            let categories = classes.enumerated().map { COCOCategory(id: $0.offset + 1, name: $0.element) }
            try DataLists.writeJSON(COCO.document(images: records[0], categories: categories), to: root.appendingPathComponent("train.json"))
            try DataLists.writeJSON(COCO.document(images: records[1], categories: categories), to: root.appendingPathComponent("test.json"))
        case .createML:
            try DataLists.writeJSON(CreateML.document(images: records[0].map { ($0.fileName, $0.objects) }),
                                    to: root.appendingPathComponent("train/annotations.json"))
            try DataLists.writeJSON(CreateML.document(images: records[1].map { ($0.fileName, $0.objects) }),
                                    to: root.appendingPathComponent("test/annotations.json"))
        }
        return (train, test)
    }

    /// One drawn object: class index into `classes` and its pixel rectangle [x0, x1) × [y0, y1).
    struct DrawnObject { var classIndex: Int; var x0, y0, x1, y1: Int }

    static func makeImage(rng: inout SeededRandom, options: Options, objects drawObjects: Bool = true) -> (RGBImage, [DrawnObject]) {
        let w = Augmentation.randomInt(options.widths.lowerBound, options.widths.upperBound, &rng)
        let h = Augmentation.randomInt(options.heights.lowerBound, options.heights.upperBound, &rng)
        var image = background(width: w, height: h, rng: &rng)
        var objects: [DrawnObject] = []
        let wanted = drawObjects ? Augmentation.randomInt(1, 3, &rng) : 0
        var attempts = 0
        while objects.count < wanted && attempts < 100 {
            attempts += 1
            let side = Double(min(w, h))
            let longer = Augmentation.uniform(0.25, 0.70, &rng) * side
            let ratio = Augmentation.uniform(0.6, 1.0, &rng)
            let horizontal = rng.nextDouble() < 0.5
            let bw = max(8, Int(horizontal ? longer : longer * ratio)), bh = max(8, Int(horizontal ? longer * ratio : longer))
            let x0 = Augmentation.randomInt(0, w - bw, &rng), y0 = Augmentation.randomInt(0, h - bh, &rng)
            let candidate = DrawnObject(classIndex: Augmentation.randomInt(0, classes.count - 1, &rng), x0: x0, y0: y0, x1: x0 + bw, y1: y0 + bh)
            if objects.contains(where: { overlap($0, candidate) >= 0.3 }) { continue }
            objects.append(candidate)
        }
        for object in objects { draw(object, on: &image, rng: &rng) }
        return (image, objects)
    }

    static func overlap(_ a: DrawnObject, _ b: DrawnObject) -> Double {
        let iw = max(0, min(a.x1, b.x1) - max(a.x0, b.x0)), ih = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
        let inter = Double(iw * ih)
        return inter / (Double((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0)) - inter)
    }

    static func randomColor(_ rng: inout SeededRandom) -> (Double, Double, Double) {
        (rng.nextDouble() * 255, rng.nextDouble() * 255, rng.nextDouble() * 255)
    }

    /// A textured background: a gradient, stripes or a checkerboard of two colours, plus noise.
    static func background(width: Int, height: Int, rng: inout SeededRandom) -> RGBImage {
        var image = RGBImage(width: width, height: height)
        let a = randomColor(&rng), b = randomColor(&rng)
        let kind = Augmentation.randomInt(0, 2, &rng)
        let angle = rng.nextDouble() * Double.pi
        let (ca, sa) = (cos(angle), sin(angle))
        let period = Augmentation.uniform(12, 60, &rng)
        let noise = Augmentation.uniform(4, 24, &rng)
        var noiseState = rng.next() | 1
        for y in 0..<height {
            for x in 0..<width {
                let t: Double
                switch kind {
                case 0: t = (Double(x) * ca + Double(y) * sa) / Double(width + height) + 0.5
                case 1: t = (sin((Double(x) * ca + Double(y) * sa) / period * 2 * Double.pi) + 1) / 2
                default: t = ((Int(Double(x) / period) + Int(Double(y) / period)) % 2 == 0) ? 0.2 : 0.8
                }
                // xorshift noise: cheap and deterministic.
                noiseState ^= noiseState << 13; noiseState ^= noiseState >> 7; noiseState ^= noiseState << 17
                let n = (Double(noiseState % 1024) / 1023 - 0.5) * noise
                let p = (y * width + x) * 3
                image.pixels[p] = UInt8(clamping: Int(a.0 + (b.0 - a.0) * t + n))
                image.pixels[p + 1] = UInt8(clamping: Int(a.1 + (b.1 - a.1) * t + n))
                image.pixels[p + 2] = UInt8(clamping: Int(a.2 + (b.2 - a.2) * t + n))
            }
        }
        return image
    }

    /// Whether the point (u, v) in [−1, 1]² lies in the shape of class `index`. Every shape
    /// touches all four sides of its box, so the box is tight.
    static func inside(_ index: Int, _ u: Double, _ v: Double) -> Bool {
        switch index {
        case 0: return u * u + v * v <= 1
        case 1: return true
        case 2: return abs(u) <= (v + 1) / 2
        case 3: return abs(u) + abs(v) <= 1
        case 4: return abs(u) <= 0.34 || abs(v) <= 0.34
        default: let r = u * u + v * v; return r <= 1 && r >= 0.3
        }
    }

    /// Draws `object` in a colour of its class's hue (jittered), with a little shading.
    static func draw(_ object: DrawnObject, on image: inout RGBImage, rng: inout SeededRandom) {
        let hue = (Double(object.classIndex) / Double(classes.count) + Augmentation.uniform(-0.04, 0.04, &rng))
        let saturation = Augmentation.uniform(0.55, 1.0, &rng), value = Augmentation.uniform(0.5, 1.0, &rng)
        let color = hsvColor(hue: hue, saturation: saturation, value: value)
        let bw = Double(object.x1 - object.x0), bh = Double(object.y1 - object.y0)
        for y in object.y0..<object.y1 {
            let v = (Double(y - object.y0) + 0.5) / bh * 2 - 1
            for x in object.x0..<object.x1 {
                let u = (Double(x - object.x0) + 0.5) / bw * 2 - 1
                guard inside(object.classIndex, u, v) else { continue }
                let shade = 0.85 + 0.15 * (1 - (u + v) / 2) / 2
                let p = (y * image.width + x) * 3
                image.pixels[p] = UInt8(clamping: Int(color.0 * shade))
                image.pixels[p + 1] = UInt8(clamping: Int(color.1 * shade))
                image.pixels[p + 2] = UInt8(clamping: Int(color.2 * shade))
            }
        }
    }

    static func hsvColor(hue: Double, saturation s: Double, value v: Double) -> (Double, Double, Double) {
        let h = (hue - hue.rounded(.down)) * 6
        let i = Int(h) % 6, f = h - Double(Int(h))
        let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
        let rgb: (Double, Double, Double)
        switch i {
        case 0: rgb = (v, t, p)
        case 1: rgb = (q, v, p)
        case 2: rgb = (p, v, t)
        case 3: rgb = (p, q, v)
        case 4: rgb = (t, p, v)
        default: rgb = (v, p, q)
        }
        return (rgb.0 * 255, rgb.1 * 255, rgb.2 * 255)
    }

    /// VOC annotation XML; boxes are 1-based and inclusive, as in VOC.
    static func annotationXML(fileName: String, image: RGBImage, objects: [DrawnObject]) -> String {
        var xml = """
        <annotation>
        \t<folder>SYNTHETIC</folder>
        \t<filename>\(fileName)</filename>
        \t<size><width>\(image.width)</width><height>\(image.height)</height><depth>3</depth></size>
        \t<segmented>0</segmented>

        """
        for o in objects {
            xml += """
            \t<object>
            \t\t<name>\(classes[o.classIndex])</name>
            \t\t<pose>Unspecified</pose>
            \t\t<truncated>0</truncated>
            \t\t<difficult>0</difficult>
            \t\t<bndbox><xmin>\(o.x0 + 1)</xmin><ymin>\(o.y0 + 1)</ymin><xmax>\(o.x1)</xmax><ymax>\(o.y1)</ymax></bndbox>
            \t</object>

            """
        }
        return xml + "</annotation>\n"
    }
}
