import Foundation
import SSDData
import SSDBoxes
import XCTest

/// VOC images by any extension or `<filename>`, COCO and Create ML files, the synthetic set in
/// every format, and COCO results.
final class DataFormatTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = try temporaryFolder("formats") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func writeJSON(_ object: Any, _ name: String) throws -> URL {
        let url = root.appendingPathComponent(name)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
        return url
    }

    func image(_ name: String, width: Int = 64, height: Int = 48) throws {
        let url = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try ImageCodec.save(RGBImage(width: width, height: height), to: url)
    }

    /// A VOC image is found by id with any supported extension in any case, or by `<filename>`;
    /// when nothing is found, the error says what was tried and names a file of a format we
    /// do not read.
    func testVOCImageLookup() throws {
        try image("JPEGImages/a.PNG")
        try image("JPEGImages/photo-b.png")
        try Data("not read".utf8).write(to: root.appendingPathComponent("JPEGImages/c.tif"))
        let folder = ImageFolder(root.appendingPathComponent("JPEGImages"))
        XCTAssertEqual(try VOC.findImage(identifier: "a", filename: "a.tif", in: folder, annotationPath: "a.xml").lastPathComponent, "a.PNG")
        XCTAssertEqual(try VOC.findImage(identifier: "b", filename: "photo-b.png", in: folder, annotationPath: "b.xml").lastPathComponent,
                       "photo-b.png")
        // <filename> names a .tif that is not there; its stem with .png is.
        XCTAssertEqual(try VOC.findImage(identifier: "b", filename: "photo-b.tif", in: folder, annotationPath: "b.xml").lastPathComponent,
                       "photo-b.png")
        XCTAssertThrowsError(try VOC.findImage(identifier: "c", filename: "c.tif", in: folder, annotationPath: "c.xml")) { error in
            guard case let .missingImage(path, reason) = error as? DataError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "c.xml")
            XCTAssert(reason.contains("tried c.jpg, c.jpeg, c.png (any case)"), reason)
            XCTAssert(reason.contains("found c.tif, but only JPEG and PNG"), reason)
        }
        let missing = ImageFolder(root.appendingPathComponent("nowhere"))
        XCTAssertThrowsError(try VOC.findImage(identifier: "a", filename: nil, in: missing, annotationPath: "a.xml")) { error in
            XCTAssert("\(error)".contains("which does not exist"), "\(error)")
        }
    }

    /// COCO: xywh → corners, categories in file order with their names, crowd → difficult,
    /// images without annotations kept, unusable boxes left out (reported), near-edge boxes clipped.
    func testCOCORead() throws {
        try image("images/one.jpg", width: 100, height: 80)
        try image("images/two.png", width: 50, height: 40)
        let file = try writeJSON([
            "categories": [["id": 7, "name": "Dog"], ["id": 3, "name": "cat"]],
            "images": [["id": 11, "file_name": "images/one.jpg", "width": 100, "height": 80],
                       ["id": 12, "file_name": "images/two.png", "width": 50, "height": 40]],
            "annotations": [["image_id": 11, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0],
                            ["image_id": 11, "category_id": 7, "bbox": [0, 0, 100.5, 80], "iscrowd": 1],
                            ["image_id": 11, "category_id": 7, "bbox": [5, 5, 0, 10]],
                            ["image_id": 11, "category_id": 3, "bbox": [90, 70, 20, 20]]],
        ] as [String: Any], "train.json")
        var heard: [SkippedItem] = []
        let report = try DataLists.build(coco: AnnotatedFolder(annotations: file, images: root), test: nil, onSkip: { heard.append($0) })
        XCTAssertEqual(report.labelMap.classes, ["dog", "cat"])
        XCTAssertEqual(report.categoryIDs, [7, 3])
        XCTAssertFalse(report.hasTest)
        XCTAssertEqual(report.train.images.map { URL(fileURLWithPath: $0).lastPathComponent }, ["one.jpg", "two.png"])
        XCTAssertEqual(report.train.sourceIDs, [11, 12])
        XCTAssertEqual(report.train.objects[0].boxes, [10, 20, 40, 60, 0, 0, 100, 80])
        XCTAssertEqual(report.train.objects[0].labels, [2, 1])
        XCTAssertEqual(report.train.objects[0].difficulties, [0, 1])
        XCTAssertEqual(report.train.objects[1].count, 0, "an image without annotations is a negative, kept")
        XCTAssertEqual(report.skipped.map(\.category), ["zero-area box", "box outside the image"])
        XCTAssertEqual(report.skipped.map(\.scope), [.object, .object])
        XCTAssert(report.skipped[0].description.contains("annotations[2].bbox"), report.skipped[0].description)
        XCTAssertEqual(heard, report.skipped)
        XCTAssertThrowsError(try DataLists.build(coco: AnnotatedFolder(annotations: file, images: root), test: nil, strict: true))

        let out = root.appendingPathComponent("lists")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try DataLists.write(report, to: out)
        XCTAssertEqual(DataLists.fileNames(for: report), ["TRAIN_images.json", "TRAIN_objects.json", "label_map.json", "source_ids.json"])
        let ids = try XCTUnwrap(try SourceIdentifiers.read(from: out))
        XCTAssertEqual(ids.categoryIDs, [7, 3])
        XCTAssertEqual(ids.imageIDs[.train], [11, 12])
        XCTAssertNil(ids.imageIDs[.test])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("TEST_images.json").path))
    }

    /// A malformed COCO file is an error naming the file, the entry and the field.
    func testCOCOErrorsNameFileEntryAndField() throws {
        try image("a.jpg", width: 100, height: 80)
        let category = ["id": 1, "name": "dog"] as [String: Any]
        let good = ["id": 1, "file_name": "a.jpg", "width": 100, "height": 80] as [String: Any]
        func fails(_ document: Any, _ needles: [String], line: UInt = #line) throws {
            let file = try writeJSON(document, "bad.json")
            XCTAssertThrowsError(try DataLists.build(coco: AnnotatedFolder(annotations: file, images: root), test: nil), line: line) { error in
                let message = "\(error)"
                for needle in [file.path] + needles { XCTAssert(message.contains(needle), "\(message) lacks \(needle)", line: line) }
            }
        }
        try Data("{\"images\": [".utf8).write(to: root.appendingPathComponent("broken.json"))
        XCTAssertThrowsError(try DataLists.build(coco: AnnotatedFolder(annotations: root.appendingPathComponent("broken.json"), images: root), test: nil)) {
            XCTAssert("\($0)".contains("broken.json: (document): not valid JSON"), "\($0)")
        }
        try fails(["images": [good], "annotations": []], ["categories", "missing"])
        try fails(["images": [good], "annotations": [["image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]]], "categories": [category]],
                  ["annotations[0].category_id", "no category has id 9"])
        try fails(["images": [good], "annotations": [["image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]]], "categories": [category]],
                  ["annotations[0].image_id", "no image has id 5"])
        try fails(["images": [good], "annotations": [["image_id": 1, "category_id": 1, "bbox": [1, 1, -2, 2]]], "categories": [category]],
                  ["annotations[0].bbox", "negative width or height"])
        try fails(["images": [good], "annotations": [["image_id": 1, "category_id": 1, "bbox": [1, 1, 2]]], "categories": [category]],
                  ["annotations[0].bbox", "expected 4 numbers"])
        try fails(["images": [good], "annotations": [["image_id": 1, "category_id": 1, "bbox": [1, "1", 2, 2]]], "categories": [category]],
                  ["annotations[0].bbox[1]", "expected a number, got a string"])
        try fails(["images": [["id": 1, "file_name": "a.jpg", "width": -100, "height": 80]], "annotations": [], "categories": [category]],
                  ["images[0].width", "expected a size in pixels"])
        try fails(["images": [["id": 1, "file_name": "gone.jpg", "width": 100, "height": 80]], "annotations": [], "categories": [category]],
                  ["images[0].file_name", "no such file"])
        try fails(["images": [good, good], "annotations": [], "categories": [category]], ["images[1].id", "also images[0]"])
        try fails(["images": [good], "annotations": [], "categories": [category, ["id": 1, "name": "cat"]]], ["categories[1].id"])
        try fails(["images": [good], "annotations": [["image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "iscrowd": true]],
                   "categories": [category]], ["annotations[0].iscrowd", "a boolean"])
        try fails([1, 2], ["(document)", "expected an object"])
    }

    /// Create ML: centre-anchored boxes become corners; labels gathered; negatives kept; bad
    /// entries are errors naming the entry and field.
    func testCreateMLRead() throws {
        try image("a.jpg", width: 100, height: 80)
        try image("b.jpg", width: 100, height: 80)
        let file = try writeJSON([
            ["image": "a.jpg", "annotations": [["label": "Zebra", "coordinates": ["x": 50, "y": 40, "width": 20, "height": 10]],
                                               ["label": "ant", "coordinates": ["x": 10, "y": 10, "width": 0, "height": 5]]]],
            ["image": "b.jpg", "annotations": []],
            ["image": "a.jpg", "annotations": []],
        ], "annotations.json")
        let report = try DataLists.build(createML: AnnotatedFolder(annotations: file, images: root), test: nil)
        XCTAssertEqual(report.labelMap.classes, ["zebra"], "the zero-area ant is left out before classes are gathered")
        XCTAssertEqual(report.train.objects[0].boxes, [40, 35, 60, 45])
        XCTAssertEqual(report.train.objects[1].count, 0)
        XCTAssertEqual(report.train.images.count, 2)
        XCTAssertEqual(Set(report.skipped.map(\.category)), ["zero-area box", "duplicate image"])
        XCTAssertNil(report.categoryIDs)

        func fails(_ document: Any, _ needles: [String], line: UInt = #line) throws {
            let bad = try writeJSON(document, "bad.json")
            XCTAssertThrowsError(try DataLists.build(createML: AnnotatedFolder(annotations: bad, images: root), test: nil), line: line) { error in
                for needle in [bad.path] + needles { XCTAssert("\(error)".contains(needle), "\(error) lacks \(needle)", line: line) }
            }
        }
        try fails(["image": "a.jpg"], ["(document)", "expected a list"])
        try fails([["image": "gone.jpg", "annotations": []]], ["[0].image", "no such file"])
        try fails([["image": "a.jpg"]], ["[0].annotations", "missing"])
        try fails([["image": "a.jpg", "annotations": [["label": "x", "coordinates": ["x": 1, "y": 1, "width": -3, "height": 2]]]]],
                  ["[0].annotations[0].coordinates.width", "negative"])
        try fails([["image": "a.jpg", "annotations": [["coordinates": ["x": 1, "y": 1, "width": 3, "height": 2]]]]],
                  ["[0].annotations[0].label", "missing"])
    }

    /// The synthetic set in all four formats gives the same images and objects: COCO and
    /// Create ML exactly, VOC with its 1-based inclusive corners one pixel in at the far edges.
    func testSyntheticFormatsAgree() throws {
        var reports: [SyntheticFormat: DataListsReport] = [:]
        for format in SyntheticFormat.allCases {
            var options = SyntheticVOC.Options()
            options.trainCount = 5
            options.testCount = 3
            options.widths = 64...80
            options.heights = 48...60
            options.negativeEvery = 4
            options.format = format
            let folder = root.appendingPathComponent(format.rawValue)
            try SyntheticVOC.generate(at: folder, options: options)
            switch format {
            case .voc, .vocPNG:
                reports[format] = try DataLists.build(trainRoots: [folder], testRoots: [folder], classes: .given(SyntheticVOC.classes))
            case .coco:
                reports[format] = try DataLists.build(coco: AnnotatedFolder(annotations: folder.appendingPathComponent("train.json"), images: folder),
                                                      test: AnnotatedFolder(annotations: folder.appendingPathComponent("test.json"), images: folder))
            case .createML:
                reports[format] = try DataLists.build(
                    createML: AnnotatedFolder(annotations: folder.appendingPathComponent("train/annotations.json"), images: folder.appendingPathComponent("train")),
                    test: AnnotatedFolder(annotations: folder.appendingPathComponent("test/annotations.json"), images: folder.appendingPathComponent("test")),
                    classes: .given(SyntheticVOC.classes))
            }
            XCTAssertEqual(reports[format]!.skipped, [], "\(format)")
        }
        let coco = reports[.coco]!, createML = reports[.createML]!, voc = reports[.voc]!, png = reports[.vocPNG]!
        XCTAssertEqual(coco.labelMap.classes, SyntheticVOC.classes)
        XCTAssertEqual(coco.train.objects, createML.train.objects)
        XCTAssertEqual(coco.test.objects, createML.test.objects)
        XCTAssertEqual(voc.train.objects, png.train.objects)
        XCTAssert(png.train.images.allSatisfy { $0.hasSuffix(".png") })
        XCTAssertEqual(coco.train.objects.filter { $0.count == 0 }.count, 1, "image 4 is a negative")
        for (a, b) in zip(voc.train.objects + voc.test.objects, coco.train.objects + coco.test.objects) {
            XCTAssertEqual(a.labels, b.labels)
            XCTAssertEqual(a.boxes.enumerated().map { $0.offset % 4 >= 2 ? $0.element + 1 : $0.element }, b.boxes)
        }
    }

    /// COCO results: pixel corners → [x, y, w, h], labels → category ids, placeholders dropped.
    func testCOCOResults() throws {
        let detections = [[Detection(box: Box(10, 20, 40, 60), label: 2, score: 0.5)],
                          [Detection(box: Box(0, 0, 1, 1), label: 0, score: 0)]]
        let data = try COCO.results(detections, imageIDs: [11, 12], categoryIDs: [7, 3])
        let records = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        XCTAssertEqual(records.count, 1)
        XCTAssertEqual(records[0]["image_id"] as? Int, 11)
        XCTAssertEqual(records[0]["category_id"] as? Int, 3)
        XCTAssertEqual(records[0]["bbox"] as? [Double], [10, 20, 30, 40])
        XCTAssertEqual(records[0]["score"] as? Double, 0.5)
        XCTAssertThrowsError(try COCO.results(detections, imageIDs: [1], categoryIDs: [7, 3]))
        XCTAssertThrowsError(try COCO.results([[Detection(box: Box(0, 0, 1, 1), label: 3, score: 1)]], imageIDs: [1], categoryIDs: [7, 3]))
    }
}
