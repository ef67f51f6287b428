import Foundation
import SSDData
import XCTest

/// Hostile and careless data given to the `ssd` binary (issue 10): ill-formed annotations, bad
/// image files, absurd boxes, hexadecimal numbers, repeated ids, a wrong class list, a PNG header
/// declaring a huge frame, devices and FIFOs where files belong. Each case must end in a clear
/// message naming the file (and the field or line), never a silent wrong list, a crash or a hang.
/// Each test failed against the binary before the fix (run with `SSD_BINARY=old/ssd` to see).
final class HostileDataTests: BinaryTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let weights = packageRoot.appendingPathComponent("models/shapes-compact.safetensors")
    let classes = SyntheticVOC.classes.joined(separator: ",")

    // MARK: Helpers

    /// A synthetic set (8 training, 4 test images) in a scratch folder.
    func makeSet() throws -> (folder: URL, voc: URL) {
        let folder = try scratch()
        return (folder, try syntheticVOC(in: folder, train: 8, test: 4))
    }

    func annotation(_ voc: URL, _ id: String) -> URL { voc.appendingPathComponent("Annotations/\(id).xml") }
    func image(_ voc: URL, _ id: String) -> URL { voc.appendingPathComponent("JPEGImages/\(id).jpg") }

    /// The test split's identifiers.
    func splitIdentifiers(_ voc: URL) throws -> [String] {
        try String(contentsOf: voc.appendingPathComponent("ImageSets/Main/test.txt"), encoding: .utf8)
            .split(whereSeparator: \.isNewline).map(String.init)
    }

    /// The test image with the most objects (the synthetic images have 1–3).
    func richestTestID(_ voc: URL) throws -> (id: String, objects: Int) {
        try splitIdentifiers(voc).map { id in
            (id, try String(contentsOf: annotation(voc, id), encoding: .utf8).components(separatedBy: "<object>").count - 1)
        }.max { $0.1 < $1.1 }!
    }

    func edit(_ url: URL, _ change: (String) -> String) throws {
        let text = try String(contentsOf: url, encoding: .utf8)
        let changed = change(text)
        XCTAssertNotEqual(changed, text, "the edit of \(url.lastPathComponent) changed nothing")
        try Data(changed.utf8).write(to: url)
    }

    /// `ssd create-data-lists` on `voc` with the synthetic classes, into `folder/lists`.
    func createLists(_ voc: URL, in folder: URL, strict: Bool, classes: String? = nil) throws -> (Outcome, URL) {
        let lists = folder.appendingPathComponent("lists")
        let outcome = try ssd(["create-data-lists", "--voc07", voc.path, "--output", lists.path, "--classes", classes ?? self.classes,
                               "--train-split", "trainval", "--test-split", "test", "--overwrite"] + (strict ? ["--strict"] : []))
        return (outcome, lists)
    }

    /// The image paths in `lists/SPLIT_images.json`.
    func listedImages(_ lists: URL, _ split: String = "TEST") throws -> [String] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: lists.appendingPathComponent("\(split)_images.json"))) as? [String] ?? []
    }

    /// `--strict` refuses the set with a message containing every one of `needles`; without it
    /// the image of `id` is skipped with the same reason and the test list keeps the other three.
    func assertRefused(_ voc: URL, in folder: URL, id: String, mentioning needles: [String],
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let (strict, _) = try createLists(voc, in: folder, strict: true)
        XCTAssertNotEqual(strict.status, 0, "--strict accepted it: \(strict.all)", file: file, line: line)
        for needle in needles { XCTAssert(strict.error.contains(needle), "'\(needle)' not in: \(strict.all)", file: file, line: line) }
        let (lenient, lists) = try createLists(voc, in: folder, strict: false)
        XCTAssertEqual(lenient.status, 0, lenient.all, file: file, line: line)
        XCTAssert(lenient.error.contains("skipped"), lenient.all, file: file, line: line)
        for needle in needles { XCTAssert(lenient.error.contains(needle), "'\(needle)' not in: \(lenient.all)", file: file, line: line) }
        let listed = try listedImages(lists)
        XCTAssertEqual(listed.count, 3, "\(listed)", file: file, line: line)
        XCTAssertFalse(listed.contains { $0.hasSuffix("/\(id).jpg") }, "\(listed)", file: file, line: line)
    }

    struct Measured {
        let status: Int32
        let output: String
        /// The child's `ru_maxrss` from `wait4`, in bytes.
        let peakBytes: Int
        /// This test process's own peak (`RUSAGE_SELF`) just before the spawn, in bytes.
        let spawnerPeakBytes: Int

        /// Asserts that the child's own peak stayed below `limit`. `posix_spawn` runs the child in
        /// the spawner's memory until `exec`, and Linux carries that memory's high-water mark into
        /// the child's `ru_maxrss`; so a figure up to the spawner's peak (a test process that
        /// already ran a training test is large) may be inherited, and only a larger one is
        /// certainly the child's.
        func assertPeak(below limit: Int, file: StaticString = #filePath, line: UInt = #line) {
            let bound = max(limit, spawnerPeakBytes + (16 << 20))
            XCTAssertLessThan(peakBytes, bound, "peak RSS \(peakBytes >> 20) MiB (spawner \(spawnerPeakBytes >> 20) MiB)", file: file, line: line)
        }
    }

    /// Runs `ssd arguments` with `posix_spawn` and reaps it with `wait4`, which gives this one
    /// child's `ru_maxrss` (`getrusage(RUSAGE_CHILDREN)` would report the largest child of the whole
    /// test process, a training run of another test included). Killed after `limit` seconds, so a
    /// hang fails the test instead of blocking the suite.
    func measured(_ arguments: [String], limit: Double = 300) throws -> Measured {
        let folder = try scratch()
        let log = folder.appendingPathComponent("output")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let path = try binary.path
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var own = rusage()
        getrusage(RUSAGE_SELF.rawValue, &own)
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, &argv, environ)
        guard spawned == 0 else { throw XCTSkip("cannot start \(path): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        let deadline = Date().addingTimeInterval(limit)
        var killed = false
        while true {
            let reaped = wait4(pid, &status, killed ? 0 : WNOHANG, &usage)
            if reaped == pid { break }
            if reaped < 0 && errno != EINTR { XCTFail("wait4: \(String(cString: strerror(errno)))"); break }
            if !killed && Date() > deadline { kill(pid, SIGKILL); killed = true }
            if !killed { usleep(20_000) }
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(killed, "ssd \(arguments.joined(separator: " ")) still ran after \(limit) s: \(output)")
        let exited = status & 0x7F == 0
        return Measured(status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), output: output,
                        peakBytes: Int(usage.ru_maxrss) * 1024, spawnerPeakBytes: Int(own.ru_maxrss) * 1024)
    }

    // MARK: Ill-formed annotations (well-formedness, with the line)

    /// Missing `</object>` tags: libxml2 recovered silently and two of three objects vanished.
    func testAnnotationWithoutObjectEndTagsIsRefusedNamingFileAndLine() throws {
        let (folder, voc) = try makeSet()
        let (id, count) = try richestTestID(voc)
        XCTAssertGreaterThan(count, 1, "the synthetic test split should have an image with several objects")
        try edit(annotation(voc, id)) { $0.replacingOccurrences(of: "</object>", with: "") }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "line ", "<object>"])
    }

    /// A missing `</size>` made every object a child of `<size>`: "no objects", even under --strict.
    func testAnnotationWithoutSizeEndTagIsRefusedNamingFileAndLine() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[0]
        try edit(annotation(voc, id)) { $0.replacingOccurrences(of: "</size>", with: "") }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "line ", "<size>"])
    }

    /// A missing `</annotation>` was accepted.
    func testAnnotationWithoutRootEndTagIsRefusedNamingFileAndLine() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[1]
        try edit(annotation(voc, id)) { $0.replacingOccurrences(of: "</annotation>", with: "") }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "line ", "<annotation>", "still open"])
    }

    // MARK: Bad image files

    func testZeroByteImageIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[2]
        try Data().write(to: image(voc, id))
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).jpg", "empty file"])
    }

    func testTextImageIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[2]
        try Data("this is not a photograph\n".utf8).write(to: image(voc, id))
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).jpg", "neither a JPEG nor a PNG"])
    }

    func testTruncatedJPEGIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[2]
        let bytes = try Data(contentsOf: image(voc, id))
        try bytes.prefix(bytes.count / 2).write(to: image(voc, id))
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).jpg", "truncated"])
    }

    /// An annotation whose `<size>` is not the image's.
    func testSizeDifferentFromTheImageIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[0]
        try edit(annotation(voc, id)) { $0.replacingOccurrences(of: #"<width>(\d+)</width>"#, with: "<width>2000</width>", options: .regularExpression) }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "says 2000×", "\(id).jpg"])
    }

    // MARK: Boxes and numbers

    /// Without `<size>`, a box far outside the image was accepted (and clamped later).
    func testBoxOutsideTheImageIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[0]
        try edit(annotation(voc, id)) {
            $0.replacingOccurrences(of: #"<size>.*</size>"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: #"<xmax>\d+</xmax>"#, with: "<xmax>5000</xmax>", options: .regularExpression)
        }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "bndbox", "outside"])
    }

    /// `0x1` is not a VOC coordinate (Swift's `Double("0x1")` reads it as 1).
    func testHexadecimalCoordinateIsRefused() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[0]
        try edit(annotation(voc, id)) { $0.replacingOccurrences(of: #"<xmin>\d+</xmin>"#, with: "<xmin>0x1</xmin>", options: .regularExpression) }
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "bndbox.xmin", "0x1", "plain decimal"])
    }

    /// A box of 1e300 in a data list (a Float infinity once read) made eval score silently.
    func testAbsurdBoxInADataListIsRefusedNamingTheImage() throws {
        let (folder, voc) = try makeSet()
        let lists = try dataLists(from: voc, in: folder)
        let objects = lists.appendingPathComponent("TEST_objects.json")
        try edit(objects) { $0.replacingOccurrences(of: #"^\[\{"boxes":\[\[\d+"#, with: #"[{"boxes":[[1e300"#, options: .regularExpression) }
        let eval = try ssd(["eval", "--data", lists.path, "--weights", Self.weights.path, "--threads", "2"])
        XCTAssertNotEqual(eval.status, 0, eval.all)
        XCTAssert(eval.error.contains("TEST_objects.json") && eval.error.contains("[0].boxes[0]"), eval.all)
        let first = try listedImages(lists)[0]
        XCTAssert(eval.error.contains(first), "the message names the image: \(eval.all)")
    }

    /// A box outside its image in a data list: now an error naming the image file.
    func testBoxOutsideTheImageInADataListIsRefusedNamingTheImage() throws {
        let (folder, voc) = try makeSet()
        let lists = try dataLists(from: voc, in: folder)
        try edit(lists.appendingPathComponent("TEST_objects.json")) {
            $0.replacingOccurrences(of: #"^\[\{"boxes":\[\[(\d+),(\d+),\d+"#, with: #"[{"boxes":[[$1,$2,5000"#, options: .regularExpression)
        }
        let eval = try ssd(["eval", "--data", lists.path, "--weights", Self.weights.path, "--threads", "2"])
        XCTAssertNotEqual(eval.status, 0, eval.all)
        let first = try listedImages(lists)[0]
        XCTAssert(eval.error.contains(first) && eval.error.contains("outside"), eval.all)
    }

    /// A zero-area box in the training list failed at loss time as "ground truth of image N";
    /// now reading the list refuses it, naming the list, the entry and the image.
    func testBadTrainingBoxIsNamedByImageNotBatchPosition() throws {
        let (folder, voc) = try makeSet()
        let lists = try dataLists(from: voc, in: folder)
        try edit(lists.appendingPathComponent("TRAIN_objects.json")) {
            $0.replacingOccurrences(of: #"\[\[(\d+),(\d+),\d+"#, with: "[[$1,$2,$1", options: .regularExpression)
        }
        let train = try ssd(["train", "--data", lists.path, "--output", folder.appendingPathComponent("run").path, "--iterations", "2",
                             "--batch-size", "8", "--threads", "2"] + Self.compactModel)
        XCTAssertNotEqual(train.status, 0, train.all)
        XCTAssertFalse(train.all.contains("of image "), train.all)
        let first = try listedImages(lists, "TRAIN")[0]
        XCTAssert(train.error.contains("TRAIN_objects.json") && train.error.contains(first), train.all)
    }

    // MARK: Split files and classes

    /// An id listed twice was listed (and evaluated) twice; now once, with a warning, and an error with --strict.
    func testDuplicateIdIsListedOnceWithAWarning() throws {
        let (folder, voc) = try makeSet()
        let ids = try splitIdentifiers(voc)
        try Data((ids + [ids[1]]).joined(separator: "\n").utf8).write(to: voc.appendingPathComponent("ImageSets/Main/test.txt"))
        let (lenient, lists) = try createLists(voc, in: folder, strict: false)
        XCTAssertEqual(lenient.status, 0, lenient.all)
        XCTAssertEqual(try listedImages(lists).count, 4)
        XCTAssert(lenient.error.contains("duplicate id '\(ids[1])'") && lenient.error.contains("test.txt"), lenient.all)
        let (strict, _) = try createLists(voc, in: folder, strict: true)
        XCTAssertNotEqual(strict.status, 0, strict.all)
        XCTAssert(strict.error.contains("test.txt: line 5: duplicate id"), strict.all)
    }

    /// A class list that matches nothing used to write empty lists and exit 0.
    func testWrongClassListIsAnErrorCountingTheSkippedImages() throws {
        let (folder, voc) = try makeSet()
        let (outcome, _) = try createLists(voc, in: folder, strict: false, classes: "aeroplane,bicycle")
        XCTAssertNotEqual(outcome.status, 0, outcome.all)
        XCTAssert(outcome.error.contains("is empty") && outcome.error.contains("of 8 listed images skipped")
                  && outcome.error.contains("unknown class"), outcome.all)
    }

    // MARK: Memory

    /// A PNG of about 1 KB whose header declares 16384×16384: it cost 819 MB in `detect`.
    func testHugeDeclaredPNGIsRefusedWithoutTheMemory() throws {
        let folder = try scratch()
        let png = folder.appendingPathComponent("huge.png")
        try Self.truncatedPNG(width: 16384, height: 16384).write(to: png)
        let run = try measured(["detect", "--weights", Self.weights.path, "--threads", "2", png.path], limit: 120)
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssert(run.output.contains("huge.png") && run.output.contains("16384×16384") && run.output.contains("maximumPixels"), run.output)
        run.assertPeak(below: 300 << 20)
    }

    /// Within the pixel budget (8000×8000, 183 MiB of RGB), a 1 KB PNG cannot hold the pixels it
    /// declares: refused before the frame is allocated.
    func testTruncatedLargePNGIsRefusedBeforeTheFrameIsAllocated() throws {
        let folder = try scratch()
        let png = folder.appendingPathComponent("large.png")
        try Self.truncatedPNG(width: 8000, height: 8000).write(to: png)
        let run = try measured(["detect", "--weights", Self.weights.path, "--threads", "2", png.path], limit: 120)
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssert(run.output.contains("large.png") && run.output.contains("truncated"), run.output)
        run.assertPeak(below: 150 << 20)
    }

    /// Several large photos in one `detect` are decoded, resized into the batch and released one
    /// at a time (they were all held at once: four 100 MP PNGs took 1.39 GB, now 340 MB).
    func testLargePhotosAreReleasedOneAtATime() throws {
        let folder = try scratch()
        // 6000×6000 RGB: 103 MiB decoded each, a few hundred KB as PNG.
        let image = RGBImage(width: 6000, height: 6000, fill: (120, 60, 200))
        let encoded = try ImageCodec.encodePNG(image)
        var paths: [String] = []
        for i in 0..<4 {
            let url = folder.appendingPathComponent("large\(i).png")
            try encoded.write(to: url)
            paths.append(url.path)
        }
        let run = try measured(["detect", "--weights", Self.weights.path, "--threads", "2"] + paths, limit: 300)
        XCTAssertEqual(run.status, 0, run.output)
        run.assertPeak(below: 300 << 20)
    }

    /// A PNG signature, an IHDR declaring `width`×`height` 8-bit RGB (with a correct CRC, so the
    /// header passes), then about 1 KB of image data and no IEND.
    static func truncatedPNG(width: Int, height: Int) -> Data {
        func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
            let typed = Array(type.utf8) + body
            return be32(body.count) + typed + be32(Int(crc32(typed)))
        }
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        let ihdr = be32(width) + be32(height) + [8, 2, 0, 0, 0]
        // zlib header, then a stored (uncompressed) block of zeros that ends long before the image does.
        let idat: [UInt8] = [0x78, 0x01, 0x00, 0x00, 0x04, 0xFF, 0xFB] + [UInt8](repeating: 0, count: 1000)
        return Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IDAT", idat))
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    // MARK: Devices, FIFOs and oversized files

    /// `/dev/zero` as an image: listed by create-data-lists; "permission" from detect.
    func testDevZeroAsAnImageIsNotARegularFile() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[3]
        try FileManager.default.removeItem(at: image(voc, id))
        try FileManager.default.createSymbolicLink(atPath: image(voc, id).path, withDestinationPath: "/dev/zero")
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).jpg", "not a regular file but a character device"])
        let detect = try measured(["detect", "--weights", Self.weights.path, "--threads", "2", "/dev/zero"], limit: 120)
        XCTAssertNotEqual(detect.status, 0, detect.output)
        XCTAssert(detect.output.contains("/dev/zero") && detect.output.contains("not a regular file"), detect.output)
    }

    /// A FIFO as an annotation and as an image: refused at once, without waiting for a writer.
    func testFIFOAsAnAnnotationOrImageIsNotARegularFile() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[3]
        try FileManager.default.removeItem(at: annotation(voc, id))
        XCTAssertEqual(mkfifo(annotation(voc, id).path, 0o644), 0)
        let made = try measured(["create-data-lists", "--voc07", voc.path, "--output", folder.appendingPathComponent("lists").path,
                                 "--classes", classes, "--strict"], limit: 120)
        XCTAssertNotEqual(made.status, 0, made.output)
        XCTAssert(made.output.contains("\(id).xml") && made.output.contains("not a regular file but a FIFO"), made.output)
        let fifo = folder.appendingPathComponent("photo.jpg")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        let detect = try measured(["detect", "--weights", Self.weights.path, "--threads", "2", fifo.path], limit: 120)
        XCTAssertNotEqual(detect.status, 0, detect.output)
        XCTAssert(detect.output.contains("photo.jpg") && detect.output.contains("not a regular file but a FIFO"), detect.output)
    }

    /// An output folder below a file: Foundation said "NSCocoaErrorDomain error 512".
    func testOutputBelowAFileSaysSoInWords() throws {
        let (folder, voc) = try makeSet()
        let blocker = folder.appendingPathComponent("blocker")
        try Data("x".utf8).write(to: blocker)
        let made = try ssd(["create-data-lists", "--voc07", voc.path, "--output", blocker.appendingPathComponent("lists").path,
                            "--classes", classes])
        XCTAssertNotEqual(made.status, 0, made.all)
        XCTAssert(made.error.contains("\(blocker.path) is a file, not a folder"), made.all)
        XCTAssertFalse(made.all.contains("512"), made.all)
    }

    /// An annotation file of 17 MiB (sparse) is refused by its size, not read and parsed.
    func testOversizedAnnotationIsRefusedBySize() throws {
        let (folder, voc) = try makeSet()
        let id = try splitIdentifiers(voc)[0]
        XCTAssertEqual(truncate(annotation(voc, id).path, 17 << 20), 0)
        try assertRefused(voc, in: folder, id: id, mentioning: ["\(id).xml", "more than the 16 MiB"])
    }
}
