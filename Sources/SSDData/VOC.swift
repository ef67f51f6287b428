import Foundation

/// Class names and their labels: background is 0, the classes follow from 1.
public struct LabelMap: Sendable, Equatable {
    /// The classes in label order, without background (label of `classes[i]` is i + 1).
    public let classes: [String]

    /// A map over `classes` (lower-cased, trimmed, without "background"), labels 1… in the given order.
    public init(classes: [String]) throws {
        let names = classes.map { $0.lowercased().trimmingCharacters(in: .whitespacesAndNewlines) }
        guard !names.isEmpty else { throw DataError.invalidArgument("a label map needs at least one class") }
        guard Set(names).count == names.count, !names.contains("background"), !names.contains("") else {
            throw DataError.invalidArgument("class names must be distinct, non-empty and not 'background': \(classes)")
        }
        self.classes = names
    }

    /// The reference's 20 Pascal VOC classes, in its order (aeroplane = 1 … tvmonitor = 20).
    public static let voc: LabelMap = {
        // The list is a non-empty constant of distinct names; the initialiser cannot fail on it.
        // swiftlint:disable:next force_try
        try! LabelMap(classes: ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                                "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                                "train", "tvmonitor"])
    }()

    /// Number of labels including background.
    public var count: Int { classes.count + 1 }

    /// The label of `name` (matched lower-cased and trimmed, as the reference does), or nil.
    public func label(of name: String) -> Int? {
        let key = name.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
        if key == "background" { return 0 }
        return classes.firstIndex(of: key).map { $0 + 1 }
    }

    /// The name of `label` ("background" for 0).
    public func name(of label: Int) -> String? {
        label == 0 ? "background" : (label >= 1 && label <= classes.count ? classes[label - 1] : nil)
    }

    /// The reference's `label_map` dictionary: name → label, background included.
    public var dictionary: [String: Int] {
        var d = ["background": 0]
        for (i, c) in classes.enumerated() { d[c] = i + 1 }
        return d
    }
}

/// One object of a Pascal VOC annotation, its box 0-based (the file's values minus one).
public struct VOCObject: Sendable, Equatable {
    public var name: String
    public var difficult: Bool
    /// x_min, y_min, x_max, y_max in pixels, 0-based.
    public var box: [Float]
}

/// A parsed Pascal VOC annotation file.
public struct VOCAnnotation: Sendable, Equatable {
    /// The image size from `<size>`, when the file gives one.
    public var width: Int?
    public var height: Int?
    public var objects: [VOCObject]
    /// The image file's name from `<filename>`, when the file gives one.
    public var filename: String? = nil

    /// The objects encoded with `labelMap`; an unknown class name is an error naming the object.
    public func objectSet(labelMap: LabelMap, path: String) throws -> ObjectSet {
        var set = ObjectSet()
        for (i, o) in objects.enumerated() {
            guard let label = labelMap.label(of: o.name), label > 0 else {
                throw DataError.unknownClass(path: path, field: "object[\(i)].name", name: o.name)
            }
            set.boxes.append(contentsOf: o.box)
            set.labels.append(label)
            set.difficulties.append(o.difficult ? 1 : 0)
        }
        return set
    }
}

/// The files of one image folder, listed once, looked up by name exactly or in any case.
public struct ImageFolder: Sendable {
    public let url: URL
    /// Whether the folder exists (a missing one lists nothing).
    public let exists: Bool
    /// Lower-cased file name → the names spelled so.
    let names: [String: [String]]

    public init(_ url: URL) {
        self.url = url
        let listing = try? FileManager.default.contentsOfDirectory(atPath: url.path)
        exists = listing != nil
        var names: [String: [String]] = [:]
        for name in listing ?? [] { names[name.lowercased(), default: []].append(name) }
        self.names = names
    }

    /// `name` as it is spelled in the folder: exactly, else the one file that matches it in
    /// any case (nil when none or several do).
    func file(named name: String) -> String? {
        guard let spellings = names[name.lowercased()] else { return nil }
        if spellings.contains(name) { return name }
        return spellings.count == 1 ? spellings[0] : nil
    }

