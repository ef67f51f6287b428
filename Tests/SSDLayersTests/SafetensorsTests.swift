import Foundation
import SSDEngine
import SSDLayers
import SSDTestSupport
import XCTest

final class SafetensorsTests: XCTestCase {
    /// Builds a safetensors file by hand from a header object and raw data.
    func handmade(_ header: [String: Any], data: [UInt8]) throws -> Data {
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(contentsOf: data)
        return out
    }

    func testRoundTripWithMetadata() throws {
        let a = randomTensor([2, 3, 4], seed: 1), b = randomTensor([5], seed: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("w.safetensors")
        try SafetensorsWriter.write([("a", a), ("b.bias", b)], metadata: ["n_classes": "21"], to: url)
        let f = try SafetensorsFile(url: url)
        XCTAssertEqual(f.names, ["a", "b.bias"])
        XCTAssertEqual(f.metadata["n_classes"], "21")
        XCTAssertEqual(try f.tensor("a").array, a.array)
        XCTAssertEqual(try f.tensor("b.bias").shape, [5])
        // No temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["w.safetensors"])
    }

    func testHalfAndBFloatWidenExactly() throws {
        // 1.5 in F16 is 0x3E00; -2.0 in BF16 is 0xC000; 65504 (F16 max) is 0x7BFF.
        let data: [UInt8] = [0x00, 0x3E, 0xFF, 0x7B, 0x00, 0xC0]
        let file = try SafetensorsFile(data: try handmade([
            "h": ["dtype": "F16", "shape": [2], "data_offsets": [0, 4]],
            "b": ["dtype": "BF16", "shape": [1], "data_offsets": [4, 6]],
        ], data: data))
        XCTAssertEqual(try file.tensor("h").array, [1.5, 65504])
        XCTAssertEqual(try file.tensor("b").array, [-2])
    }

    func testBadInputNamesTheTensor() throws {
        let good = try handmade(["w": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]]], data: Array(repeating: 0, count: 8))
        let f = try SafetensorsFile(data: good, path: "model.safetensors")
        XCTAssertThrowsError(try f.tensor("missing")) { e in
            XCTAssertEqual(e as? SafetensorsError, .missingTensor(file: "model.safetensors", name: "missing"))
        }
        XCTAssertThrowsError(try f.load("w", into: Tensor(shape: [3]))) { e in
            XCTAssertEqual(e as? SafetensorsError, .wrongShape(file: "model.safetensors", name: "w", expected: [3], got: [2]))
        }
        let unknown = try handmade(["q": ["dtype": "F8_E4M3X", "shape": [1], "data_offsets": [0, 1]]], data: [0])
        XCTAssertThrowsError(try SafetensorsFile(data: unknown)) { e in XCTAssertTrue("\(e)".contains("'q'"), "\(e)") }
        let overrun = try handmade(["w": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]]], data: Array(repeating: 0, count: 8))
        XCTAssertThrowsError(try SafetensorsFile(data: overrun)) { e in XCTAssertTrue("\(e)".contains("'w'"), "\(e)") }
        let inconsistent = try handmade(["w": ["dtype": "F32", "shape": [3], "data_offsets": [0, 8]]], data: Array(repeating: 0, count: 8))
        XCTAssertThrowsError(try SafetensorsFile(data: inconsistent)) { e in XCTAssertTrue("\(e)".contains("'w'"), "\(e)") }
        XCTAssertThrowsError(try SafetensorsFile(data: Data([1, 2, 3])))
        var hugeHeader = Data(good)
        hugeHeader[0] = 0xFF; hugeHeader[7] = 0x7F
        XCTAssertThrowsError(try SafetensorsFile(data: hugeHeader))
        XCTAssertThrowsError(try SafetensorsFile(data: good.prefix(20)))
        XCTAssertThrowsError(try SafetensorsFile(url: URL(fileURLWithPath: "/nonexistent/x.safetensors"))) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/x.safetensors"), "\(e)")
        }
    }

    func testTruncationsNeverCrash() throws {
        let a = randomTensor([3, 3], seed: 4)
        let bytes = try SafetensorsWriter.encode([("a", a)], metadata: ["k": "v"])
        for cut in 0..<bytes.count {
            // Every prefix either parses (only the full file) or throws; none crashes.
            if let f = try? SafetensorsFile(data: bytes.prefix(cut)) { XCTAssertEqual(f.names, ["a"]) }
        }
        XCTAssertNoThrow(try SafetensorsFile(data: bytes))
    }

    /// Asserts `data` is refused with an error naming `name` (and each of `words`).
    func assertRefused(_ data: Data, naming name: String, _ words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsFile(data: data, path: "w.safetensors"), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("w.safetensors") && text.contains(name), text, file: file, line: line)
            for word in words { XCTAssertTrue(text.contains(word), "\(text) lacks '\(word)'", file: file, line: line) }
        }
    }

    func testOffsetsMustTileTheDataExactly() throws {
        let bytes = [UInt8](repeating: 0, count: 16)
        // Accepted: contiguous in any header order, zero-byte tensors anywhere on the boundaries.
        XCTAssertNoThrow(try SafetensorsFile(data: try handmade([
            "b": ["dtype": "F32", "shape": [2], "data_offsets": [8, 16]],
            "a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
            "e": ["dtype": "F32", "shape": [0, 3], "data_offsets": [8, 8]],
        ], data: bytes)))
        // Overlap: two tensors sharing bytes (the same range, or a partial one).
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
                                    "b": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]]], data: Array(bytes[0..<8])),
                      naming: "'b'", ["overlap", "'a'"])
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [3], "data_offsets": [0, 12]],
                                    "b": ["dtype": "F32", "shape": [2], "data_offsets": [8, 16]]], data: bytes),
                      naming: "'b'", ["overlap"])
        // A zero-byte tensor inside another one's range.
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]],
                                    "z": ["dtype": "F32", "shape": [0], "data_offsets": [4, 4]]], data: bytes),
                      naming: "'z'", ["overlap"])
        // A hole, a range not starting at 0, trailing bytes that belong to no tensor.
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [1], "data_offsets": [0, 4]],
                                    "b": ["dtype": "F32", "shape": [2], "data_offsets": [8, 16]]], data: bytes),
                      naming: "'b'", ["[4, 8)", "no tensor"])
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [2], "data_offsets": [8, 16]]], data: bytes),
                      naming: "'a'", ["no tensor"])
        assertRefused(try handmade(["a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]]], data: bytes),
                      naming: "8 trailing bytes", [])
    }

    func testAbsurdShapesAndHeadersAreRefused() throws {
        let none: [UInt8] = []
        // 2^30 · 2^30 · 4 F32 elements: 2^64 bytes, which wraps to the 0 bytes the offsets give.
        assertRefused(try handmade(["huge": ["dtype": "F32", "shape": [1 << 30, 1 << 30, 4], "data_offsets": [0, 0]]], data: none),
                      naming: "'huge'", ["overflow"])
        // Element count overflowing Int, even with a zero dimension elsewhere.
        assertRefused(try handmade(["huge": ["dtype": "U8", "shape": [0, Int(Int32.max), Int(Int32.max), Int(Int32.max)],
                                             "data_offsets": [0, 0]]], data: none),
                      naming: "'huge'", ["overflow"])
        assertRefused(try handmade(["neg": ["dtype": "F32", "shape": [-1], "data_offsets": [0, 0]]], data: none),
                      naming: "'neg'", ["shape[0] = -1"])
        assertRefused(try handmade(["big": ["dtype": "F32", "shape": [1 << 40, 0], "data_offsets": [0, 0]]], data: none),
                      naming: "'big'", ["shape[0]"])
        assertRefused(try handmade(["deep": ["dtype": "F32", "shape": [Int](repeating: 1, count: 65), "data_offsets": [0, 4]]],
                                   data: [0, 0, 0, 0]), naming: "'deep'", ["65 dimensions"])
        assertRefused(try handmade(["frac": ["dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]]], data: [0, 0, 0, 0]),
                      naming: "'frac'", ["shape"])
        // A zero-element tensor with a large (but sane) other dimension is fine.
        XCTAssertEqual(try SafetensorsFile(data: try handmade(["e": ["dtype": "F32", "shape": [0, 1 << 20], "data_offsets": [0, 0]]],
                                                               data: none)).entries["e"]?.shape, [0, 1 << 20])
        // Header lengths: beyond the 100 MB limit, beyond the file, not a JSON object.
        var absurd = Data([0, 0, 0, 0, 0, 0, 0, 0x40]); absurd.append(contentsOf: Array("{}".utf8))
        assertRefused(absurd, naming: "header length", ["limit"])
        var long = Data([200, 0, 0, 0, 0, 0, 0, 0]); long.append(contentsOf: Array("{}".utf8))
        assertRefused(long, naming: "header length 200", ["exceeds the file"])
        var notObject = Data([4, 0, 0, 0, 0, 0, 0, 0]); notObject.append(contentsOf: Array("[1] ".utf8))
        assertRefused(notObject, naming: "'{'", [])
    }
}
