import Foundation
import SSDBoxes

/// A category of a COCO data set: its id in the file and its name.
public struct COCOCategory: Sendable, Equatable {
    public var id: Int
    public var name: String
    public init(id: Int, name: String) {
        self.id = id
        self.name = name
    }
}

/// COCO detection data sets (`instances_*.json`): reading them as a split, and writing results
/// in COCO's own format.
public enum COCO {
    /// How far a box may reach outside its image, in pixels, and still be kept (clipped to the
    /// image): COCO's boxes are floating point, and rounding puts some edges a hair outside.
    public static let edgeTolerance = 1.0

    /// Reads the COCO annotation file at `url` whose `file_name`s lie under `images`.
    ///
    /// - `categories`: a non-empty list of `{id, name}`, ids and names distinct; the classes are
    ///   labels 1…n in this order, named by it.
    /// - `images`: `{id, file_name, width, height}`, ids distinct, sizes whole positive pixels;
    ///   every file must exist (a missing one is an error: it usually means the wrong `--images`
    ///   folder). Images without annotations are kept: they are negatives.
    /// - `annotations`: `{image_id, category_id, bbox: [x, y, w, h], iscrowd?}` whose image and
    ///   category ids are listed; `bbox` in pixels becomes corners (x, y, x + w, y + h);
    ///   `iscrowd: 1` becomes difficult. A box of zero width or height, or reaching more than
    ///   `edgeTolerance` outside its image, is skipped and reported in the split's `skipped`
    ///   (with `strict`, thrown); one within the tolerance is clipped to the image.
    ///
    /// Anything malformed — not JSON, a missing or mistyped field, a negative size, an unknown
    /// image or category id, a missing image file — throws a `DataError` naming the file, the
    /// entry and the field. Image files are decoded later, by `DataLists.assemble`.
    public static func read(annotations url: URL, images folder: URL, name: String, strict: Bool = false) throws
        -> (split: SplitSource, categories: [COCOCategory]) {
        let path = url.path
        let document = try DataLists.readAnnotationJSON(url)
        let root = try JSONEntry(document, path: path, field: "(document)")
        func list(_ key: String) throws -> [Any] {
            guard let value = root.object[key] else {
                throw DataError.badAnnotation(path: path, field: key, reason: "missing (a COCO detection file has images, annotations and categories)")
            }
            guard let list = value as? [Any] else {
                throw DataError.badAnnotation(path: path, field: key, reason: "expected a list, got \(JSONEntry.kind(of: value))")
            }
            return list
        }
        var categories: [COCOCategory] = []
        var categoryIndex: [Int: Int] = [:], categoryNames: [String: Int] = [:]
        for (j, value) in try list("categories").enumerated() {
            let entry = try JSONEntry(value, path: path, field: "categories[\(j)]")
            let id = try entry.integer("id"), name = try entry.string("name")
            if let other = categoryIndex[id] { throw entry.error("id", "category id \(id) is also categories[\(other)]'s") }
            let key = name.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
            if key == "background" { throw entry.error("name", "'background' is label 0, not a class") }
            if let other = categoryNames[key] { throw entry.error("name", "the name '\(name)' is also categories[\(other)]'s") }
            categoryIndex[id] = j
            categoryNames[key] = j
            categories.append(COCOCategory(id: id, name: name))
        }
        guard !categories.isEmpty else { throw DataError.badAnnotation(path: path, field: "categories", reason: "no category") }

        var split = SplitSource(name: name)
        var imageIndex: [Int: Int] = [:]
        for (i, value) in try list("images").enumerated() {
            let entry = try JSONEntry(value, path: path, field: "images[\(i)]")
            let id = try entry.integer("id"), fileName = try entry.string("file_name")
            let width = try entry.size("width"), height = try entry.size("height")
            if let other = imageIndex[id] { throw entry.error("id", "image id \(id) is also images[\(other)]'s") }
            let file = fileName.hasPrefix("/") ? URL(fileURLWithPath: fileName) : folder.appendingPathComponent(fileName)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw entry.error("file_name", "no such file \(file.path) (is --images the folder the file names are relative to?)")
            }
            imageIndex[id] = i
            split.images.append(SourceImage(image: file, origin: "\(path): images[\(i)] (\(fileName))", width: width, height: height,
                                            objects: [], sourceID: id))
        }
        split.listed = split.images.count
        for (k, value) in try list("annotations").enumerated() {
            let entry = try JSONEntry(value, path: path, field: "annotations[\(k)]")
            let imageID = try entry.integer("image_id"), categoryID = try entry.integer("category_id")
            guard let i = imageIndex[imageID] else { throw entry.error("image_id", "no image has id \(imageID)") }
            guard let j = categoryIndex[categoryID] else {
                throw entry.error("category_id", "no category has id \(categoryID) (categories: \(categories.map { String($0.id) }.joined(separator: ", ")))")
            }
            let bbox = try entry.numbers("bbox", count: 4)
            guard bbox[2] >= 0, bbox[3] >= 0 else {
                throw entry.error("bbox", "negative width or height in [x, y, w, h] = \(bbox.map(JSONEntry.format))")
            }
            var crowd = false
            if entry.has("iscrowd") {
                let flag = try entry.integer("iscrowd")
                guard flag == 0 || flag == 1 else { throw entry.error("iscrowd", "expected 0 or 1, got \(flag)") }
                crowd = flag == 1
            }
            let image = split.images[i]
            let w = Double(image.width!), h = Double(image.height!)
            let origin = "\(path): annotations[\(k)]"
            func skip(_ reason: String, _ category: String) throws {
                let item = SkippedItem(path: origin, reason: "\(origin).bbox: \(reason) (image \(image.image.lastPathComponent)); the object is left out",
                                       category: category, scope: .object)
                if strict { throw DataError.badAnnotation(path: path, field: "annotations[\(k)].bbox", reason: reason) }
                split.skipped.append(item)
            }
            if bbox[2] == 0 || bbox[3] == 0 {
                try skip("zero-area box [x, y, w, h] = \(bbox.map(JSONEntry.format))", "zero-area box")
                continue
            }
            let corners = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]
            let t = edgeTolerance
            guard corners[0] >= -t, corners[1] >= -t, corners[2] <= w + t, corners[3] <= h + t else {
                try skip("box [x, y, w, h] = \(bbox.map(JSONEntry.format)) lies outside the \(image.width!)×\(image.height!) image",
                         "box outside the image")
                continue
            }
            let clipped = [max(corners[0], 0), max(corners[1], 0), min(corners[2], w), min(corners[3], h)]
            guard clipped[2] > clipped[0], clipped[3] > clipped[1] else {
                try skip("box [x, y, w, h] = \(bbox.map(JSONEntry.format)) has no area inside the image", "box outside the image")
                continue
            }
            split.images[i].objects.append(VOCObject(name: categories[j].name, difficult: crowd, box: clipped.map { Float($0) }))
        }
        return (split, categories)
    }

    /// Detections as COCO's results format: a list of `{image_id, category_id, bbox: [x, y, w, h],
    /// score}` with boxes in pixels. `detections[i]` are image i's, in pixels (x_min, y_min,
    /// x_max, y_max) and labels 1…n; `imageIDs[i]` is its COCO id and `categoryIDs[l − 1]` the
    /// category of label l. The "nothing found" placeholder (label 0) is left out.
    public static func results(_ detections: [[Detection]], imageIDs: [Int], categoryIDs: [Int]) throws -> Data {
        guard detections.count == imageIDs.count else {
            throw DataError.invalidArgument("COCO results: \(detections.count) images of detections but \(imageIDs.count) image ids")
        }
        var records: [[String: Any]] = []
        for (image, list) in zip(imageIDs, detections) {
            for d in list where d.label != 0 {
                guard d.label >= 1 && d.label <= categoryIDs.count else {
                    throw DataError.invalidArgument("COCO results: label \(d.label) has no category (\(categoryIDs.count) classes)")
                }
                let b = d.box
                let values = [Double(b.xMin), Double(b.yMin), Double(b.xMax - b.xMin), Double(b.yMax - b.yMin), Double(d.score)]
                guard values.allSatisfy(\.isFinite) else {
                    throw DataError.invalidArgument("COCO results: image \(image) has a non-finite detection \(values)")
                }
                records.append(["image_id": image, "category_id": categoryIDs[d.label - 1],
                                "bbox": Array(values[0..<4]), "score": values[4]])
            }
        }
        return try JSONSerialization.data(withJSONObject: records, options: [.sortedKeys])
    }

    /// A COCO detection annotation document for `images` (file names relative to the images
    /// folder, with sizes and objects) and `categories` (ids and names): what the synthetic set
    /// writes. Objects name their category; difficult ones are written as `iscrowd: 1`.
    static func document(images: [(fileName: String, width: Int, height: Int, objects: [VOCObject])],
                         categories: [COCOCategory]) -> [String: Any] {
        var imageRecords: [[String: Any]] = [], annotations: [[String: Any]] = []
        for (i, image) in images.enumerated() {
            imageRecords.append(["id": i + 1, "file_name": image.fileName, "width": image.width, "height": image.height])
            for object in image.objects {
                let b = object.box.map(Double.init)
                let category = categories.first { $0.name == object.name }!.id
                annotations.append(["id": annotations.count + 1, "image_id": i + 1, "category_id": category,
                                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                                    "iscrowd": object.difficult ? 1 : 0])
            }
        }
        return ["images": imageRecords, "annotations": annotations,
                "categories": categories.map { ["id": $0.id, "name": $0.name, "supercategory": "shape"] }]
    }
}

