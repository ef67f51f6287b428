import Foundation
import XCTest
import SSDTestSupport

/// Issue 10's interop cases, through the `ssd` binary: hostile or careless weights and `.pth`
/// files made here by small edits of the repository's model and the reference fixtures. Each
/// case failed before (accepted, exit 0, or memory out of proportion) and must now be refused
/// with a message naming the file and the field.
final class HostileInteropTests: BinaryTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let weights = repository.appendingPathComponent("models/shapes-compact.safetensors")
    static let photo = repository.appendingPathComponent("samples/002010.jpg")

    /// A torch_interop fixture (`$SSD_FIXTURES` or `../shared/fixtures`), or a skip.
    func fixture(_ name: String) throws -> URL {
        let root = ProcessInfo.processInfo.environment["SSD_FIXTURES"].map { URL(fileURLWithPath: $0) }
            ?? Self.repository.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
        let url = root.appendingPathComponent("torch_interop/\(name)")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("fixture torch_interop/\(name) missing") }
        return url
    }

    // MARK: - Safetensors weights

    /// The header object and data section of a safetensors file.
    func splitSafetensors(_ data: Data) throws -> (header: [String: Any], body: Data) {
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try XCTUnwrap(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        return (header, data.subdata(in: (8 + length)..<data.count))
    }

    func joinSafetensors(_ header: [String: Any], _ body: Data) throws -> Data {
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data((0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) })
        out.append(json)
        out.append(body)
        return out
    }

    /// Runs `ssd detect` on the sample photo with `weights`.
    func detect(_ weights: URL, in folder: URL) throws -> Outcome {
        try ssd(["detect", Self.photo.path, "--weights", weights.path, "--out", folder.appendingPathComponent("out").path])
    }

    func testOverlappingDataOffsetsAreRefused() throws {
        let folder = try scratch()
        let (header, body) = try splitSafetensors(try Data(contentsOf: Self.weights))
        // Two different tensors of the same byte size: point the second at the first's bytes.
        var bySize: [Int: String] = [:]
        var pair: (String, String)?
        for name in header.keys.sorted() where name != "__metadata__" {
            let offsets = try XCTUnwrap((header[name] as? [String: Any])?["data_offsets"] as? [Int])
            let size = offsets[1] - offsets[0]
            if size > 0, let first = bySize[size] { pair = (first, name); break }
            bySize[size] = name
        }
        let (first, second) = try XCTUnwrap(pair, "two tensors of one size")
        var edited = header
        var entry = try XCTUnwrap(header[second] as? [String: Any])
        entry["data_offsets"] = (header[first] as? [String: Any])?["data_offsets"]
        edited[second] = entry
        let bad = folder.appendingPathComponent("overlap.safetensors")
        try joinSafetensors(edited, body).write(to: bad)
        // The untouched file (rewritten the same way) detects; the edited one is refused.
        let good = folder.appendingPathComponent("good.safetensors")
        try joinSafetensors(header, body).write(to: good)
        XCTAssertEqual(try detect(good, in: folder).status, 0)
        let outcome = try detect(bad, in: folder)
        XCTAssertNotEqual(outcome.status, 0, "overlapping data_offsets were accepted: \(outcome.all)")
        XCTAssertTrue(outcome.error.contains(bad.path) && outcome.error.contains("overlap"), outcome.error)
        XCTAssertTrue(outcome.error.contains("'\(first)'") || outcome.error.contains("'\(second)'"), outcome.error)
    }

    func testTensorOf2To62ElementsIsRefused() throws {
        let folder = try scratch()
        let (original, body) = try splitSafetensors(try Data(contentsOf: Self.weights))
        var header = original
        // 2^30 × 2^30 × 4 F32 elements: 2^64 bytes, which wraps to the 0 bytes it is given.
        header["evil"] = ["dtype": "F32", "shape": [1 << 30, 1 << 30, 4], "data_offsets": [body.count, body.count]]
        let bad = folder.appendingPathComponent("huge.safetensors")
        try joinSafetensors(header, body).write(to: bad)
        let outcome = try detect(bad, in: folder)
        XCTAssertNotEqual(outcome.status, 0, "a 2^62-element tensor was accepted: \(outcome.all)")
        XCTAssertTrue(outcome.error.contains(bad.path) && outcome.error.contains("'evil'") && outcome.error.contains("overflow"),
                      outcome.error)
    }

    // MARK: - .pth files

    func testPthInflatingFarBeyondItsStoragesIsRefusedInBoundedMemory() throws {
        let folder = try scratch()
        // state_dict_zip.pth with its first storage (432 bytes) replaced by a DEFLATE stream of
        // 512 MiB of zeros (about 0.5 MB compressed), CRC and sizes all consistent.
        var entries = try readStoredZip(try Data(contentsOf: try fixture("state_dict_zip.pth")))
        let index = try XCTUnwrap(entries.firstIndex { $0.name.hasSuffix("/data/0") })
        let declared = 512 << 20
        entries[index] = ZipItem(name: entries[index].name, method: 8, stored: zeroDeflateStream(count: declared),
                                 uncompressedSize: declared, crc: crc32OfZeros(count: declared))
        let bomb = folder.appendingPathComponent("bomb.pth")
        try ZipBuilder.archive(entries).write(to: bomb)
        XCTAssertLessThan(try FileManager.default.attributesOfItem(atPath: bomb.path)[.size] as? Int ?? 0, 1 << 20)

        let output = folder.appendingPathComponent("out.safetensors")
        let run = try measuredSSD(["convert", "pth", bomb.path, "-o", output.path], in: folder)
        XCTAssertNotEqual(run.status, 0, "a 512 MiB inflation for a 432-byte storage was accepted: \(run.error)")
        XCTAssertTrue(run.error.contains(bomb.path) && run.error.contains("data/0") && run.error.contains("declares"), run.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        // The child's peak is reported as at least the spawner's own (exec keeps the high-water
        // mark): only the excess over that can be the child's own. Inflating would take ≥ 512 MiB.
        XCTAssertLessThan(run.peakKiB, run.spawnerPeakKiB + 200 * 1024,
                          "peak RSS \(run.peakKiB / 1024) MiB (spawner \(run.spawnerPeakKiB / 1024) MiB)")
    }

    func testConvertCheckpointOfAnotherModelIsAnError() throws {
        let folder = try scratch()
        let output = folder.appendingPathComponent("out.safetensors")
        // A plain state dict of some other network (features.*, classifier.*, …).
        let outcome = try ssd(["convert", "checkpoint", try fixture("state_dict_zip.pth").path, "-o", output.path])
        XCTAssertNotEqual(outcome.status, 0, "a non-SSD state dict converted as an SSD300 checkpoint: \(outcome.all)")
        XCTAssertTrue(outcome.error.contains("not an SSD300 checkpoint") && outcome.error.contains("base.conv1_1"), outcome.error)
        XCTAssertTrue(outcome.error.contains("state_dict_zip.pth"), outcome.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        // The reference checkpoint still converts.
        let good = try ssd(["convert", "checkpoint", try fixture("tutorial_style_checkpoint_zip.pth.tar").path, "-o", output.path])
        XCTAssertEqual(good.status, 0, good.all)
    }

    func testConvertOutputNamingItsInputIsRefused() throws {
        let folder = try scratch()
        let input = folder.appendingPathComponent("model.pth")
        try FileManager.default.copyItem(at: try fixture("tutorial_style_checkpoint_zip.pth.tar"), to: input)
        let original = try Data(contentsOf: input)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("link.pth").path, withDestinationPath: input.path)
        try FileManager.default.linkItem(at: input, to: folder.appendingPathComponent("hard.pth"))
        for command in ["checkpoint", "pth", "vgg16", "mobilenet-v3-large", "ssdlite320"] {
            for spelling in ["model.pth", "./sub/../model.pth", input.path, "link.pth", "hard.pth"] {
                let outcome = try ssd(["convert", command, "model.pth", "-o", spelling], currentDirectory: folder)
                XCTAssertNotEqual(outcome.status, 0, "convert \(command) -o \(spelling) replaced its input: \(outcome.all)")
                XCTAssertTrue(outcome.error.contains("input"), outcome.error)
                XCTAssertEqual(try Data(contentsOf: input), original, "convert \(command) -o \(spelling) changed the input")
            }
        }
        let link = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent("link.pth").path)
        XCTAssertEqual(link[.type] as? FileAttributeType, .typeSymbolicLink, "the link was replaced")
        // Another output beside it is written.
        XCTAssertEqual(try ssd(["convert", "checkpoint", "model.pth", "-o", "model.safetensors"], currentDirectory: folder).status, 0)
    }
}

