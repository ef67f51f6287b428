import Foundation

/// The images of one split and their objects (pixel boxes, 0-based), as the reference's
/// `<SPLIT>_images.json` and `<SPLIT>_objects.json` hold them.
public struct DataList: Sendable, Equatable {
    /// Image file paths (absolute when written by `DataLists.create`).
    public var images: [String]
    /// One object set per image, aligned with `images`.
    public var objects: [ObjectSet]
    /// Each image's identifier in the data set it came from (COCO's image `id`), aligned with
    /// `images`; empty when the source has none (VOC, Create ML).
    public var sourceIDs: [Int]

    public init(images: [String] = [], objects: [ObjectSet] = [], sourceIDs: [Int] = []) {
        self.images = images
        self.objects = objects
        self.sourceIDs = sourceIDs
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
    /// The kind of problem in a few words ("bad image", "unknown class 'cat'", "duplicate id", ...),
    /// to count skipped images by reason.
    public var category: String
    /// Whether a whole image was left out, or one object of an image that stays.
    public var scope: Scope = .image
    public enum Scope: Sendable, Equatable { case image, object }
    /// "PATH: REASON", or the reason alone when it starts with the path already.
    public var description: String { reason.hasPrefix(path) ? reason : "\(path): \(reason)" }

    public init(path: String, reason: String, category: String, scope: Scope = .image) {
        self.path = path
        self.reason = reason
        self.category = category
        self.scope = scope
    }

    init(path: String, error: DataError) {
        self.init(path: path, reason: error.description, category: error.category)
    }
}

extension DataError {
    /// The kind of problem in a few words, for counting skipped images by reason.
    var category: String {
        switch self {
        case .unreadableFile: return "unreadable file"
        case .unwritableFile: return "unwritable file"
        case .badImage: return "bad image"
        case .badAnnotation: return "bad annotation"
        case let .unknownClass(_, _, name): return "unknown class '\(name)'"
        case .missingImage: return "missing image"
        case .emptySplit, .emptyList: return "empty split"
        case .badList: return "bad list"
        case .invalidArgument: return "invalid argument"
        }
    }
}

/// What building the lists did.
public struct DataListsReport: Sendable {
    public var labelMap: LabelMap
    public var train: DataList
    public var test: DataList
    /// Every image (or object) left out, with its reason: bad annotations, unknown classes,
    /// missing or bad images, repeated identifiers (listed once), unusable boxes.
    public var skipped: [SkippedItem]
    /// Whether the lists were asked for: a COCO or Create ML set may come without a test (or
    /// training) annotation file, and then only the other list is written.
    public var hasTrain = true
    public var hasTest = true
    /// The source's category id of each class (labels 1…n), for a COCO-sourced set.
    public var categoryIDs: [Int]?
}

/// Building, writing and reading the reference's data lists (`create_data_lists` in utils.py).
public enum DataLists {
    /// Builds the training list from `trainRoots`' `trainSplit` and the test list from
    /// `testRoots`' `testSplit` (the reference: 07+12 trainval, 07 test). Writes nothing.
    ///
    /// Each listed identifier's annotation must be well-formed with known classes, and its image
    /// is found by `VOC.findImage`: `JPEGImages/ID.jpg` as the reference, else the annotation's
    /// `<filename>`, else `ID` with any extension the codecs read (`.jpeg`, `.png`, any case).
    /// The image must be a complete JPEG or PNG of the annotation's `<size>` with every box in
    /// it (`assemble`). An image failing any check is left out and reported in `skipped` with its
    /// reason (and to `onSkip` as it happens); with `strict`, the first problem is thrown instead.
    ///
    /// An identifier listed twice in a split (or reached twice through repeated roots) is kept
    /// once and the repeat reported ("duplicate id"); with `strict` it is an error naming the
    /// split file and both lines. Images without objects are kept: they are negatives.
    ///
    /// A missing or empty split file always throws, and so does a split whose images were all
    /// skipped, or whose images hold no object at all: `DataError.emptyList` counts the skipped
    /// images by reason (a wrong class list, for instance, skips every image as "unknown class").
    /// An empty `trainRoots` (or `testRoots`) means no such list: it is neither read nor required.
    public static func build(trainRoots: [URL], testRoots: [URL], classes: ClassSource = .voc,
                             trainSplit: String = "trainval", testSplit: String = "test",
                             strict: Bool = false, onSkip: ((SkippedItem) -> Void)? = nil) throws -> DataListsReport {
        func read(_ roots: [URL], _ split: String, name: String) throws -> SplitSource? {
            guard !roots.isEmpty else { return nil }
            var source = SplitSource(name: name)
            var candidates: [(annotation: URL, id: String, folder: ImageFolder)] = []
            var seen: [String: (file: String, line: Int)] = [:]
            var folders: [String: ImageFolder] = [:]
            for root in roots.map(\.standardizedFileURL) {
                let splitFile = root.appendingPathComponent("ImageSets/Main/\(split).txt").path
                let folder = folders[root.path] ?? ImageFolder(root.appendingPathComponent("JPEGImages"))
                folders[root.path] = folder
                for (id, line) in try VOC.imageIdentifiers(root: root, split: split) {
                    source.listed += 1
                    let annotation = VOC.annotationURL(root: root, identifier: id)
                    if let first = seen[annotation.path] {
                        let earlier = first.file == splitFile ? "line \(first.line)" : "\(first.file) line \(first.line)"
                        let error = DataError.badList(path: splitFile, field: "line \(line)",
                                                      reason: "duplicate id '\(id)' (already listed on \(earlier)); the image is listed once")
                        if strict { throw error }
                        source.skipped.append(SkippedItem(path: splitFile, reason: error.description, category: "duplicate id"))
                        continue
                    }
                    seen[annotation.path] = (splitFile, line)
                    candidates.append((annotation, id, folder))
                }
            }
            // Parsing is independent per image: spread it over the cores, keep list order.
            let results = concurrentMap(candidates) { candidate in
                Result<SourceImage, Error> {
                    let parsed = try VOC.parseAnnotation(candidate.annotation)
                    let image = try VOC.findImage(identifier: candidate.id, filename: parsed.filename, in: candidate.folder,
                                                  annotationPath: candidate.annotation.path)
                    return SourceImage(image: image, origin: candidate.annotation.path, width: parsed.width, height: parsed.height,
                                       objects: parsed.objects)
                }
            }
            for (candidate, result) in zip(candidates, results) {
                switch result {
                case let .success(image): source.images.append(image)
                case let .failure(error as DataError):
                    if strict { throw error }
                    source.skipped.append(SkippedItem(path: candidate.annotation.path, error: error))
                case let .failure(error): throw error
                }
            }
            return source
        }
        return try assemble(train: read(trainRoots, trainSplit, name: "the training list (split '\(trainSplit)')"),
                            test: read(testRoots, testSplit, name: "the test list (split '\(testSplit)')"),
                            classes: classes, strict: strict, onSkip: onSkip)
    }