/// What `source_ids.json` beside the lists holds for a COCO-sourced set: the COCO category id of
/// each class (labels 1…n) and the COCO image id of each listed image, so that `ssd eval` and
/// `ssd detect` can write results that COCO's own tools read.
public struct SourceIdentifiers: Sendable, Equatable {
    public static let fileName = "source_ids.json"
    public var categoryIDs: [Int]
    public var imageIDs: [DataSplit: [Int]]

    /// Reads `source_ids.json` from `folder`; nil when there is none (a VOC or Create ML set).
    /// Its image id lists must match the lengths of `lists` where given.
    public static func read(from folder: URL) throws -> SourceIdentifiers? {
        let url = folder.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let root = try JSONEntry(try DataLists.readJSON(url), path: url.path, field: "(document)")
        func integers(_ key: String) throws -> [Int] {
            try root.list(key).enumerated().map { i, v in
                guard let n = JSONEntry.number(v), n == n.rounded(), abs(n) <= 9e15 else {
                    throw DataError.badList(path: url.path, field: "\(key)[\(i)]", reason: "expected a whole number")
                }
                return Int(n)
            }
        }
        var ids = SourceIdentifiers(categoryIDs: try integers("category_ids"), imageIDs: [:])
        for split in DataSplit.allCases where root.has(split.rawValue) { ids.imageIDs[split] = try integers(split.rawValue) }
        return ids
    }
}