// MARK: - Zip archives, DEFLATE streams and measured runs, made here

/// One zip entry: its name, method (0 STORED, 8 DEFLATE), stored bytes, size and CRC-32.

extension HostileInteropTests {
    /// The entries of a small zip without ZIP64 or an archive comment (as the fixtures are).
    func readStoredZip(_ data: Data) throws -> [ZipItem] {
        let bytes = [UInt8](data)
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        let eocd = bytes.count - 22
        XCTAssertEqual(u32(eocd), 0x0605_4b50, "end of central directory")
        var cursor = u32(eocd + 16)
        var items: [ZipItem] = []
        for _ in 0..<u16(eocd + 10) {
            XCTAssertEqual(u32(cursor), 0x0201_4b50, "central directory record")
            let nameLength = u16(cursor + 28), local = u32(cursor + 42), size = u32(cursor + 20)
            let name = String(decoding: bytes[(cursor + 46)..<(cursor + 46 + nameLength)], as: UTF8.self)
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            items.append(ZipItem(name: name, method: u16(cursor + 10), stored: Array(bytes[start..<(start + size)]),
                                 uncompressedSize: u32(cursor + 24), crc: UInt32(u32(cursor + 16))))
            cursor += 46 + nameLength + u16(cursor + 30) + u16(cursor + 32)
        }
        return items
    }


