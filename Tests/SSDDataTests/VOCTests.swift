import Foundation
import SSDData
import XCTest

/// A fresh temporary folder, removed by the caller.
func temporaryFolder(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ssddata-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

final class VOCTests: XCTestCase {
    static func xml(_ objects: String, width: Int = 100, height: Int = 80) -> Data {
        Data("<annotation><size><width>\(width)</width><height>\(height)</height><depth>3</depth></size>\(objects)</annotation>".utf8)
    }

    static func object(_ name: String, _ box: [String], difficult: String = "0") -> String {
        "<object><name>\(name)</name><difficult>\(difficult)</difficult><bndbox><xmin>\(box[0])</xmin><ymin>\(box[1])</ymin><xmax>\(box[2])</xmax><ymax>\(box[3])</ymax></bndbox></object>"
    }

    /// Boxes become 0-based; names are matched lower-cased; difficult is read.
    func testParseAnnotation() throws {
        let a = try VOC.parseAnnotation(data: Self.xml(Self.object(" Dog", ["1", "2", "50", "80"], difficult: "1") + Self.object("cat", ["10", "10", "100", "20"])), path: "a.xml")
        XCTAssertEqual(a.width, 100)
        XCTAssertEqual(a.objects.count, 2)
        XCTAssertEqual(a.objects[0].box, [0, 1, 49, 79])
        XCTAssertTrue(a.objects[0].difficult)
        let set = try a.objectSet(labelMap: .voc, path: "a.xml")
        XCTAssertEqual(set.labels, [12, 8])  // dog, cat in the reference label map
        XCTAssertEqual(set.difficulties, [1, 0])
        XCTAssertEqual(LabelMap.voc.dictionary.count, 21)
        XCTAssertEqual(LabelMap.voc.label(of: "aeroplane"), 1)
        XCTAssertEqual(LabelMap.voc.label(of: "tvmonitor"), 20)
    }

    /// Each kind of bad annotation names the file and the field.
    func testBadAnnotations() throws {
        let cases: [(Data, String)] = [
            (Self.xml("<object><name>dog</name></object>"), "object[0].bndbox"),
            (Self.xml(Self.object("dog", ["1", "2", "abc", "8"])), "object[0].bndbox.xmax"),
            (Self.xml(Self.object("dog", ["1", "2", "3", "4"]) + "<object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object>"), "object[1].bndbox.ymin"),
            (Self.xml(Self.object("dog", ["50", "2", "10", "8"])), "object[0].bndbox"),
            (Self.xml(Self.object("dog", ["5", "2", "5", "8"])), "object[0].bndbox"),
            (Self.xml(Self.object("dog", ["5", "2", "150", "8"])), "object[0].bndbox"),
            (Self.xml(Self.object("dog", ["0", "2", "15", "8"])), "object[0].bndbox"),
            (Self.xml("<object><bndbox/></object>"), "object[0].name"),
            (Data("this is not XML".utf8), "(document)"),
        ]
        for (data, field) in cases {
            XCTAssertThrowsError(try VOC.parseAnnotation(data: data, path: "bad.xml")) { error in
                guard case let DataError.badAnnotation(path, f, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(path, "bad.xml")
                XCTAssertEqual(f, field)
            }
        }
        let unknown = try VOC.parseAnnotation(data: Self.xml(Self.object("unicorn", ["1", "1", "5", "5"])), path: "u.xml")
        XCTAssertThrowsError(try unknown.objectSet(labelMap: .voc, path: "u.xml")) { error in
            XCTAssertEqual(error as? DataError, .unknownClass(path: "u.xml", field: "object[0].name", name: "unicorn"))
        }
    }

    /// The synthetic set builds into lists (VOC classes replaced by the gathered ones), which
    /// survive a JSON round trip; a bad annotation, a missing image, an empty training image
    /// and an unknown class are each skipped with a reason (or thrown with `strict`).
    func testListsFromSyntheticSetRoundTrip() throws {
        let root = try temporaryFolder("voc")
        defer { try? FileManager.default.removeItem(at: root) }
        var options = SyntheticVOC.Options()
        options.trainCount = 12
        options.testCount = 4
        let ids = try SyntheticVOC.generate(at: root, options: options)
        XCTAssertEqual(ids.train.count, 12)

        let report = try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes))
        XCTAssertEqual(report.skipped, [])
        XCTAssertEqual(report.train.images.count, 12)
        XCTAssertEqual(report.test.images.count, 4)
        XCTAssert(report.train.objects.allSatisfy { (1...3).contains($0.count) && $0.labels.allSatisfy { (1...6).contains($0) } })
        // Objects span 25–70% of the image's shorter side (their longer side) and lie inside it.
        for (path, set) in zip(report.train.images + report.test.images, report.train.objects + report.test.objects) {
            let image = try ImageCodec.load(URL(fileURLWithPath: path))
            for i in 0..<set.count {
                let b = Array(set.boxes[(4 * i)..<(4 * i + 4)])
                let longer = max(b[2] - b[0], b[3] - b[1]) + 1, side = Float(min(image.width, image.height))
                XCTAssert(longer >= 0.25 * side - 1 && longer <= 0.70 * side + 1, "\(path): object \(b) in \(image.width)×\(image.height)")
                XCTAssert(b[0] >= 0 && b[1] >= 0 && b[2] <= Float(image.width - 1) && b[3] <= Float(image.height - 1))
            }
        }
        let gathered = try DataLists.build(trainRoots: [root], testRoots: [root], classes: .gathered)
        XCTAssertEqual(gathered.labelMap.classes, Set(report.train.objects.flatMap { $0.labels }.map { SyntheticVOC.classes[$0 - 1] }
            + report.test.objects.flatMap { $0.labels }.map { SyntheticVOC.classes[$0 - 1] }).sorted())

        let out = root.appendingPathComponent("lists")
        try DataLists.write(report, to: out)
        XCTAssertEqual(try DataLists.read(split: .train, from: out), report.train)
        XCTAssertEqual(try DataLists.read(split: .test, from: out), report.test)
        XCTAssertEqual(try DataLists.readLabelMap(out.appendingPathComponent("label_map.json")), report.labelMap)

        // Break things: an unknown class, a bad box, a missing image, an image without objects.
        // (Each annotation keeps its image's size: a different <size> is a problem of its own.)
        let annotations = root.appendingPathComponent("Annotations")
        func xml(_ id: String, _ objects: String) throws -> Data {
            let size = try ImageCodec.inspect(root.appendingPathComponent("JPEGImages/\(id).jpg"))
            return Self.xml(objects, width: size.width, height: size.height)
        }
        try xml("000001", Self.object("unicorn", ["1", "1", "5", "5"])).write(to: annotations.appendingPathComponent("000001.xml"))
        try xml("000002", Self.object("circle", ["1", "x", "5", "5"])).write(to: annotations.appendingPathComponent("000002.xml"))
        try FileManager.default.removeItem(at: root.appendingPathComponent("JPEGImages/000003.jpg"))
        try xml("000004", "").write(to: annotations.appendingPathComponent("000004.xml"))
        var heard: [SkippedItem] = []
        let lenient = try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes),
                                          onSkip: { heard.append($0) })
        XCTAssertEqual(lenient.skipped.count, 3, "\(lenient.skipped)")
        XCTAssertEqual(heard, lenient.skipped, "every skipped image is reported as it happens")
        // The image without objects stays: it is a negative.
        XCTAssertEqual(lenient.train.images.count, 9)
        XCTAssertEqual(lenient.train.objects.filter { $0.count == 0 }.count, 1)
        XCTAssert(lenient.skipped.contains { $0.reason.contains("unicorn") })
        XCTAssert(lenient.skipped.contains { $0.reason.contains("bndbox.ymin") })
        XCTAssert(lenient.skipped.contains { $0.category == "missing image" && $0.reason.contains("tried 000003.jpg, 000003.jpeg, 000003.png (any case)") },
                  "\(lenient.skipped)")
        XCTAssertThrowsError(try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes), strict: true))

        // An empty split file is an error naming it.
        let split = root.appendingPathComponent("ImageSets/Main/test.txt")
        try Data("\n".utf8).write(to: split)
        XCTAssertThrowsError(try DataLists.build(trainRoots: [root], testRoots: [root])) { error in
            XCTAssertEqual(error as? DataError, .emptySplit(path: split.path))
        }
    }

    /// Lists as the reference's `json.dump` writes them load here; malformed ones are errors.
    func testReadsReferenceFormat() throws {
        let folder = try temporaryFolder("lists")
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(#"["/data/VOC2007/JPEGImages/000005.jpg", "/data/VOC2007/JPEGImages/000007.jpg"]"#.utf8)
            .write(to: folder.appendingPathComponent("TRAIN_images.json"))
        try Data(#"[{"boxes": [[262, 210, 323, 338], [164, 263, 252, 371]], "labels": [9, 9], "difficulties": [0, 1]}, {"boxes": [[140, 49, 499, 329]], "labels": [7], "difficulties": [0]}]"#.utf8)
            .write(to: folder.appendingPathComponent("TRAIN_objects.json"))
        try Data(#"{"aeroplane": 1, "bicycle": 2, "bird": 3, "boat": 4, "bottle": 5, "bus": 6, "car": 7, "cat": 8, "chair": 9, "cow": 10, "diningtable": 11, "dog": 12, "horse": 13, "motorbike": 14, "person": 15, "pottedplant": 16, "sheep": 17, "sofa": 18, "train": 19, "tvmonitor": 20, "background": 0}"#.utf8)
            .write(to: folder.appendingPathComponent("label_map.json"))
        let list = try DataLists.read(split: .train, from: folder)
        XCTAssertEqual(list.images.count, 2)
        XCTAssertEqual(list.objects[0], ObjectSet(boxes: [262, 210, 323, 338, 164, 263, 252, 371], labels: [9, 9], difficulties: [0, 1]))
        XCTAssertEqual(try DataLists.readLabelMap(folder.appendingPathComponent("label_map.json")), .voc)

        let copy = folder.appendingPathComponent("copy")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        try DataLists.write(list, split: .test, to: copy)
        let text = String(decoding: try Data(contentsOf: copy.appendingPathComponent("TEST_objects.json")), as: UTF8.self)
        XCTAssert(text.contains("[262,210,323,338]"), "integral boxes are written as integers: \(text)")
        XCTAssertEqual(try DataLists.read(split: .test, from: copy), list)

        try Data(#"[{"boxes": [[1, 2, 3]], "labels": [1], "difficulties": [0]}, {}]"#.utf8).write(to: folder.appendingPathComponent("TRAIN_objects.json"))
        XCTAssertThrowsError(try DataLists.read(split: .train, from: folder)) { error in
            guard case let DataError.badList(_, field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "[0].boxes[0]")
        }
    }
}