extension ImageCodec {
    /// The width and height of every image file, read on all cores (`inspect`); the first file
    /// that cannot be read is the error.
    public static func sizes(of urls: [URL]) throws -> [(width: Int, height: Int)] {
        try DataLists.concurrentMap(urls) { url in Result { try inspect(url) } }.map { try $0.get() }
    }
}

extension COCO {
    /// The image id of each file in `files`, looked up in the COCO annotation file at `url` by
    /// `file_name` (the whole relative name, or its last component when that is unique in the
    /// file), and the category id of each of `classes` by name. A file or class the annotation
    /// file does not know is an error naming it.
    public static func identifiers(annotations url: URL, files: [URL], classes: [String]) throws -> (images: [Int], categories: [Int]) {
        let path = url.path
        let root = try JSONEntry(try DataLists.readAnnotationJSON(url), path: path, field: "(document)")
        var byName: [String: Int] = [:], byLast: [String: [Int]] = [:]
        for (i, value) in try root.list("images").enumerated() {
            let entry = try JSONEntry(value, path: path, field: "images[\(i)]")
            let id = try entry.integer("id"), name = try entry.string("file_name")
            byName[name] = id
            byLast[(name as NSString).lastPathComponent, default: []].append(id)
        }
        var categories: [String: Int] = [:]
        for (j, value) in try root.list("categories").enumerated() {
            let entry = try JSONEntry(value, path: path, field: "categories[\(j)]")
            categories[try entry.string("name").lowercased().trimmingCharacters(in: .whitespacesAndNewlines)] = try entry.integer("id")
        }
        let images = try files.map { file -> Int in
            let last = file.lastPathComponent
            if let candidates = byLast[last], candidates.count == 1 { return candidates[0] }
            if let id = byName.first(where: { file.path.hasSuffix("/" + $0.key) || file.path == $0.key })?.value { return id }
            throw DataError.badAnnotation(path: path, field: "images", reason: byLast[last] == nil
                                          ? "no image has the file_name \(last) (\(file.path))"
                                          : "several images have the file name \(last); cannot tell which is \(file.path)")
        }
        let categoryIDs = try classes.map { name -> Int in
            guard let id = categories[name.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)] else {
                throw DataError.badAnnotation(path: path, field: "categories",
                                              reason: "no category is named '\(name)', a class of the model")
            }
            return id
        }
        return (images, categoryIDs)
    }
}

