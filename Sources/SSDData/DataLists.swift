import Foundation

/// The images of one split and their objects (pixel boxes, 0-based), as the reference's
/// `<SPLIT>_images.json` and `<SPLIT>_objects.json` hold them.
public struct DataList: Sendable, Equatable {
    /// Image file paths (absolute when written by `DataLists.create`).
    public var images: [String]
    /// One object set per image, aligned with `images`.
    public var objects: [ObjectSet]

    public init(images: [String] = [], objects: [ObjectSet] = []) {
        self.images = images
        self.objects = objects
    }

    /// Number of objects over all images.
    public var objectCount: Int { objects.reduce(0) { $0 + $1.count } }
}

/// Where the classes of a data set come from.
public enum ClassSource: Sendable, Equatable {
    /// The reference's 20 Pascal VOC classes.
    case voc
    /// These classes, labels 1… in this order.
    case given([String])
    /// Every class name found in the annotations read, sorted.
    case gathered
}

/// An image left out of a list, and why.
public struct SkippedItem: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// What building the lists did.
public struct DataListsReport: Sendable {
    public var labelMap: LabelMap
    public var train: DataList
    public var test: DataList
    /// Every image left out (with its reason): bad annotations, unknown classes, missing images,
    /// and training images without objects.
    public var skipped: [SkippedItem]
}

/// Building, writing and reading the reference's data lists (`create_data_lists` in utils.py).
public enum DataLists {
    /// Builds the training list from `trainRoots`' `trainSplit` and the test list from
    /// `testRoots`' `testSplit` (the reference: 07+12 trainval, 07 test). Training images without
    /// objects are left out. Each image whose annotation is bad, whose class is unknown or whose
    /// image file is missing is left out and reported; with `strict`, the first such problem is
    /// thrown instead. A missing or empty split file always throws. Writes nothing.
    public static func build(trainRoots: [URL], testRoots: [URL], classes: ClassSource = .voc,
                             trainSplit: String = "trainval", testSplit: String = "test",
                             strict: Bool = false) throws -> DataListsReport {
        var skipped: [SkippedItem] = []
        typealias Entry = (image: URL, annotationPath: String, annotation: VOCAnnotation)
        func read(_ roots: [URL], _ split: String) throws -> [Entry] {
            var entries: [Entry] = []
            for root in roots {
                for id in try VOC.imageIdentifiers(root: root.standardizedFileURL, split: split) {
                    let (annotationURL, imageURL) = VOC.paths(root: root.standardizedFileURL, identifier: id)
                    do {
                        let annotation = try VOC.parseAnnotation(annotationURL)
                        guard FileManager.default.isReadableFile(atPath: imageURL.path) else {
                            throw DataError.unreadableFile(path: imageURL.path, reason: "missing or unreadable image")
                        }
                        entries.append((imageURL, annotationURL.path, annotation))
                    } catch let error as DataError {
                        if strict { throw error }
                        skipped.append(SkippedItem(path: annotationURL.path, reason: error.description))
                    }
                }
            }
            return entries
        }
        let trainEntries = try read(trainRoots, trainSplit)
        let testEntries = try read(testRoots, testSplit)
        let labelMap: LabelMap
        switch classes {
        case .voc: labelMap = .voc
        case let .given(names): labelMap = try LabelMap(classes: names)
        case .gathered:
            let names = Set((trainEntries + testEntries).flatMap { $0.annotation.objects.map { $0.name.lowercased() } })
            labelMap = try LabelMap(classes: names.sorted())
        }
        func encode(_ entries: [Entry], dropEmpty: Bool) throws -> DataList {
            var list = DataList()
            for entry in entries {
                do {
                    let objects = try entry.annotation.objectSet(labelMap: labelMap, path: entry.annotationPath)
                    if dropEmpty && objects.count == 0 {
                        skipped.append(SkippedItem(path: entry.annotationPath, reason: "no objects (training images need at least one)"))
                        continue
                    }
                    list.images.append(entry.image.path)
                    list.objects.append(objects)
                } catch let error as DataError {
                    if strict { throw error }
                    skipped.append(SkippedItem(path: entry.annotationPath, reason: error.description))
                }
            }
            return list
        }
        let train = try encode(trainEntries, dropEmpty: true)
        let test = try encode(testEntries, dropEmpty: false)
        return DataListsReport(labelMap: labelMap, train: train, test: test, skipped: skipped)
    }

    /// Writes `TRAIN_images.json`, `TRAIN_objects.json`, `TEST_images.json`, `TEST_objects.json`
    /// and `label_map.json` into `folder`, in the reference's format.
    public static func write(_ report: DataListsReport, to folder: URL) throws {
        try write(report.train, split: "TRAIN", to: folder)
        try write(report.test, split: "TEST", to: folder)
        try writeLabelMap(report.labelMap, to: folder.appendingPathComponent("label_map.json"))
    }

    /// Writes `<split>_images.json` and `<split>_objects.json` into `folder`.
    public static func write(_ list: DataList, split: String, to folder: URL) throws {
        let objects: [[String: Any]] = list.objects.map { set in
            var boxes: [[Any]] = []
            for i in 0..<set.count { boxes.append(set.boxes[(4 * i)..<(4 * i + 4)].map(jsonNumber)) }
            return ["boxes": boxes, "labels": set.labels, "difficulties": set.difficulties]
        }
        try writeJSON(list.images, to: folder.appendingPathComponent("\(split)_images.json"))
        try writeJSON(objects, to: folder.appendingPathComponent("\(split)_objects.json"))
    }

