import Foundation
import SSDData
import XCTest

/// The four inputs — VOC with JPEG, VOC with PNG, COCO, Create ML — through the same commands
/// as a user runs them: `ssd synthesize`, `create-data-lists`, `train`, `eval`, `detect`.
final class DataFormatCommandTests: BinaryTestCase {
    /// `ssd synthesize --format FORMAT` into `folder/FORMAT` (with negatives), then its lists.
    func lists(_ format: String, in folder: URL) throws -> URL {
        let set = folder.appendingPathComponent(format), lists = folder.appendingPathComponent("lists-\(format)")
        let made = try ssd(["synthesize", "--format", format, "--output", set.path, "--train-images", "6", "--test-images", "4",
                            "--negative-every", "3"])
        XCTAssertEqual(made.status, 0, made.all)
        let source: [String]
        switch format {
        case "coco": source = ["--coco", set.appendingPathComponent("train.json").path, "--coco-test", set.appendingPathComponent("test.json").path]
        case "createml":
            source = ["--createml", set.appendingPathComponent("train/annotations.json").path,
                      "--createml-test", set.appendingPathComponent("test/annotations.json").path,
                      "--classes", SyntheticVOC.classes.joined(separator: ",")]
        default: source = ["--voc07", set.path, "--classes", SyntheticVOC.classes.joined(separator: ",")]
        }
        let listed = try ssd(["create-data-lists", "--output", lists.path] + source)
        XCTAssertEqual(listed.status, 0, listed.all)
        XCTAssert(listed.output.contains("training: 6 images") && listed.output.contains("(2 without objects)"), listed.all)
        XCTAssert(listed.output.contains("test: 4 images"), listed.all)
        return lists
    }

