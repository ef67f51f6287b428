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
    /// The kind of problem in a few words ("bad image", "unknown class 'cat'", "duplicate id", ...),
    /// to count skipped images by reason.
    public var category: String
    /// "PATH: REASON", or the reason alone when it starts with the path already.
    public var description: String { reason.hasPrefix(path) ? reason : "\(path): \(reason)" }

    public init(path: String, reason: String, category: String) {
        self.path = path
        self.reason = reason
        self.category = category
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
    /// Every image left out (with its reason): bad annotations, unknown classes, missing or bad
    /// images, training images without objects, and repeated identifiers (listed once).
    public var skipped: [SkippedItem]
}

/// Building, writing and reading the reference's data lists (`create_data_lists` in utils.py).
public enum DataLists {
    /// Builds the training list from `trainRoots`' `trainSplit` and the test list from
    /// `testRoots`' `testSplit` (the reference: 07+12 trainval, 07 test). Writes nothing.
    ///
    /// Every listed image is checked, not only its annotation: the annotation must be well-formed
    /// with known classes; the image file must be a complete JPEG or PNG (decoded, at 1/8 scale for
    /// JPEG, so zero-byte, text and truncated files are found here rather than in training);
    /// its size must equal the annotation's `<size>` when one is given, and every box must lie in
    /// the image. An image failing any check is left out and reported in `skipped` with its
    /// reason; with `strict`, the first problem is thrown instead.
    ///
    /// An identifier listed twice in a split (or an image reached twice through repeated roots)
    /// is kept once and the repeat reported in `skipped` ("duplicate id"); with `strict` it is an
    /// error naming the split file and both lines. Training images without objects are left out.
    ///
    /// A missing or empty split file always throws, and so does a split whose images were all
    /// skipped, or whose images hold no object at all: `DataError.emptyList` counts the skipped
    /// images by reason (a wrong class list, for instance, skips every image as "unknown class").
    public static func build(trainRoots: [URL], testRoots: [URL], classes: ClassSource = .voc,
                             trainSplit: String = "trainval", testSplit: String = "test",
                             strict: Bool = false) throws -> DataListsReport {
        var skipped: [SkippedItem] = []
        typealias Entry = (image: URL, annotationPath: String, annotation: VOCAnnotation)
        func skip(_ path: String, _ error: DataError) throws {
            if strict { throw error }
            skipped.append(SkippedItem(path: path, error: error))
        }
        func read(_ roots: [URL], _ split: String) throws -> (entries: [Entry], listed: Int, skippedFrom: Int) {
            var entries: [Entry] = []
            var candidates: [(annotation: URL, image: URL)] = []
            var seen: [String: (file: String, line: Int)] = [:]
            var listed = 0
            let skippedFrom = skipped.count
            for root in roots {
                let splitFile = root.standardizedFileURL.appendingPathComponent("ImageSets/Main/\(split).txt").path
                for (id, line) in try VOC.imageIdentifiers(root: root.standardizedFileURL, split: split) {
                    listed += 1
                    let (annotationURL, imageURL) = VOC.paths(root: root.standardizedFileURL, identifier: id)
                    if let first = seen[imageURL.path] {
                        let earlier = first.file == splitFile ? "line \(first.line)" : "\(first.file) line \(first.line)"
                        let error = DataError.badList(path: splitFile, field: "line \(line)",
                                                      reason: "duplicate id '\(id)' (already listed on \(earlier)); the image is listed once")
                        if strict { throw error }
                        skipped.append(SkippedItem(path: splitFile, reason: error.description, category: "duplicate id"))
                        continue
                    }
                    seen[imageURL.path] = (splitFile, line)
                    candidates.append((annotationURL, imageURL))
                }
            }
            // Parsing and decoding are independent per image: spread them over the cores, then
            // keep the results in list order.
            let results = concurrentMap(candidates) { candidate in
                Result<VOCAnnotation, Error> {
                    let annotation = try VOC.parseAnnotation(candidate.annotation)
                    try checkImage(candidate.image, against: annotation, annotationPath: candidate.annotation.path)
                    return annotation
                }
            }
            for (candidate, result) in zip(candidates, results) {
                switch result {
                case let .success(annotation): entries.append((candidate.image, candidate.annotation.path, annotation))
                case let .failure(error as DataError): try skip(candidate.annotation.path, error)
                case let .failure(error): throw error
                }
            }
            return (entries, listed, skippedFrom)
        }
        let trainRead = try read(trainRoots, trainSplit)
        let testRead = try read(testRoots, testSplit)
        let labelMap: LabelMap
        switch classes {
        case .voc: labelMap = .voc
        case let .given(names): labelMap = try LabelMap(classes: names)
        case .gathered:
            let names = Set((trainRead.entries + testRead.entries).flatMap { $0.annotation.objects.map { $0.name.lowercased() } })
            guard !names.isEmpty else {
                throw DataError.emptyList(what: "the data set", reason: "no object (and so no class) found to gather; "
                                          + summary(skipped, listed: trainRead.listed + testRead.listed))
            }
            labelMap = try LabelMap(classes: names.sorted())
        }
        func encode(_ entries: [Entry], dropEmpty: Bool) throws -> DataList {
            var list = DataList()
            for entry in entries {
                do {
                    let objects = try entry.annotation.objectSet(labelMap: labelMap, path: entry.annotationPath)
                    if dropEmpty && objects.count == 0 {
                        skipped.append(SkippedItem(path: entry.annotationPath, reason: "no objects (training images need at least one)",
                                                   category: "no objects"))
                        continue
                    }
                    list.images.append(entry.image.path)
                    list.objects.append(objects)
                } catch let error as DataError {
                    try skip(entry.annotationPath, error)
                }
            }
            return list
        }
        let trainFrom = skipped.count
        let train = try encode(trainRead.entries, dropEmpty: true)
        let trainSkipped = Array(skipped[trainRead.skippedFrom..<testRead.skippedFrom] + skipped[trainFrom...])
        let testFrom = skipped.count
        let test = try encode(testRead.entries, dropEmpty: false)
        let testSkipped = Array(skipped[testRead.skippedFrom..<trainFrom] + skipped[testFrom...])
        if !trainRoots.isEmpty {
            try requireContent(train, what: "the training list (split '\(trainSplit)')", skipped: trainSkipped, listed: trainRead.listed)
        }
        if !testRoots.isEmpty {
            try requireContent(test, what: "the test list (split '\(testSplit)')", skipped: testSkipped, listed: testRead.listed)
        }
        return DataListsReport(labelMap: labelMap, train: train, test: test, skipped: skipped)
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

    /// Checks that the image file is a complete JPEG or PNG, of the annotation's `<size>` when it
    /// gives one, and that every object's box lies in it.
    static func checkImage(_ url: URL, against annotation: VOCAnnotation, annotationPath: String) throws {
        let (width, height) = try ImageCodec.inspect(url)
        if let w = annotation.width, let h = annotation.height, w != width || h != height {
            throw DataError.badAnnotation(path: annotationPath, field: "size",
                                          reason: "says \(w)×\(h) but the image \(url.path) is \(width)×\(height)")
        }
        if annotation.width == nil || annotation.height == nil {
            for (i, object) in annotation.objects.enumerated() {
                if let problem = VOC.boxProblem(object.box, width: width, height: height) {
                    throw DataError.badAnnotation(path: annotationPath, field: "object[\(i)].bndbox", reason: "\(problem) (\(url.path))")
                }
            }
        }
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

    /// "8 of 8 listed images skipped: 5 unknown class 'circle', 3 bad image (e.g. PATH: REASON)".
    static func summary(_ skipped: [SkippedItem], listed: Int) -> String {
        guard let first = skipped.first else { return "\(listed) listed, none skipped" }
        var counts: [String: Int] = [:]
        for item in skipped { counts[item.category, default: 0] += 1 }
        let reasons = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return "\(skipped.count) of \(listed) listed images skipped: \(reasons) (first: \(first))"
    }

    /// Writes `TRAIN_images.json`, `TRAIN_objects.json`, `TEST_images.json`, `TEST_objects.json`
    /// and `label_map.json` into `folder`, in the reference's format.
    public static func write(_ report: DataListsReport, to folder: URL) throws {
        try write(report.train, split: .train, to: folder)
        try write(report.test, split: .test, to: folder)
        try writeLabelMap(report.labelMap, to: folder.appendingPathComponent("label_map.json"))
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

    static func readJSON(_ url: URL) throws -> Any {
        let data = try readFile(url, limit: FileLimits.list)
        do {
            return try JSONSerialization.jsonObject(with: data)
        } catch {
            throw DataError.badList(path: url.path, field: "(document)", reason: "not valid JSON")
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
