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
}