    /// Every format trains and evaluates through the same commands; images without objects
    /// are kept and handled. COCO-sourced lists also give COCO results from eval and detect.
    func testEveryFormatTrainsAndEvaluates() throws {
        let folder = try scratch()
        for format in ["voc", "voc-png", "coco", "createml"] {
            let lists = try lists(format, in: folder)
            let run = folder.appendingPathComponent("run-\(format)")
            let trained = try ssd(["train", "--model", "compact", "--data", lists.path, "--output", run.path, "--iterations", "3",
                                   "--batch-size", "3", "--augmentation", "flip"])
            XCTAssertEqual(trained.status, 0, "\(format): \(trained.all)")
            let weights = run.appendingPathComponent("checkpoint.safetensors").path
            var evaluate = ["eval", "--weights", weights, "--data", lists.path, "--metric", "coco", "--json", folder.appendingPathComponent("\(format).json").path]
            if format == "coco" { evaluate += ["--coco-results", folder.appendingPathComponent("results.json").path] }
            let evaluated = try ssd(evaluate)
            XCTAssertEqual(evaluated.status, 0, "\(format): \(evaluated.all)")
            XCTAssert(evaluated.output.contains("mAP"), evaluated.all)
        }
        // COCO results name COCO's image and category ids, boxes [x, y, w, h] within the images.
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("results.json"))) as? [[String: Any]])
        XCTAssertFalse(results.isEmpty)
        let test = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("coco/test.json"))) as? [String: Any])
        let imageIDs = Set((test["images"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int })
        XCTAssertEqual(Set(results.compactMap { $0["image_id"] as? Int }).subtracting(imageIDs), [])
        XCTAssert(results.allSatisfy { (1...6).contains($0["category_id"] as? Int ?? 0) && ($0["bbox"] as? [Double])?.count == 4 })

        // detect --coco-results: ids by file name from the annotation file.
        let photos = ["000008.jpg", "000009.jpg"].map { folder.appendingPathComponent("coco/images/\($0)").path }
        let detected = try ssd(["detect"] + photos + ["--weights", folder.appendingPathComponent("run-coco/checkpoint.safetensors").path,
                                                       "--coco", folder.appendingPathComponent("coco/test.json").path,
                                                       "--coco-results", folder.appendingPathComponent("detect.json").path, "--min-score", "0.01"])
        XCTAssertEqual(detected.status, 0, detected.all)
        let detections = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("detect.json"))) as? [[String: Any]])
        XCTAssertEqual(Set(detections.compactMap { $0["image_id"] as? Int }), [2, 3], "test images 000008, 000009 are ids 2 and 3")

        // A VOC set's lists have no COCO ids: --coco-results says what it needs.
        let refused = try ssd(["eval", "--weights", folder.appendingPathComponent("run-voc/checkpoint.safetensors").path,
                               "--data", folder.appendingPathComponent("lists-voc").path,
                               "--coco-results", folder.appendingPathComponent("voc-results.json").path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(refused.all.contains("source_ids.json"), refused.all)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("voc-results.json").path))
    }

    /// The case: a VOC set made by another tool, PNG images, `<filename>` naming a .tif
    /// that is not there. The PNGs are found; a missing image is printed with what was tried.
    func testVOCWithPNGAndForeignFilenames() throws {
        let folder = try scratch()
        let voc = folder.appendingPathComponent("trees")
        let made = try ssd(["synthesize", "--format", "voc-png", "--output", voc.path, "--train-images", "4", "--test-images", "2"])
        XCTAssertEqual(made.status, 0, made.all)
        let annotations = voc.appendingPathComponent("Annotations")
        for name in try FileManager.default.contentsOfDirectory(atPath: annotations.path) {
            let url = annotations.appendingPathComponent(name)
            let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: ".png</filename>", with: ".tif</filename>")
            try Data(text.utf8).write(to: url)
        }
        try FileManager.default.removeItem(at: voc.appendingPathComponent("JPEGImages/000002.png"))
        let lists = folder.appendingPathComponent("lists")
        let listed = try ssd(["create-data-lists", "--voc07", voc.path, "--gather-classes", "--output", lists.path])
        XCTAssertEqual(listed.status, 0, listed.all)
        XCTAssert(listed.output.contains("training: 3 images"), listed.all)
        XCTAssert(listed.error.contains("000002.xml: no image: tried 000002.jpg, 000002.jpeg, 000002.png (any case)"), listed.error)
        XCTAssert(listed.error.contains("<filename> 000002.tif is neither"), listed.error)
        XCTAssert(listed.output.contains("skipped: 1 images"), listed.all)

        // Lists already there are replaced only when asked.
        let again = try ssd(["create-data-lists", "--voc07", voc.path, "--gather-classes", "--output", lists.path])
        XCTAssertNotEqual(again.status, 0)
        XCTAssert(again.all.contains("--overwrite"), again.all)
        XCTAssertEqual(try ssd(["create-data-lists", "--voc07", voc.path, "--gather-classes", "--output", lists.path, "--overwrite"]).status, 0)

        // A set left with nothing says why, after printing every skipped image.
        for name in try FileManager.default.contentsOfDirectory(atPath: voc.appendingPathComponent("JPEGImages").path) {
            try FileManager.default.removeItem(at: voc.appendingPathComponent("JPEGImages/\(name)"))
        }
        let empty = try ssd(["create-data-lists", "--voc07", voc.path, "--gather-classes", "--output", folder.appendingPathComponent("none").path])
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertEqual(empty.error.components(separatedBy: "skipped ").count - 1, 6, empty.error)
        XCTAssert(empty.error.contains("6 missing image"), empty.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("none/label_map.json").path))
    }

    /// A malformed COCO file: one line naming the file, the entry and the field; nothing written.
    func testMalformedCOCOWritesNothing() throws {
        let folder = try scratch()
        let set = folder.appendingPathComponent("coco")
        XCTAssertEqual(try ssd(["synthesize", "--format", "coco", "--output", set.path, "--train-images", "3", "--test-images", "1"]).status, 0)
        let train = set.appendingPathComponent("train.json")
        var document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: train)) as? [String: Any])
        var annotations = try XCTUnwrap(document["annotations"] as? [[String: Any]])
        annotations[1]["category_id"] = 42
        document["annotations"] = annotations
        try JSONSerialization.data(withJSONObject: document).write(to: train)
        let lists = folder.appendingPathComponent("lists")
        let failed = try ssd(["create-data-lists", "--coco", train.path, "--coco-test", set.appendingPathComponent("test.json").path,
                              "--output", lists.path])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssert(failed.error.contains("\(train.path): annotations[1].category_id: no category has id 42"), failed.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lists.path))
    }
}