    /// The files whose name without extension is one of `stems` (in any case).
    func files(withStems stems: [String]) -> [String] {
        let wanted = Set(stems.map { $0.lowercased() })
        return names.values.joined().filter { wanted.contains(($0 as NSString).deletingPathExtension.lowercased()) }.sorted()
    }
}

/// Pascal VOC folders: `Annotations/ID.xml`, `ImageSets/Main/SPLIT.txt`, `JPEGImages/ID.jpg`
/// (or `.jpeg`, `.png`, or the annotation's `<filename>`).
public enum VOC {
    /// The identifiers listed in `ImageSets/Main/<split>.txt` under `root` (the first word of each
    /// non-blank line), each with its 1-based line number. Duplicates are kept: the caller decides.
    public static func imageIdentifiers(root: URL, split: String) throws -> [(id: String, line: Int)] {
        let url = root.appendingPathComponent("ImageSets/Main/\(split).txt")
        let text = String(decoding: try readFile(url, limit: FileLimits.split), as: UTF8.self)
        var ids: [(id: String, line: Int)] = []
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if let word = line.split(whereSeparator: \.isWhitespace).first { ids.append((String(word), n + 1)) }
        }
        guard !ids.isEmpty else { throw DataError.emptySplit(path: url.path) }
        return ids
    }

    /// The annotation file of `identifier` under `root`.
    public static func annotationURL(root: URL, identifier: String) -> URL {
        root.appendingPathComponent("Annotations/\(identifier).xml")
    }

    /// The image file extensions the codecs read (matched in any case).
    public static let imageExtensions = ["jpg", "jpeg", "png"]

    /// The image of `identifier` in `folder` (a VOC root's `JPEGImages/`), looked up in this
    /// order: `ID.jpg`, the reference's; the annotation's `<filename>` when its extension is one
    /// the codecs read; `ID` and the `<filename>`'s stem with any such extension, in any case.
    /// Nothing found is `DataError.missingImage` naming what was tried, and any file that is
    /// there but of a format the codecs do not read (`ID.tif`).
    public static func findImage(identifier: String, filename: String?, in folder: ImageFolder,
                                 annotationPath: String) throws -> URL {
        var tried: [String] = []
        func attempt(_ name: String) -> URL? {
            if !tried.contains(name) { tried.append(name) }
            return folder.file(named: name).map { folder.url.appendingPathComponent($0) }
        }
        if let found = attempt("\(identifier).jpg") { return found }
        let given = filename.map { ($0 as NSString).lastPathComponent }.flatMap { $0.isEmpty ? nil : $0 }
        if let given, imageExtensions.contains((given as NSString).pathExtension.lowercased()), let found = attempt(given) { return found }
        var stems = [identifier]
        if let given, case let stem = (given as NSString).deletingPathExtension, stem != identifier { stems.append(stem) }
        for stem in stems where !stem.isEmpty {
            for ext in imageExtensions {
                if let found = attempt("\(stem).\(ext)") { return found }
            }
        }
        var reason = "tried \(tried.joined(separator: ", ")) (any case) in \(folder.url.path)"
        if !folder.exists { reason += ", which does not exist" }
        if let given, !imageExtensions.contains((given as NSString).pathExtension.lowercased()) {
            reason += "; <filename> \(given) is neither a JPEG nor a PNG name"
        }
        let unreadable = folder.files(withStems: stems)
        if !unreadable.isEmpty {
            reason += "; found \(unreadable.joined(separator: ", ")), but only JPEG and PNG images are read: convert it"
        }
        throw DataError.missingImage(path: annotationPath, reason: reason)
    }

    /// Parses the annotation at `url` (a regular file of at most `FileLimits.annotation` bytes).
    /// Every object needs a `name` and a `bndbox` with numeric xmin/ymin/xmax/ymax; boxes must
    /// have positive width and height and lie in the image when `<size>` is given (VOC's 1-based
    /// coordinates may reach the width and height themselves).
    public static func parseAnnotation(_ url: URL) throws -> VOCAnnotation {
        try parseAnnotation(data: try readFile(url, limit: FileLimits.annotation), path: url.path)
    }