    /// A raw DEFLATE stream of `count` (≥ 1) zero bytes at DEFLATE's densest: one dynamic block
    /// whose literal/length code is {285 (length 258): "0", literal 0: "10", end: "11"} and whose
    /// only distance code is 1, so each 258 zeros cost two bits.
    func zeroDeflateStream(count: Int) -> [UInt8] {
        var bytes: [UInt8] = [], bits = 0
        func bit(_ b: Int) {
            if bits % 8 == 0 { bytes.append(0) }
            bytes[bytes.count - 1] |= UInt8(b & 1) << UInt8(bits % 8)
            bits += 1
        }
        func field(_ value: Int, _ width: Int) { for i in 0..<width { bit(value >> i) } }  // LSB first
        func code(_ value: Int, _ length: Int) { for i in stride(from: length - 1, through: 0, by: -1) { bit(value >> i) } }
        field(1, 1); field(2, 2)                  // last block, dynamic Huffman
        field(286 - 257, 5); field(0, 5); field(18 - 4, 4)
        // Code-length code: symbols 18, 0, 2, 1 of length 2 (canonical 0→00, 1→01, 2→10, 18→11).
        for symbol in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
            field([18, 0, 2, 1].contains(symbol) ? 2 : 0, 3)
        }
        code(2, 2)                                // literal 0: length 2
        code(3, 2); field(138 - 11, 7)            // literals 1…138: 0
        code(3, 2); field(117 - 11, 7)            // literals 139…255: 0
        code(2, 2)                                // 256 (end of block): length 2
        code(3, 2); field(28 - 11, 7)             // lengths 257…284: 0
        code(1, 2)                                // 285: length 1
        code(1, 2)                                // distance 0 (distance 1): length 1
        code(2, 2)                                // one literal zero, then copies of 258
        for _ in 0..<((count - 1) / 258) { code(0, 1); code(0, 1) }
        for _ in 0..<((count - 1) % 258) { code(2, 2) }
        code(3, 2)                                // end of block
        return bytes
    }

    /// CRC-32 (zip's) of `count` zero bytes.
    func crc32OfZeros(count: Int) -> UInt32 {
        let table: [UInt32] = (0..<256).map { n in
            var c = UInt32(n)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            return c
        }
        var c: UInt32 = 0xFFFF_FFFF
        for _ in 0..<count { c = table[Int(c & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    struct MeasuredOutcome {
        let status: Int32
        let output: String
        let error: String
        /// The child's peak resident set (wait4), in KiB.
        let peakKiB: Int
        /// This process's own peak just before the spawn, in KiB: a floor of `peakKiB`.
        let spawnerPeakKiB: Int
    }

    /// Runs `ssd arguments` with posix_spawn and wait4, so that its own peak memory is known.
    func measuredSSD(_ arguments: [String], in folder: URL) throws -> MeasuredOutcome {
        let binary = try self.binary.path
        let outPath = folder.appendingPathComponent("stdout.txt").path, errPath = folder.appendingPathComponent("stderr.txt").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var own = rusage()
        getrusage(RUSAGE_SELF.rawValue, &own)
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, binary, &actions, nil, argv, environ)
        guard spawned == 0 else { throw XCTSkip("posix_spawn failed: \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let exit = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return MeasuredOutcome(status: exit, output: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                               error: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
                               peakKiB: usage.ru_maxrss, spawnerPeakKiB: own.ru_maxrss)
    }
}