/// An annotation file and the folder its image names are relative to.
public struct AnnotatedFolder: Sendable, Equatable {
    public var annotations: URL
    public var images: URL
    public init(annotations: URL, images: URL) {
        self.annotations = annotations
        self.images = images
    }
}

extension DataLists {
    /// Builds lists from COCO annotation files (`COCO.read`): the classes are the training file's
    /// categories in its order (the test file must have the same ones), and the report carries
    /// the category ids, so that `write` puts `source_ids.json` beside the lists. Either file may
    /// be absent (nil): only the other list is made. Writes nothing.
    public static func build(coco train: AnnotatedFolder?, test: AnnotatedFolder?, strict: Bool = false,
                             onSkip: ((SkippedItem) -> Void)? = nil) throws -> DataListsReport {
        guard train != nil || test != nil else { throw DataError.invalidArgument("COCO: give a training or a test annotation file") }
        let trainRead = try train.map { try COCO.read(annotations: $0.annotations, images: $0.images,
                                                      name: "the training list (\($0.annotations.lastPathComponent))", strict: strict) }
        let testRead = try test.map { try COCO.read(annotations: $0.annotations, images: $0.images,
                                                    name: "the test list (\($0.annotations.lastPathComponent))", strict: strict) }
        if let a = trainRead, let b = testRead, a.categories != b.categories {
            throw DataError.badAnnotation(path: test!.annotations.path, field: "categories",
                                          reason: "differ from those of \(train!.annotations.path): the two files must share their categories, in the same order")
        }
        let categories = (trainRead ?? testRead)!.categories
        var ids: [String: Int] = [:]
        for category in categories { ids[category.name.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)] = category.id }
        return try assemble(train: trainRead?.split, test: testRead?.split, classes: .given(categories.map(\.name)),
                            strict: strict, onSkip: onSkip, sourceCategoryIDs: ids)
    }

    /// Builds lists from Create ML annotation files (`CreateML.read`); the classes are those
    /// `classes` gives (by default every label found, sorted). Either file may be absent (nil):
    /// only the other list is made. Writes nothing.
    public static func build(createML train: AnnotatedFolder?, test: AnnotatedFolder?, classes: ClassSource = .gathered,
                             strict: Bool = false, onSkip: ((SkippedItem) -> Void)? = nil) throws -> DataListsReport {
        guard train != nil || test != nil else { throw DataError.invalidArgument("Create ML: give a training or a test annotation file") }
        let trainRead = try train.map { try CreateML.read(annotations: $0.annotations, images: $0.images,
                                                          name: "the training list (\($0.annotations.lastPathComponent))", strict: strict) }
        let testRead = try test.map { try CreateML.read(annotations: $0.annotations, images: $0.images,
                                                        name: "the test list (\($0.annotations.lastPathComponent))", strict: strict) }
        return try assemble(train: trainRead, test: testRead, classes: classes, strict: strict, onSkip: onSkip)
    }
}