    /// `transform` of every element, computed on all cores, in the order of `items`.
    static func concurrentMap<T, R>(_ items: [T], _ transform: (T) -> R) -> [R] {
        guard items.count > 1 else { return items.map(transform) }
        var results = [R?](repeating: nil, count: items.count)
        results.withUnsafeMutableBufferPointer { slots in
            let base = slots.baseAddress!
            DispatchQueue.concurrentPerform(iterations: items.count) { i in (base + i).pointee = transform(items[i]) }
        }
        return results.map { $0! }
    }

    /// Throws `DataError.emptyList` if `list` has no image, or no object in any image.
    static func requireContent(_ list: DataList, what: String, skipped: [SkippedItem], listed: Int) throws {
        if list.images.isEmpty {
            throw DataError.emptyList(what: what, reason: "no image left: " + summary(skipped, listed: listed))
        }
        if list.objectCount == 0 {
            throw DataError.emptyList(what: what, reason: "\(list.images.count) images but not one object"
                                      + (skipped.isEmpty ? "" : "; " + summary(skipped, listed: listed)))
        }
    }

    /// "5 unknown class 'circle', 3 bad image": how many of `items` fell to each reason, most first.
    public static func countsByReason(_ items: [SkippedItem]) -> String {
        var counts: [String: Int] = [:]
        for item in items { counts[item.category, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    }

    /// "8 of 8 listed images skipped: 5 unknown class 'circle', 3 bad image (first: PATH: REASON)",
    /// and the objects left out of kept images, counted apart.
    static func summary(_ skipped: [SkippedItem], listed: Int) -> String {
        let counts = countsByReason
        let images = skipped.filter { $0.scope == .image }, objects = skipped.filter { $0.scope == .object }
        var text = images.first.map { "\(images.count) of \(listed) listed images skipped: \(counts(images)) (first: \($0))" }
            ?? "\(listed) listed, none skipped"
        if let first = objects.first { text += "; \(objects.count) objects left out: \(counts(objects)) (first: \(first))" }
        return text
    }

    /// Writes `TRAIN_images.json`, `TRAIN_objects.json`, `TEST_images.json`, `TEST_objects.json`
    /// and `label_map.json` into `folder`, in the reference's format.
    /// Only the lists the report has (`hasTrain`, `hasTest`) are written; for a COCO-sourced set,
    /// `source_ids.json` too (`SourceIdentifiers`), and otherwise a `source_ids.json` left there
    /// by an earlier COCO set is removed, since it would describe other lists.
    public static func write(_ report: DataListsReport, to folder: URL) throws {
        if report.hasTrain { try write(report.train, split: .train, to: folder) }
        if report.hasTest { try write(report.test, split: .test, to: folder) }
        try writeLabelMap(report.labelMap, to: folder.appendingPathComponent("label_map.json"))
        let idsURL = folder.appendingPathComponent(SourceIdentifiers.fileName)
        if let categories = report.categoryIDs {
            var object: [String: Any] = ["category_ids": categories]
            if report.hasTrain { object[DataSplit.train.rawValue] = report.train.sourceIDs }
            if report.hasTest { object[DataSplit.test.rawValue] = report.test.sourceIDs }
            try writeJSON(object, to: idsURL)
        } else if FileManager.default.fileExists(atPath: idsURL.path) {
            try? FileManager.default.removeItem(at: idsURL)
        }
    }

    /// The files `write` creates in a folder for `report`, to check before anything is replaced.
    public static func fileNames(for report: DataListsReport) -> [String] {
        var names: [String] = []
        for (split, present) in [(DataSplit.train, report.hasTrain), (.test, report.hasTest)] where present {
            names += ["\(split.rawValue)_images.json", "\(split.rawValue)_objects.json"]
        }
        return names + ["label_map.json"] + (report.categoryIDs == nil ? [] : [SourceIdentifiers.fileName])
    }

    /// Writes `<split>_images.json` and `<split>_objects.json` into `folder`. A box coordinate
    /// that is not finite (JSON has no infinity or NaN) is an error naming the entry.
    public static func write(_ list: DataList, split: DataSplit, to folder: URL) throws {
        let objectsURL = folder.appendingPathComponent("\(split.rawValue)_objects.json")
        let objects: [[String: Any]] = try list.objects.enumerated().map { n, set in
            var boxes: [[Any]] = []
            for i in 0..<set.count {
                let box = Array(set.boxes[(4 * i)..<(4 * i + 4)])
                guard box.allSatisfy(\.isFinite) else {
                    throw DataError.badList(path: objectsURL.path, field: "[\(n)].boxes[\(i)]", reason: "cannot write the non-finite box \(box)")
                }
                boxes.append(box.map(jsonNumber))
            }
            return ["boxes": boxes, "labels": set.labels, "difficulties": set.difficulties]
        }
        try writeJSON(list.images, to: folder.appendingPathComponent("\(split.rawValue)_images.json"))
        try writeJSON(objects, to: objectsURL)
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
            throw DataError.unwritableFile(path: url.path, reason: "cannot encode JSON: \(describe(error))")
        }
        try writeFileAtomically(data, to: url)
    }

    /// The JSON document at `url` (at most `FileLimits.list` bytes); one that does not parse is
    /// `invalid(reason)` (by default a `badList` error naming the file).
    static func readJSON(_ url: URL, invalid: ((String) -> DataError)? = nil) throws -> Any {
        let data = try readFile(url, limit: FileLimits.list)
        do {
            return try JSONSerialization.jsonObject(with: data)
        } catch {
            throw invalid?(describe(error)) ?? DataError.badList(path: url.path, field: "(document)", reason: "not valid JSON")
        }
    }

    /// Reads `<split>_images.json` and `<split>_objects.json` from `folder` (written here or by
    /// the reference), checking that every field has the reference's shape and every object makes
    /// sense, so that a bad entry is an error naming the list, the entry and its image now rather
    /// than a loss-time error about "image 4 of the batch": boxes are four finite numbers within
    /// ±10⁶ with x_max > x_min and y_max > y_min, labels are 1… (and at most the last label of
    /// `label_map.json` when the folder has one), difficulties are 0 or 1. Whether a box lies in
    /// its image is checked when the image is decoded (`DetectionDataset.sample`).
    public static func read(split: DataSplit, from folder: URL) throws -> DataList {
        let imagesURL = folder.appendingPathComponent("\(split.rawValue)_images.json")
        let objectsURL = folder.appendingPathComponent("\(split.rawValue)_objects.json")
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
        let labelMapURL = folder.appendingPathComponent("label_map.json")
        let lastLabel = FileManager.default.fileExists(atPath: labelMapURL.path) ? try readLabelMap(labelMapURL).classes.count : Int.max
        var objects: [ObjectSet] = []
        objects.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() {
            func bad(_ field: String, _ reason: String) -> DataError {
                .badList(path: objectsURL.path, field: "[\(i)]\(field)", reason: "\(reason) (image \(images[i]))")
            }
            func numbers(_ value: Any?, _ field: String) throws -> [Double] {
                guard let list = value as? [Any] else { throw bad(field, "missing or not a list") }
                return try list.enumerated().map { j, v in
                    guard let n = v as? NSNumber, n.doubleValue.isFinite else { throw bad("\(field)[\(j)]", "expected a number") }
                    return n.doubleValue
                }
            }
            guard let dict = entry as? [String: Any] else { throw bad("", "expected an object with boxes, labels, difficulties") }
            guard let boxList = dict["boxes"] as? [Any] else { throw bad(".boxes", "missing or not a list") }
            var set = ObjectSet()
            for (j, box) in boxList.enumerated() {
                let b = try numbers(box, ".boxes[\(j)]")
                guard b.count == 4 else { throw bad(".boxes[\(j)]", "expected 4 numbers, got \(b.count)") }
                guard b.allSatisfy({ abs($0) <= 1e6 }) else { throw bad(".boxes[\(j)]", "coordinates \(b) beyond ±10⁶ pixels") }
                guard b[2] > b[0], b[3] > b[1] else { throw bad(".boxes[\(j)]", "inverted or zero-area box \(b)") }
                set.boxes.append(contentsOf: b.map { Float($0) })
            }
            func integers(_ key: String, _ range: ClosedRange<Int>, _ meaning: String) throws -> [Int] {
                try numbers(dict[key], ".\(key)").enumerated().map { j, v in
                    guard let n = Int(exactly: v), range.contains(n) else { throw bad(".\(key)[\(j)]", "expected \(meaning), got \(v)") }
                    return n
                }
            }
            set.labels = try integers("labels", 1...lastLabel,
                                      lastLabel == Int.max ? "a label ≥ 1 (0 is background)" : "a label 1…\(lastLabel) of label_map.json")
            set.difficulties = try integers("difficulties", 0...1, "0 or 1")
            guard set.labels.count == boxList.count, set.difficulties.count == boxList.count else {
                throw bad("", "\(boxList.count) boxes, \(set.labels.count) labels, \(set.difficulties.count) difficulties")
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
