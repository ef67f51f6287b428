import Foundation

/// One image of a data set as its annotation format describes it (VOC, COCO or Create ML),
/// before the image file is checked.
public struct SourceImage: Sendable, Equatable {
    /// The image file, found.
    public var image: URL
    /// Where the image was described, for messages: a VOC annotation file, or
    /// `FILE: images[3]` for one entry of a COCO or Create ML file.
    public var origin: String
    /// The size the annotation claims, when it gives one (VOC's `<size>`, COCO's width/height).
    public var width: Int?
    public var height: Int?
    /// Its objects, boxes 0-based pixel corners.
    public var objects: [VOCObject]
    /// The image's identifier in its source (COCO's `id`), written beside the lists so that
    /// results can be written in the source's own terms.
    public var sourceID: Int?

    public init(image: URL, origin: String, width: Int? = nil, height: Int? = nil, objects: [VOCObject], sourceID: Int? = nil) {
        self.image = image
        self.origin = origin
        self.width = width
        self.height = height
        self.objects = objects
        self.sourceID = sourceID
    }
}

/// The images one split's annotations describe, with what was left out while reading them.
public struct SplitSource: Sendable {
    /// What the split is, for messages ("the training list (split 'trainval')", "the test list (test.json)").
    public var name: String
    /// The images described, in order, not yet checked.
    public var images: [SourceImage]
    /// How many images the annotations list (before anything was skipped).
    public var listed: Int
    /// Images and objects left out while reading, with their reasons.
    public var skipped: [SkippedItem]

    public init(name: String, images: [SourceImage] = [], listed: Int = 0, skipped: [SkippedItem] = []) {
        self.name = name
        self.images = images
        self.listed = listed
        self.skipped = skipped
    }
}

/// Collects what is left out and reports each item as it happens, so a caller can print every
/// skipped image before any error that follows; with `strict`, the first problem throws instead.
final class SkipLog {
    private(set) var items: [SkippedItem] = []
    let strict: Bool
    let onSkip: ((SkippedItem) -> Void)?

    init(strict: Bool, onSkip: ((SkippedItem) -> Void)?) {
        self.strict = strict
        self.onSkip = onSkip
    }

    /// Records `item`; with `strict`, throws `error` (or the item as an invalid argument) instead.
    func add(_ item: SkippedItem, error: DataError? = nil) throws {
        if strict { throw error ?? DataError.invalidArgument(item.description) }
        items.append(item)
        onSkip?(item)
    }

    func add(path: String, error: DataError) throws {
        try add(SkippedItem(path: path, error: error), error: error)
    }
}

extension DataLists {
    /// Checks every image of `train` and `test` and encodes their objects with the label map
    /// `classes` gives: the part of building lists that every annotation format shares.
    ///
    /// Each image file must be a complete JPEG or PNG, of the size its annotation claims, with
    /// every box inside it; an image failing a check is skipped with its reason (thrown with
    /// `strict`). Images without objects are kept in both lists: they are negatives, which the
    /// loss and the metric handle. A split that is given (non-nil) but ends with no image, or
    /// with no object in any image, is `DataError.emptyList`, which counts the skipped images by
    /// reason. `onSkip` hears of every skipped item as it happens, the reading's first.
    static func assemble(train: SplitSource?, test: SplitSource?, classes: ClassSource, strict: Bool,
                         onSkip: ((SkippedItem) -> Void)?, sourceCategoryIDs: [String: Int]? = nil) throws -> DataListsReport {
        let log = SkipLog(strict: strict, onSkip: onSkip)
        var checked: [[SourceImage]] = []
        var splitSkips: [[SkippedItem]] = []
        for split in [train, test] {
            guard let split else { checked.append([]); splitSkips.append([]); continue }
            let before = log.items.count
            for item in split.skipped { try log.add(item) }
            let results = concurrentMap(split.images) { source in
                Result<Void, Error> { try checkImage(source) }
            }
            var kept: [SourceImage] = []
            for (source, result) in zip(split.images, results) {
                switch result {
                case .success: kept.append(source)
                case let .failure(error as DataError): try log.add(path: source.origin, error: error)
                case let .failure(error): throw error
                }
            }
            checked.append(kept)
            splitSkips.append(Array(log.items[before...]))
        }
        let labelMap: LabelMap
        switch classes {
        case .voc: labelMap = .voc
        case let .given(names): labelMap = try LabelMap(classes: names)
        case .gathered:
            let names = Set(checked.joined().flatMap { $0.objects.map { $0.name.lowercased().trimmingCharacters(in: .whitespacesAndNewlines) } })
            guard !names.isEmpty else {
                let listed = (train?.listed ?? 0) + (test?.listed ?? 0)
                throw DataError.emptyList(what: "the data set", reason: "no object (and so no class) found to gather; "
                                          + summary(log.items, listed: listed))
            }
            labelMap = try LabelMap(classes: names.sorted())
        }
        var lists: [DataList] = []
        for (index, split) in [train, test].enumerated() {
            var list = DataList()
            let before = log.items.count
            for source in checked[index] {
                do {
                    let objects = try VOCAnnotation(width: source.width, height: source.height, objects: source.objects)
                        .objectSet(labelMap: labelMap, path: source.origin)
                    list.images.append(source.image.path)
                    list.objects.append(objects)
                    if let id = source.sourceID { list.sourceIDs.append(id) }
                } catch let error as DataError {
                    try log.add(path: source.origin, error: error)
                }
            }
            if list.sourceIDs.count != list.images.count { list.sourceIDs = [] }
            if let split {
                try requireContent(list, what: split.name, skipped: splitSkips[index] + log.items[before...], listed: split.listed)
            }
            lists.append(list)
        }
        var categoryIDs: [Int]? = nil
        if let sourceCategoryIDs {
            categoryIDs = try labelMap.classes.map { name in
                guard let id = sourceCategoryIDs[name] else {
                    throw DataError.invalidArgument("class '\(name)' has no category id in the source annotations")
                }
                return id
            }
        }
        return DataListsReport(labelMap: labelMap, train: lists[0], test: lists[1], skipped: log.items,
                               hasTrain: train != nil, hasTest: test != nil, categoryIDs: categoryIDs)
    }

    /// Checks that the image file is a complete JPEG or PNG, of the claimed size when one is
    /// given, and that every object's box lies in it.
    static func checkImage(_ source: SourceImage) throws {
        let (width, height) = try ImageCodec.inspect(source.image)
        if let w = source.width, let h = source.height, w != width || h != height {
            throw DataError.badAnnotation(path: source.origin, field: "size",
                                          reason: "says \(w)×\(h) but the image \(source.image.path) is \(width)×\(height)")
        }
        if source.width == nil || source.height == nil {
            for (i, object) in source.objects.enumerated() {
                if let problem = VOC.boxProblem(object.box, width: width, height: height) {
                    throw DataError.badAnnotation(path: source.origin, field: "object[\(i)].bndbox", reason: "\(problem) (\(source.image.path))")
                }
            }
        }
    }
}