    /// Parses annotation XML; `path` only names the source in errors.
    ///
    /// The document must be well-formed XML: every element closed by a matching end tag, one root
    /// element `<annotation>` and nothing but white space and comments around it; an error says
    /// what is wrong and on which line. Entities are not expanded beyond XML's predefined ones
    /// (external entities are never fetched; entity bombs are refused). `size`, `size.width`,
    /// `size.height` and each object's `name`, `difficult`, `bndbox` and coordinates may appear at most
    /// once. Numbers must be plain decimal (`12`, `-3`, `12.5`: no hexadecimal, exponent, `inf`
    /// or `nan`); sizes are positive integers below 10⁶ and coordinates lie within ±10⁶.
    public static func parseAnnotation(data: Data, path: String) throws -> VOCAnnotation {
        let root = try XMLTreeBuilder.parse(data, path: path)
        guard root.name == "annotation" else {
            throw DataError.badAnnotation(path: path, field: "(document)", reason: "the root element is <\(root.name)>, not <annotation>")
        }
        func only(_ parent: XMLNode?, _ name: String, _ field: String) throws -> XMLNode? {
            guard let parent else { return nil }
            let found = parent.children(named: name)
            if found.count > 1 {
                throw DataError.badAnnotation(path: path, field: field,
                                              reason: "given \(found.count) times (lines \(found.map { String($0.line) }.joined(separator: ", ")))")
            }
            return found.first
        }
        func size(_ node: XMLNode?, _ field: String) throws -> Int? {
            guard let node else { return nil }
            let text = node.text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let value = plainDecimal(text), value == value.rounded(), value >= 1, value < 1e6 else {
                throw DataError.badAnnotation(path: path, field: field,
                                              reason: "line \(node.line): not a size in pixels (a positive whole number): '\(text)'")
            }
            return Int(value)
        }
        let sizeNode = try only(root, "size", "size")
        let width = try size(try only(sizeNode, "width", "size.width"), "size.width")
        let height = try size(try only(sizeNode, "height", "size.height"), "size.height")
        var objects: [VOCObject] = []
        for (i, node) in root.children(named: "object").enumerated() {
            let field = "object[\(i)]"
            guard let name = try only(node, "name", "\(field).name")?.text.trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty else {
                throw DataError.badAnnotation(path: path, field: "\(field).name", reason: "missing (object at line \(node.line))")
            }
            let difficultText = try only(node, "difficult", "\(field).difficult")?.text.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
            guard difficultText == "0" || difficultText == "1" else {
                throw DataError.badAnnotation(path: path, field: "\(field).difficult", reason: "expected 0 or 1, got '\(difficultText)'")
            }
            guard let box = try only(node, "bndbox", "\(field).bndbox") else {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox", reason: "missing (object at line \(node.line))")
            }
            var values: [Float] = []
            for key in ["xmin", "ymin", "xmax", "ymax"] {
                guard let coordinate = try only(box, key, "\(field).bndbox.\(key)") else {
                    throw DataError.badAnnotation(path: path, field: "\(field).bndbox.\(key)", reason: "missing (bndbox at line \(box.line))")
                }
                let text = coordinate.text.trimmingCharacters(in: .whitespacesAndNewlines)
                guard let v = plainDecimal(text), abs(v) <= 1e6 else {
                    throw DataError.badAnnotation(path: path, field: "\(field).bndbox.\(key)",
                                                  reason: "line \(coordinate.line): not a plain decimal number within ±10⁶: '\(text)'")
                }
                values.append(Float(v) - 1)  // to 0-based, as the reference's parse_annotation
            }
            guard values[2] > values[0], values[3] > values[1] else {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox",
                                              reason: "inverted or zero-area box \(values.map { $0 + 1 }) (line \(box.line))")
            }
            if let problem = boxProblem(values, width: width, height: height) {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox", reason: "\(problem) (line \(box.line))")
            }
            objects.append(VOCObject(name: name, difficult: difficultText == "1", box: values))
        }
        let filename = try only(root, "filename", "filename")?.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return VOCAnnotation(width: width, height: height, objects: objects, filename: filename.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Why a 0-based box does not lie in an image of `width`×`height` (either may be unknown),
    /// or nil when it does. VOC's 1-based coordinates run from 1 to the width and height, so a
    /// 0-based box may reach x = width − 1, y = height − 1; one pixel more is tolerated, as the
    /// reference's flip produces it.
    public static func boxProblem(_ box: [Float], width: Int?, height: Int?) -> String? {
        let outside = box[0] < 0 || box[1] < 0 || (width.map { box[2] > Float($0) } ?? false)
            || (height.map { box[3] > Float($0) } ?? false)
        guard outside else { return nil }
        let size = (width.map(String.init) ?? "?") + "×" + (height.map(String.init) ?? "?")
        return "box \(box.map { $0 + 1 }) (1-based) lies outside the \(size) image"
    }

    /// `text` as a number if it is plain decimal: an optional sign, digits, an optional fraction.
    /// Swift's `Double(_:)` also takes hexadecimal (`0x10` = 16), exponents, `inf` and `nan`,
    /// none of which an annotation writer means.
    public static func plainDecimal(_ text: String) -> Double? {
        var digits = 0, dots = 0
        for (i, c) in text.utf8.enumerated() {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digits += 1
            case UInt8(ascii: "."): dots += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"): if i != 0 { return nil }
            default: return nil
            }
        }
        guard digits > 0, dots <= 1, text.utf8.count <= 64 else { return nil }
        return Double(text)
    }
}