    /// Writes a label map as the reference's `label_map.json` (name → label, background 0).
    public static func writeLabelMap(_ map: LabelMap, to url: URL) throws {
        try writeJSON(map.dictionary, to: url)
    }

    /// Integral values as integers (the reference writes Python ints), others as doubles.
    static func jsonNumber(_ v: Float) -> Any {
        v == v.rounded() && abs(v) < 1e9 ? Int(v) as Any : Double(v) as Any
    }

    static func writeJSON(_ object: Any, to url: URL) throws {
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        } catch {
            throw DataError.invalidArgument("\(url.path): cannot encode JSON: \(error)")
        }
        try writeFileAtomically(data, to: url)
    }

    static func readJSON(_ url: URL) throws -> Any {
        let data = try readFile(url)
        do {
            return try JSONSerialization.jsonObject(with: data)
        } catch {
            throw DataError.badList(path: url.path, field: "(document)", reason: "not valid JSON")
        }
    }

    /// Reads `<split>_images.json` and `<split>_objects.json` from `folder` (written here or by
    /// the reference), checking that every field has the reference's shape.
    public static func read(split: String, from folder: URL) throws -> DataList {
        let imagesURL = folder.appendingPathComponent("\(split)_images.json")
        let objectsURL = folder.appendingPathComponent("\(split)_objects.json")
        guard let images = try readJSON(imagesURL) as? [String] else {
            throw DataError.badList(path: imagesURL.path, field: "(document)", reason: "expected a list of path strings")
        }
        guard let entries = try readJSON(objectsURL) as? [Any] else {
            throw DataError.badList(path: objectsURL.path, field: "(document)", reason: "expected a list of objects")
        }
        guard entries.count == images.count else {
            throw DataError.badList(path: objectsURL.path, field: "(document)",
                                    reason: "\(entries.count) entries for \(images.count) images in \(imagesURL.lastPathComponent)")
        }
        func numbers(_ value: Any?, _ field: String) throws -> [Double] {
            guard let list = value as? [Any] else { throw DataError.badList(path: objectsURL.path, field: field, reason: "expected a list") }
            return try list.enumerated().map { j, v in
                guard let n = v as? NSNumber, n.doubleValue.isFinite else {
                    throw DataError.badList(path: objectsURL.path, field: "\(field)[\(j)]", reason: "expected a number")
                }
                return n.doubleValue
            }
        }
        var objects: [ObjectSet] = []
        objects.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() {
            guard let dict = entry as? [String: Any] else {
                throw DataError.badList(path: objectsURL.path, field: "[\(i)]", reason: "expected an object with boxes, labels, difficulties")
            }
            guard let boxList = dict["boxes"] as? [Any] else {
                throw DataError.badList(path: objectsURL.path, field: "[\(i)].boxes", reason: "missing or not a list")
            }
            var set = ObjectSet()
            for (j, box) in boxList.enumerated() {
                let b = try numbers(box, "[\(i)].boxes[\(j)]")
                guard b.count == 4 else {
                    throw DataError.badList(path: objectsURL.path, field: "[\(i)].boxes[\(j)]", reason: "expected 4 numbers, got \(b.count)")
                }
                set.boxes.append(contentsOf: b.map { Float($0) })
            }
            func integers(_ key: String) throws -> [Int] {
                try numbers(dict[key], "[\(i)].\(key)").enumerated().map { j, v in
                    guard let n = Int(exactly: v), n >= 0 else {
                        throw DataError.badList(path: objectsURL.path, field: "[\(i)].\(key)[\(j)]", reason: "expected a non-negative integer, got \(v)")
                    }
                    return n
                }
            }
            set.labels = try integers("labels")
            set.difficulties = try integers("difficulties")
            guard set.labels.count == boxList.count, set.difficulties.count == boxList.count else {
                throw DataError.badList(path: objectsURL.path, field: "[\(i)]",
                                        reason: "\(boxList.count) boxes, \(set.labels.count) labels, \(set.difficulties.count) difficulties")
            }
            objects.append(set)
        }
        return DataList(images: images, objects: objects)
    }

    /// Reads `label_map.json` (name → label with background 0 and labels 1…n each used once).
    public static func readLabelMap(_ url: URL) throws -> LabelMap {
        guard let dict = try readJSON(url) as? [String: Any] else {
            throw DataError.badList(path: url.path, field: "(document)", reason: "expected an object of name → label")
        }
        var names = [String?](repeating: nil, count: dict.count)
        for (name, value) in dict {
            guard let n = value as? NSNumber, let label = Int(exactly: n.doubleValue), label >= 0, label < dict.count, names[label] == nil else {
                throw DataError.badList(path: url.path, field: name, reason: "labels must be 0…\(dict.count - 1), each used once")
            }
            names[label] = name
        }
        guard names.first == "background" else {
            throw DataError.badList(path: url.path, field: "background", reason: "label 0 must be 'background'")
        }
        do {
            return try LabelMap(classes: names.dropFirst().compactMap { $0 })
        } catch {
            throw DataError.badList(path: url.path, field: "(document)", reason: "\(error)")
        }
    }
}
