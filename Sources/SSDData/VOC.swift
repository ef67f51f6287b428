import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

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

/// Pascal VOC folders: `Annotations/ID.xml`, `ImageSets/Main/SPLIT.txt`, `JPEGImages/ID.jpg`.
public enum VOC {
    /// The identifiers listed in `ImageSets/Main/<split>.txt` under `root`.
    public static func imageIdentifiers(root: URL, split: String) throws -> [String] {
        let url = root.appendingPathComponent("ImageSets/Main/\(split).txt")
        let text = String(decoding: try readFile(url), as: UTF8.self)
        let ids = text.split(whereSeparator: \.isNewline)
            .compactMap { $0.split(whereSeparator: \.isWhitespace).first.map(String.init) }
        guard !ids.isEmpty else { throw DataError.emptySplit(path: url.path) }
        return ids
    }

    /// The annotation file and the image file of `identifier` under `root`.
    public static func paths(root: URL, identifier: String) -> (annotation: URL, image: URL) {
        (root.appendingPathComponent("Annotations/\(identifier).xml"), root.appendingPathComponent("JPEGImages/\(identifier).jpg"))
    }

    /// Parses the annotation at `url`. Every object needs a `name` and a `bndbox` with numeric
    /// xmin/ymin/xmax/ymax; boxes must have positive width and height and lie in the image when
    /// `<size>` is given (VOC's 1-based coordinates may reach the width and height themselves).
    public static func parseAnnotation(_ url: URL) throws -> VOCAnnotation {
        try parseAnnotation(data: try readFile(url), path: url.path)
    }

    /// Parses annotation XML; `path` only names the source in errors.
    public static func parseAnnotation(data: Data, path: String) throws -> VOCAnnotation {
        let tree = XMLTreeBuilder()
        let parser = XMLParser(data: data)
        parser.delegate = tree
        guard parser.parse(), let root = tree.root else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "not well-formed XML"
            throw DataError.badAnnotation(path: path, field: "(document)", reason: "XML: \(reason) at line \(parser.lineNumber)")
        }
        func integer(_ node: XMLNode?, _ field: String) throws -> Int? {
            guard let node else { return nil }
            guard let value = Double(node.text.trimmingCharacters(in: .whitespacesAndNewlines)), value.isFinite,
                  value >= 0, value < 1e9 else {
                throw DataError.badAnnotation(path: path, field: field, reason: "not a size in pixels: '\(node.text)'")
            }
            return Int(value)
        }
        let width = try integer(root.child("size")?.child("width"), "size.width")
        let height = try integer(root.child("size")?.child("height"), "size.height")
        var objects: [VOCObject] = []
        for (i, node) in root.children(named: "object").enumerated() {
            let field = "object[\(i)]"
            guard let name = node.child("name")?.text.trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty else {
                throw DataError.badAnnotation(path: path, field: "\(field).name", reason: "missing")
            }
            let difficultText = node.child("difficult")?.text.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
            guard let box = node.child("bndbox") else {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox", reason: "missing")
            }
            var values: [Float] = []
            for key in ["xmin", "ymin", "xmax", "ymax"] {
                guard let text = box.child(key)?.text.trimmingCharacters(in: .whitespacesAndNewlines) else {
                    throw DataError.badAnnotation(path: path, field: "\(field).bndbox.\(key)", reason: "missing")
                }
                guard let v = Double(text), v.isFinite, abs(v) < 1e9 else {
                    throw DataError.badAnnotation(path: path, field: "\(field).bndbox.\(key)", reason: "not a number: '\(text)'")
                }
                values.append(Float(v) - 1)  // to 0-based, as the reference's parse_annotation
            }
            guard values[2] > values[0], values[3] > values[1] else {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox",
                                              reason: "inverted or zero-area box \(values.map { $0 + 1 })")
            }
            if values[0] < 0 || values[1] < 0 || (width.map { values[2] > Float($0) } ?? false) || (height.map { values[3] > Float($0) } ?? false) {
                throw DataError.badAnnotation(path: path, field: "\(field).bndbox",
                                              reason: "box \(values.map { $0 + 1 }) outside the \(width ?? 0)×\(height ?? 0) image")
            }
            objects.append(VOCObject(name: name, difficult: difficultText == "1", box: values))
        }
        return VOCAnnotation(width: width, height: height, objects: objects)
    }
}

/// A minimal element tree (names, text, children) built with Foundation's XMLParser.
final class XMLNode {
    let name: String
    var text = ""
    var children: [XMLNode] = []
    init(name: String) { self.name = name }
    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    func children(named name: String) -> [XMLNode] { children.filter { $0.name == name } }
}

final class XMLTreeBuilder: NSObject, XMLParserDelegate {
    var root: XMLNode?
    private var stack: [XMLNode] = []

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String] = [:]) {
        let node = XMLNode(name: elementName)
        if let parent = stack.last { parent.children.append(node) } else if root == nil { root = node }
        stack.append(node)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        _ = stack.popLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.text += string
    }
}
