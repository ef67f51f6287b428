import Foundation
import SSDData
import XCTest

/// Hostile and careless input to the data module (issue 10): ill-formed XML, odd numbers,
/// non-regular and oversized files, images that lie about their size, lists with absurd objects.
final class HostileInputTests: XCTestCase {
    let good = """
        <annotation>
        \t<size><width>100</width><height>80</height><depth>3</depth></size>
        \t<object>
        \t\t<name>dog</name>
        \t\t<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>50</xmax><ymax>70</ymax></bndbox>
        \t</object>
        \t<object>
        \t\t<name>cat</name>
        \t\t<bndbox><xmin>10</xmin><ymin>20</ymin><xmax>60</xmax><ymax>75</ymax></bndbox>
        \t</object>
        </annotation>

        """

    /// The `(document)` error of `xml`, or a failure if it parses.
    func documentError(_ xml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let a = try VOC.parseAnnotation(data: Data(xml.utf8), path: "a.xml")
            XCTFail("parsed, with \(a.objects.count) objects", file: file, line: line)
            return ""
        } catch let DataError.badAnnotation(path, field, reason) {
            XCTAssertEqual(path, "a.xml", file: file, line: line)
            XCTAssertEqual(field, "(document)", file: file, line: line)
            return reason
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return ""
        }
    }

    func fieldError(_ xml: String, file: StaticString = #filePath, line: UInt = #line) -> (field: String, reason: String) {
        do {
            _ = try VOC.parseAnnotation(data: Data(xml.utf8), path: "a.xml")
            XCTFail("parsed", file: file, line: line)
        } catch let DataError.badAnnotation(_, field, reason) {
            return (field, reason)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
        return ("", "")
    }

    func testWellFormedAnnotationParses() throws {
        let a = try VOC.parseAnnotation(data: Data(good.utf8), path: "a.xml")
        XCTAssertEqual(a.objects.map(\.name), ["dog", "cat"])
        XCTAssertEqual(a.width, 100)
        // Comments, a declaration, CDATA and predefined entities are fine.
        let decorated = "<?xml version=\"1.0\"?>\n<!-- made by hand -->\n"
            + good.replacingOccurrences(of: "<name>cat</name>", with: "<name><![CDATA[cat]]></name><pose>a &amp; b</pose>") + "<!-- end -->\n"
        XCTAssertEqual(try VOC.parseAnnotation(data: Data(decorated.utf8), path: "a.xml").objects.map(\.name), ["dog", "cat"])
    }

    /// Foundation's XMLParser dereferenced NULL on a processing instruction without data (found
    /// by fuzzing): libxml2 read directly takes it as the harmless instruction it is.
    func testProcessingInstructionsWithoutDataDoNotCrash() throws {
        for pi in ["<?pi?>", "<?x ?>", "<?a-b\n?>"] {
            let xml = good.replacingOccurrences(of: "<name>dog</name>", with: "\(pi)<name>dog</name>\(pi)")
            XCTAssertEqual(try VOC.parseAnnotation(data: Data(xml.utf8), path: "a.xml").objects.map(\.name), ["dog", "cat"])
        }
    }

    /// The inputs on which Foundation's XMLParser trapped (fuzz/regressions/voc/): each is now
    /// an error or a parse, never a crash.
    func testFuzzRegressionsParseOrFailCleanly() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz/regressions/voc")
        let inputs = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
        XCTAssertFalse(inputs.isEmpty)
        for input in inputs {
            do { _ = try VOC.parseAnnotation(input) } catch let error as DataError {
                XCTAssertTrue(error.description.contains(input.path), "\(error)")
            }
        }
    }

    /// libxml2 (under Foundation) recovered from these and `parse()` returned true: objects vanished.
    func testIllFormedXMLIsAnErrorWithTheLine() {
        let noObjectEnd = documentError(good.replacingOccurrences(of: "</object>", with: ""))
        XCTAssert(noObjectEnd.hasPrefix("line 11:") && noObjectEnd.contains("<object> (line 7)"), noObjectEnd)
        let noSizeEnd = documentError(good.replacingOccurrences(of: "</size>", with: ""))
        XCTAssert(noSizeEnd.contains("<size> (line 2)"), noSizeEnd)
        let noRootEnd = documentError(good.replacingOccurrences(of: "</annotation>", with: ""))
        XCTAssert(noRootEnd.contains("<annotation> (line 1) is still open"), noRootEnd)
        let misspelt = documentError(good.replacingOccurrences(of: "</name>", with: "</nmae>"))
        XCTAssert(misspelt.hasPrefix("line 4:") && misspelt.contains("<name>"), misspelt)
        let trailing = documentError(good + "garbage<x/>")
        XCTAssert(trailing.contains("after the end of the root element"), trailing)
        let secondRoot = documentError(good + "<annotation></annotation>")
        XCTAssert(secondRoot.contains("one root"), secondRoot)
        let leading = documentError("garbage" + good)
        XCTAssert(leading.hasPrefix("line 1:"), leading)
        let unescaped = documentError(good.replacingOccurrences(of: "<name>dog</name>", with: "<name>a < b</name>"))
        XCTAssert(unescaped.hasPrefix("line 4:"), unescaped)
        XCTAssertEqual(documentError(""), "line 1: the file is empty")
        for reason in [noObjectEnd, noSizeEnd, noRootEnd, misspelt, trailing, secondRoot, leading, unescaped] {
            XCTAssertFalse(reason.contains("NSXMLParserErrorDomain") || reason.contains("error "), reason)
        }
    }

    /// External entities are never read; entity bombs are refused (as before the rewrite).
    func testEntityAttacksAreRefused() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-secret-\(UUID().uuidString)")
        try Data("unicorn".utf8).write(to: secret)
        defer { try? FileManager.default.removeItem(at: secret) }
        let xxe = "<?xml version=\"1.0\"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM \"file://\(secret.path)\">]>\n"
            + good.replacingOccurrences(of: "<name>dog</name>", with: "<name>&xxe;</name>")
        do {
            let a = try VOC.parseAnnotation(data: Data(xxe.utf8), path: "a.xml")
            XCTAssertFalse(a.objects.contains { $0.name.contains("unicorn") }, "the external entity was read")
        } catch let error as DataError {
            XCTAssertFalse(error.description.contains("unicorn"))
        }
        var bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE annotation [\n<!ENTITY l0 \"lol\">\n"
        for i in 1...12 { bomb += "<!ENTITY l\(i) \"" + String(repeating: "&l\(i - 1);", count: 10) + "\">\n" }
        bomb += "]>\n" + good.replacingOccurrences(of: "<name>dog</name>", with: "<name>&l12;</name>")
        let reason = documentError(bomb)
        XCTAssert(reason.contains("entity"), reason)
    }

    func testFieldsGivenTwiceAreErrors() {
        let twoSizes = fieldError(good.replacingOccurrences(of: "<size>", with: "<size><width>7</width>"))
        XCTAssertEqual(twoSizes.field, "size.width")
        XCTAssert(twoSizes.reason.contains("2 times"), twoSizes.reason)
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<name>cat</name>", with: "<name>cat</name><name>dog</name>")).field, "object[1].name")
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<xmin>10</xmin>", with: "<xmin>10</xmin><xmin>11</xmin>")).field,
                       "object[1].bndbox.xmin")
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<object>", with: "<object><difficult>yes</difficult>")).field,
                       "object[0].difficult")
    }

    /// Only plain decimal numbers: `Double("0x10")` is 16, `Double("1e300")`, `inf`, `nan` parse too.
    func testNumbersArePlainDecimal() {
        for text in ["12", "-3", "+4", "12.5", ".5", "5.", "007"] { XCTAssertNotNil(VOC.plainDecimal(text), text) }
        for text in ["0x10", "1e3", "1E3", "inf", "nan", "", "-", ".", "1.2.3", "1-2", "١٢", " 1", "0b1"] {
            XCTAssertNil(VOC.plainDecimal(text), text)
        }
        let hex = fieldError(good.replacingOccurrences(of: "<xmin>1</xmin>", with: "<xmin>0x1</xmin>"))
        XCTAssertEqual(hex.field, "object[0].bndbox.xmin")
        XCTAssert(hex.reason.contains("line 5") && hex.reason.contains("'0x1'"), hex.reason)
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<xmax>60</xmax>", with: "<xmax>1e300</xmax>")).field, "object[1].bndbox.xmax")
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<width>100</width>", with: "<width>100.5</width>")).field, "size.width")
        XCTAssertEqual(fieldError(good.replacingOccurrences(of: "<width>100</width>", with: "<width>0</width>")).field, "size.width")
    }

    // MARK: Files

    func testNonRegularAndOversizedFilesAreRefusedInWords() throws {
        func reason(_ url: URL, limit: Int = 1 << 20) -> String {
            do {
                _ = try readFile(url, limit: limit)
                XCTFail("read \(url.path)")
            } catch let DataError.unreadableFile(path, reason) {
                XCTAssertEqual(path, url.path)
                return reason
            } catch {
                XCTFail("\(error)")
            }
            return ""
        }
        XCTAssertEqual(reason(URL(fileURLWithPath: "/dev/zero")), "not a regular file but a character device")
        let folder = try temporaryFolder("files")
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertEqual(reason(folder), "not a regular file but a folder")
        let fifo = folder.appendingPathComponent("fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertEqual(reason(fifo), "not a regular file but a FIFO")
        XCTAssertEqual(reason(folder.appendingPathComponent("missing")), "no such file")
        let big = folder.appendingPathComponent("big.xml")
        try Data(count: 2048).write(to: big)
        XCTAssert(reason(big, limit: 1024).contains("2048 bytes"))
        XCTAssertEqual(try readFile(big, limit: 2048).count, 2048)

        // Writing where a file is in the way says so, not "error 512".
        let blocker = folder.appendingPathComponent("blocker")
        try Data("x".utf8).write(to: blocker)
        XCTAssertThrowsError(try writeFileAtomically(Data(), to: blocker.appendingPathComponent("sub/out.json"))) { error in
            XCTAssert("\(error)".contains("\(blocker.path) is a file, not a folder"), "\(error)")
        }
        XCTAssertThrowsError(try writeFileAtomically(Data(), to: folder)) { error in
            XCTAssert("\(error)".contains("a folder is in the way"), "\(error)")
        }
        try createFolder(folder.appendingPathComponent("a/b/c"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("a/b/c").path))
    }

    // MARK: Images

    /// A PNG with a valid IHDR declaring `width`×`height` and `dataBytes` bytes of IDAT.
    static func png(width: Int, height: Int, dataBytes: Int) -> Data {
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func crc(_ bytes: [UInt8]) -> Int {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes { c ^= UInt32(b); for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 } }
            return Int(~c)
        }
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] { be32(body.count) + Array(type.utf8) + body + be32(crc(Array(type.utf8) + body)) }
        let idat: [UInt8] = [0x78, 0x01, 0x00, 0x00, 0x04, 0xFF, 0xFB] + [UInt8](repeating: 0, count: dataBytes)
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", be32(width) + be32(height) + [8, 2, 0, 0, 0])
                    + chunk("IDAT", idat))
    }

    func badImageReason(_ data: Data) -> String {
        do {
            _ = try ImageCodec.decode(data, path: "x")
            XCTFail("decoded")
        } catch let DataError.badImage(_, reason) {
            return reason
        } catch {
            XCTFail("\(error)")
        }
        return ""
    }

    func testPixelBudgetAndDataLengthAreCheckedBeforeAllocating() throws {
        XCTAssertGreaterThanOrEqual(ImageCodec.maximumPixels, 100_000_000, "real photographs must fit")
        let huge = badImageReason(Self.png(width: 16384, height: 16384, dataBytes: 1000))
        XCTAssert(huge.contains("16384×16384") && huge.contains("maximumPixels"), huge)
        let short = badImageReason(Self.png(width: 8000, height: 8000, dataBytes: 1000))
        XCTAssert(short.contains("truncated") && short.contains("8000×8000"), short)
        XCTAssert(badImageReason(Self.png(width: 0, height: 10, dataBytes: 10)).contains("PNG header"))

        // A JPEG whose frame header is patched to 20000×20000.
        var jpeg = [UInt8](try ImageCodec.encodeJPEG(RGBImage(width: 16, height: 16, fill: (10, 200, 30))))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 5] = 0x4E; jpeg[sof + 6] = 0x20; jpeg[sof + 7] = 0x4E; jpeg[sof + 8] = 0x20
        let bigJPEG = badImageReason(Data(jpeg))
        XCTAssert(bigJPEG.contains("20000×20000") && bigJPEG.contains("maximumPixels"), bigJPEG)
    }

    func testInspectFindsTruncatedAndFakeImages() throws {
        let folder = try temporaryFolder("images")
        defer { try? FileManager.default.removeItem(at: folder) }
        var image = RGBImage(width: 64, height: 48)
        for i in 0..<image.pixels.count { image.pixels[i] = UInt8(truncatingIfNeeded: i &* 7919 >> 3) }
        let jpeg = folder.appendingPathComponent("a.jpg"), png = folder.appendingPathComponent("a.png")
        try ImageCodec.save(image, to: jpeg)
        try ImageCodec.save(image, to: png)
        XCTAssertTrue(try ImageCodec.inspect(jpeg) == (64, 48))
        XCTAssertTrue(try ImageCodec.inspect(png) == (64, 48))
        for url in [jpeg, png] {
            let bytes = try Data(contentsOf: url)
            try bytes.prefix(bytes.count * 2 / 3).write(to: url)
            XCTAssertThrowsError(try ImageCodec.inspect(url)) { error in
                guard case let DataError.badImage(path, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(path, url.path)
            }
        }
        try Data("GIF89a".utf8).write(to: jpeg)
        XCTAssertThrowsError(try ImageCodec.inspect(jpeg)) { XCTAssert("\($0)".contains("neither a JPEG nor a PNG"), "\($0)") }
        try Data().write(to: jpeg)
        XCTAssertThrowsError(try ImageCodec.inspect(jpeg)) { XCTAssert("\($0)".contains("empty file"), "\($0)") }
    }

    // MARK: Lists

    func testListObjectsAreCheckedWhenRead() throws {
        let folder = try temporaryFolder("lists")
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(#"["/data/a.jpg", "/data/b.jpg"]"#.utf8).write(to: folder.appendingPathComponent("TRAIN_images.json"))
        try Data(#"{"background": 0, "dog": 1, "cat": 2}"#.utf8).write(to: folder.appendingPathComponent("label_map.json"))
        func field(_ objects: String) -> (String, String) {
            do {
                try Data(objects.utf8).write(to: folder.appendingPathComponent("TRAIN_objects.json"))
                _ = try DataLists.read(split: .train, from: folder)
                XCTFail("read \(objects)")
            } catch let DataError.badList(_, field, reason) {
                return (field, reason)
            } catch {
                XCTFail("\(error)")
            }
            return ("", "")
        }
        let ok = #"{"boxes": [[1, 2, 30, 40]], "labels": [2], "difficulties": [0]}"#
        let cases: [(String, String)] = [
            (#"{"boxes": [[1e300, 2, 30, 40]], "labels": [1], "difficulties": [0]}"#, "[1].boxes[0]"),
            (#"{"boxes": [[10, 2, 10, 40]], "labels": [1], "difficulties": [0]}"#, "[1].boxes[0]"),
            (#"{"boxes": [[1, 2, 30, 40]], "labels": [0], "difficulties": [0]}"#, "[1].labels[0]"),
            (#"{"boxes": [[1, 2, 30, 40]], "labels": [3], "difficulties": [0]}"#, "[1].labels[0]"),
            (#"{"boxes": [[1, 2, 30, 40]], "labels": [1.5], "difficulties": [0]}"#, "[1].labels[0]"),
            (#"{"boxes": [[1, 2, 30, 40]], "labels": [1], "difficulties": [2]}"#, "[1].difficulties[0]"),
        ]
        for (entry, expected) in cases {
            let (f, reason) = field("[\(ok), \(entry)]")
            XCTAssertEqual(f, expected, entry)
            XCTAssert(reason.contains("/data/b.jpg"), "the image is named: \(reason)")
        }
        try Data("[\(ok), \(ok)]".utf8).write(to: folder.appendingPathComponent("TRAIN_objects.json"))
        XCTAssertEqual(try DataLists.read(split: .train, from: folder).objectCount, 2)
    }

    /// A box outside its image in a data list is an error naming the image when the sample loads.
    func testSampleChecksBoxesAgainstTheDecodedImage() throws {
        let folder = try temporaryFolder("sample")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("photo.png")
        try ImageCodec.save(RGBImage(width: 40, height: 30), to: path)
        let inside = ObjectSet(boxes: [0, 0, 39, 29], labels: [1], difficulties: [0])
        let dataset = DetectionDataset(list: DataList(images: [path.path], objects: [inside]), split: .test)
        XCTAssertNoThrow(try dataset.sample(0, seed: 0, epoch: 0))
        for objects in [ObjectSet(boxes: [0, 0, 80, 29], labels: [1], difficulties: [0]),
                        ObjectSet(boxes: [0, 0, .infinity, 29], labels: [1], difficulties: [0]),
                        ObjectSet(boxes: [0, 0, 39, 29], labels: [0], difficulties: [0])] {
            let bad = DetectionDataset(list: DataList(images: [path.path], objects: [objects]), split: .train)
            XCTAssertThrowsError(try bad.sample(0, seed: 0, epoch: 0)) { error in
                guard case let DataError.badAnnotation(p, field, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(p, path.path)
                XCTAssert(field.hasPrefix("object[0]"), field)
            }
        }
    }

    // MARK: Building lists

    func testBuildDeduplicatesIdsAndRefusesEmptyLists() throws {
        let root = try temporaryFolder("build")
        defer { try? FileManager.default.removeItem(at: root) }
        var options = SyntheticVOC.Options()
        options.trainCount = 3
        options.testCount = 2
        let ids = try SyntheticVOC.generate(at: root, options: options)
        let split = root.appendingPathComponent("ImageSets/Main/test.txt")
        try Data((ids.test + [ids.test[0]]).joined(separator: "\n").utf8).write(to: split)
        let report = try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes))
        XCTAssertEqual(report.test.images.count, 2)
        XCTAssertEqual(report.skipped.map(\.category), ["duplicate id"])
        XCTAssertThrowsError(try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes), strict: true)) {
            XCTAssertEqual($0 as? DataError, .badList(path: split.path, field: "line 3",
                                                      reason: "duplicate id '\(ids.test[0])' (already listed on line 1); the image is listed once"))
        }
        // The same root twice (--voc07 and --voc12 alike) lists each training image once.
        XCTAssertEqual(try DataLists.build(trainRoots: [root, root], testRoots: [], classes: .given(SyntheticVOC.classes)).train.images.count, 3)

        XCTAssertThrowsError(try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(["aeroplane"]))) { error in
            guard case let DataError.emptyList(what, reason) = error else { return XCTFail("\(error)") }
            XCTAssert(what.contains("training list"), what)
            XCTAssert(reason.contains("3 of 3 listed images skipped") && reason.contains("unknown class"), reason)
        }
        // Test images without any object at all.
        for id in ids.test {
            let url = root.appendingPathComponent("Annotations/\(id).xml")
            let text = try String(contentsOf: url, encoding: .utf8)
            try Data(text.replacingOccurrences(of: #"<object>[\s\S]*</object>"#, with: "", options: .regularExpression).utf8).write(to: url)
        }
        XCTAssertThrowsError(try DataLists.build(trainRoots: [root], testRoots: [root], classes: .given(SyntheticVOC.classes))) { error in
            XCTAssert("\(error)".contains("test list") && "\(error)".contains("not one object"), "\(error)")
        }
    }
}
