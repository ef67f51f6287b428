import Foundation

/// Create ML object-detection annotations: the JSON that Apple's Create ML and many labelling
/// tools write, a list of `{"image": NAME, "annotations": [{"label": NAME, "coordinates":
/// {"x", "y", "width", "height"}}]}` whose boxes are centre-anchored, in pixels.
public enum CreateML {
    /// Reads the Create ML annotation file at `url` whose image names lie under `images`.
    ///
    /// Each entry needs `image` (a file that must exist: a missing one is an error, as it
    /// usually means the wrong `--images` folder) and `annotations` (a list, empty for an image
    /// without objects — a negative, kept). Each annotation needs a `label` and `coordinates`
    /// with finite `x`, `y` (the box's centre) and `width`, `height` ≥ 0; the box becomes corners
    /// (x − w/2, y − h/2, x + w/2, y + h/2). A box of zero width or height, or reaching more than
    /// `COCO.edgeTolerance` outside its image, is skipped and reported (thrown with `strict`);
    /// one within the tolerance is clipped. An image named twice is kept once, the repeat
    /// reported. The image sizes are read from the files (the format gives none).
    ///
    /// Anything malformed — not JSON, not a list, a missing or mistyped field, a negative size —
    /// throws a `DataError` naming the file, the entry and the field.
    public static func read(annotations url: URL, images folder: URL, name: String, strict: Bool = false) throws -> SplitSource {
        let path = url.path
        guard let entries = try DataLists.readAnnotationJSON(url) as? [Any] else {
            throw DataError.badAnnotation(path: path, field: "(document)",
                                          reason: "expected a list of {\"image\", \"annotations\"} entries (Create ML's format)")
        }
        var split = SplitSource(name: name, listed: entries.count)
        // First every entry's fields (errors stop here, before any image is read), then the
        // image sizes on all cores, then the boxes against them.
        typealias Pending = (index: Int, imageName: String, file: URL, boxes: [(label: String, field: String, x: Double, y: Double, w: Double, h: Double)])
        var pending: [Pending] = []
        var seen: [String: Int] = [:]
        for (i, value) in entries.enumerated() {
            let entry = try JSONEntry(value, path: path, field: "[\(i)]")
            let imageName = try entry.string("image")
            let file = imageName.hasPrefix("/") ? URL(fileURLWithPath: imageName) : folder.appendingPathComponent(imageName)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw entry.error("image", "no such file \(file.path) (is --images the folder the image names are relative to?)")
            }
            var boxes: [(label: String, field: String, x: Double, y: Double, w: Double, h: Double)] = []
            for (k, value) in try entry.list("annotations").enumerated() {
                let annotation = try JSONEntry(value, path: path, field: "[\(i)].annotations[\(k)]")
                let label = try annotation.string("label")
                let coordinates = try annotation.entry("coordinates")
                let x = try coordinates.number("x"), y = try coordinates.number("y")
                let w = try coordinates.number("width"), h = try coordinates.number("height")
                guard w >= 0 else { throw coordinates.error("width", "negative: \(JSONEntry.format(w))") }
                guard h >= 0 else { throw coordinates.error("height", "negative: \(JSONEntry.format(h))") }
                boxes.append((label, coordinates.field, x, y, w, h))
            }
            if let first = seen[file.standardizedFileURL.path] {
                if strict { throw entry.error("image", "'\(imageName)' is also entry [\(first)]") }
                split.skipped.append(SkippedItem(path: "\(path): [\(i)]",
                                                 reason: "\(path): [\(i)].image: '\(imageName)' is also entry [\(first)]; the image is listed once",
                                                 category: "duplicate image"))
                continue
            }
            seen[file.standardizedFileURL.path] = i
            pending.append((i, imageName, file, boxes))
        }
        // An unreadable image gets no size here; `DataLists.assemble` decodes it and says why.
        let sizes = DataLists.concurrentMap(pending) { try? ImageCodec.inspect($0.file) }
        for (item, size) in zip(pending, sizes) {
            var objects: [VOCObject] = []
            for box in item.boxes {
                func skip(_ reason: String, _ category: String) throws {
                    if strict { throw DataError.badAnnotation(path: path, field: box.field, reason: reason) }
                    split.skipped.append(SkippedItem(path: "\(path): \(box.field)",
                                                     reason: "\(path): \(box.field): \(reason) (image \(item.imageName)); the object is left out",
                                                     category: category, scope: .object))
                }
                let described = "{x: \(JSONEntry.format(box.x)), y: \(JSONEntry.format(box.y)), width: \(JSONEntry.format(box.w)), "
                    + "height: \(JSONEntry.format(box.h))}"
                if box.w == 0 || box.h == 0 {
                    try skip("zero-area box \(described)", "zero-area box")
                    continue
                }
                var corners = [box.x - box.w / 2, box.y - box.h / 2, box.x + box.w / 2, box.y + box.h / 2]
                if let size {
                    let t = COCO.edgeTolerance, width = Double(size.width), height = Double(size.height)
                    guard corners[0] >= -t, corners[1] >= -t, corners[2] <= width + t, corners[3] <= height + t else {
                        try skip("box \(described) (centre, size) lies outside the \(size.width)×\(size.height) image", "box outside the image")
                        continue
                    }
                    corners = [max(corners[0], 0), max(corners[1], 0), min(corners[2], width), min(corners[3], height)]
                }
                objects.append(VOCObject(name: box.label, difficult: false, box: corners.map { Float($0) }))
            }
            split.images.append(SourceImage(image: item.file, origin: "\(path): [\(item.index)] (\(item.imageName))",
                                            width: size?.width, height: size?.height, objects: objects))
        }
        return split
    }

    /// A Create ML annotation document for `images` (names relative to the images folder):
    /// what the synthetic set writes.
    static func document(images: [(fileName: String, objects: [VOCObject])]) -> [Any] {
        images.map { image in
            ["image": image.fileName,
             "annotations": image.objects.map { object -> [String: Any] in
                let b = object.box.map(Double.init)
                return ["label": object.name,
                        "coordinates": ["x": (b[0] + b[2]) / 2, "y": (b[1] + b[3]) / 2, "width": b[2] - b[0], "height": b[3] - b[1]]]
             }] as [String: Any]
        }
    }
}
