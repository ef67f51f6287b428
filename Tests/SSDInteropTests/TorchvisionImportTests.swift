import Foundation
import XCTest
import SSDDetection
import SSDEngine
import SSDInterop
import SSDLayers
import SSDTestSupport

/// `ssd convert mobilenet-v3-large` and `ssd convert ssdlite320` as library calls, on `.pth`
/// files written here with torchvision's names and shapes (`TorchvisionMobileNetV3`, written
/// from torchvision's `mobilenetv3.py`; the ssdlite320 fixture's state dict, which torchvision
/// wrote) and random values that must arrive bit for bit.
final class TorchvisionImportTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("tv-import-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    func write(_ data: Data, _ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    /// `_mobilenet_extractor`'s split, written out independently of the converter's inverse map.
    func extractorName(_ tv: String) -> String {
        if tv.hasPrefix("features.13.block.0.") { return "backbone.features.0.13." + tv.dropFirst("features.13.block.0.".count) }
        if tv.hasPrefix("features.13.block.") { return "backbone.features.1.0." + tv.dropFirst("features.13.block.".count) }
        for n in 14...16 where tv.hasPrefix("features.\(n).") {
            return "backbone.features.1.\(n - 13)." + tv.dropFirst("features.\(n).".count)
        }
        return "backbone.features.0." + tv.dropFirst("features.".count)
    }

    func isTail(_ tv: String) -> Bool {
        tv.hasPrefix("features.13.block.3.") || tv.hasPrefix("features.14.") || tv.hasPrefix("features.15.") || tv.hasPrefix("features.16.")
    }

    func backboneExpected() throws -> [(name: String, shape: [Int])] {
        try SSDLiteNames.expected(classCount: 2).filter { $0.name.hasPrefix("backbone.features.") }
    }

    func convertBackbone(_ tensors: [(String, SavedTensor)], file: String = "mobilenet.pth") throws -> (SafetensorsFile, ConversionSummary) {
        let input = try write(TorchSave.stateDict(tensors), file)
        let output = folder.appendingPathComponent("backbone.safetensors")
        let summary = try MobileNetV3Import.convertFile(input: input, output: output)
        return (try SafetensorsFile(url: output), summary)
    }

    func assertInteropError(_ body: () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error containing \(parts)", file: file, line: line)
        } catch let error as InteropError {
            for part in parts { XCTAssertTrue(error.description.contains(part), "'\(part)' not in: \(error)", file: file, line: line) }
        } catch {
            XCTFail("expected an InteropError, got \(error)", file: file, line: line)
        }
    }

    // MARK: - mobilenet_v3_large → the ssdlite320 backbone

    func testReducedTailStateDictMapsOntoEveryBackboneTensorBitExactly() throws {
        let state = TorchvisionMobileNetV3.stateDict(reducedTail: true)
        let (out, summary) = try convertBackbone(state)
        let expected = try backboneExpected()
        XCTAssertEqual(summary.count, expected.count)
        XCTAssertEqual(Set(out.entries.keys), Set(expected.map(\.name)))
        for (name, shape) in expected { XCTAssertEqual(out.entries[name]?.shape, shape, name) }
        // Every torchvision feature tensor lands where _mobilenet_extractor puts it, bit for bit.
        var mapped = 0
        for (tv, tensor) in state where tv.hasPrefix("features.") && !tv.hasSuffix("num_batches_tracked") {
            let ours = extractorName(tv)
            XCTAssertEqual(out.entries[ours]?.dtype, .float32, ours)
            XCTAssertEqual(try out.rawBytes(ours), tensor.bytes, "\(tv) → \(ours)")
            mapped += 1
        }
        XCTAssertEqual(mapped, expected.count)
        // The names are torchvision's own ssdlite320 state_dict names (the fixture torchvision wrote).
        if let url = Fixtures.url("ssdlite320/weights_f16.safetensors") {
            let fixture = try SafetensorsFile(url: url)
            let names = fixture.names.filter { $0.hasPrefix("backbone.features.") && !$0.hasSuffix("num_batches_tracked") }
            XCTAssertEqual(Set(names), Set(out.entries.keys))
            for name in names { XCTAssertEqual(fixture.entries[name]?.shape, out.entries[name]?.shape, name) }
        }
        XCTAssertEqual(summary.notes.count, 1, "\(summary.notes)")
        XCTAssertTrue(summary.notes[0].contains("classifier") && summary.notes[0].contains("num_batches_tracked"), summary.notes[0])
        XCTAssertNil(out.metadata["not_imported"])
    }

    func testImageNetFullTailImportsWhatFitsAndNamesTheRest() throws {
        let state = TorchvisionMobileNetV3.stateDict(reducedTail: false)
        let (out, summary) = try convertBackbone(state)
        let expected = try backboneExpected()
        let core = state.filter { $0.0.hasPrefix("features.") && !$0.0.hasSuffix("num_batches_tracked") && !isTail($0.0) }
        XCTAssertEqual(summary.count, core.count)
        XCTAssertEqual(Set(out.entries.keys), Set(core.map { extractorName($0.0) }))
        for (tv, tensor) in core { XCTAssertEqual(try out.rawBytes(extractorName(tv)), tensor.bytes, tv) }
        // The rest of the backbone is named as not imported, in the notes and the metadata.
        let tail = expected.map(\.name).filter { out.entries[$0] == nil }
        XCTAssertEqual(tail.count, expected.count - core.count)
        XCTAssertEqual([core.count, tail.count], [214, 48])  // as README.md says
        XCTAssertTrue(tail.allSatisfy { $0.hasPrefix("backbone.features.1.") })
        let recorded = try XCTUnwrap(JSONSerialization.jsonObject(with: Data((out.metadata["not_imported"] ?? "").utf8)) as? [String])
        XCTAssertEqual(recorded, tail)
        let note = try XCTUnwrap(summary.notes.first)
        for part in ["full-tail", "reduced tail", "not imported", "\(tail.count) tensors", "features.13.block.3", "backbone.features.1.0.3"] {
            XCTAssertTrue(note.contains(part), "'\(part)' not in: \(note)")
        }
        // What `ssd train --weights` does: every tensor of the file is one of the model's, of its shape.
        let model = try SSDModel(.ssdlite320, classCount: 7, backend: NaiveBackend())
        var loaded = 0
        for (name, tensor) in model.stateTensors where out.entries[name] != nil {
            try out.load(name, into: tensor)
            loaded += 1
        }
        XCTAssertEqual(loaded, out.entries.count)
        let stem = try XCTUnwrap(model.stateTensors.first { $0.0 == "backbone.features.0.0.0.weight" }?.1)
        XCTAssertEqual(stem.array, try XCTUnwrap(state.first { $0.0 == "features.0.0.weight" }?.1.floats))
    }

    func testReferenceScriptCheckpointOfTheClassifierIsRead() throws {
        let state = TorchvisionMobileNetV3.stateDict(reducedTail: true, classifier: false)
        let input = try write(TorchSave.referenceCheckpoint(state, epoch: 599), "checkpoint.pth")
        let output = folder.appendingPathComponent("out.safetensors")
        let summary = try MobileNetV3Import.convertFile(input: input, output: output)
        XCTAssertEqual(summary.count, try backboneExpected().count)
    }

    func testBrokenOrForeignBackboneFilesAreErrorsNamingFileAndTensor() throws {
        let full = TorchvisionMobileNetV3.stateDict()
        func edited(_ change: (inout [(String, SavedTensor)]) -> Void) -> [(String, SavedTensor)] {
            var s = full
            change(&s)
            return s
        }
        func replace(_ name: String, _ tensor: SavedTensor) -> [(String, SavedTensor)] {
            edited { s in s[s.firstIndex { $0.0 == name }!].1 = tensor }
        }
        let cases: [(String, [(String, SavedTensor)], [String])] = [
            ("missing.pth", edited { $0.removeAll { $0.0 == "features.5.block.2.fc1.weight" } }, ["features.5.block.2.fc1.weight", "no tensor"]),
            ("shape.pth", replace("features.3.block.1.0.weight", .random([72, 1, 5, 5], seed: 1)),
             ["features.3.block.1.0.weight", "[72, 1, 5, 5]", "[72, 1, 3, 3]"]),
            ("tail.pth", replace("features.15.block.1.0.weight", .random([480, 1, 5, 5], seed: 2)),
             ["features.15.block.1.0.weight", "full tail"]),
            ("c4.pth", replace("features.13.block.3.0.weight", .random([100, 672, 1, 1], seed: 3)),
             ["features.13.block.3.0.weight", "reduced tail", "full tail"]),
            ("unknown.pth", full + [("features.17.0.weight", .random([8], seed: 4))], ["features.17.0.weight", "not a torchvision mobilenet_v3_large"]),
            ("dtype.pth", replace("features.0.0.weight", .int64([16, 3, 3, 3], Array(repeating: 1, count: 432))),
             ["features.0.0.weight", "I64", "float"]),
            ("foreign.pth", [("conv1.weight", .random([8, 3, 3, 3], seed: 5)), ("fc.bias", .random([10], seed: 6))],
             ["not a torchvision mobilenet_v3_large", "conv1.weight"]),
        ]
        for (file, state, parts) in cases {
            let output = folder.appendingPathComponent("\(file).safetensors")
            assertInteropError({ try self.convertBackbone(state, file: file) }, contains: [file] + parts)
            XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        }
        // A file that is no .pth at all.
        let junk = try write(Data("features.0.0.weight".utf8), "junk.pth")
        assertInteropError({ try MobileNetV3Import.convertFile(input: junk, output: self.folder.appendingPathComponent("j.safetensors")) },
                           contains: ["junk.pth"])
    }

    // MARK: - ssdlite320_mobilenet_v3_large checkpoints

    /// A state dict of ssdlite320 with `classCount` classes and random values, with torchvision's
    /// step counters.
    func ssdliteState(classCount: Int) throws -> [(String, SavedTensor)] {
        var state: [(String, SavedTensor)] = []
        for (name, shape) in try SSDLiteNames.expected(classCount: classCount) {
            state.append((name, .random(name, shape)))
            if name.hasSuffix(".running_var") {
                state.append((String(name.dropLast("running_var".count)) + "num_batches_tracked", .int64([], [7])))
            }
        }
        return state
    }

    func convertSSDLite(_ data: Data, file: String = "ssdlite.pth", classNames: URL? = nil) throws -> (SafetensorsFile, ConversionSummary) {
        let input = try write(data, file)
        let output = folder.appendingPathComponent("ssdlite.safetensors")
        let summary = try SSDLiteCheckpoint.convertFile(input: input, output: output, classNamesFile: classNames)
        return (try SafetensorsFile(url: output), summary)
    }

    func testTorchvisionFixtureStateDictConvertsBitExactly() throws {
        guard let url = Fixtures.url("ssdlite320/weights_f16.safetensors") else { throw XCTSkip("ssdlite320 fixture missing") }
        let fixture = try SafetensorsFile(url: url)
        let (out, summary) = try convertSSDLite(TorchSave.stateDict(try TorchSave.tensors(of: fixture)))
        XCTAssertEqual(out.metadata[MetadataKey.model.rawValue], "ssdlite320")
        XCTAssertEqual(out.metadata[MetadataKey.classCount.rawValue], "21")
        XCTAssertNil(out.metadata[MetadataKey.classNames.rawValue])
        XCTAssertTrue(summary.notes.contains { $0.contains("VOC") }, "\(summary.notes)")
        let names = fixture.names.filter { !$0.hasSuffix("num_batches_tracked") }
        XCTAssertEqual(Set(out.entries.keys), Set(names))
        XCTAssertEqual(summary.count, names.count)
        for name in names {
            XCTAssertEqual(out.entries[name]?.dtype, .float32)
            XCTAssertEqual(try out.tensor(name).array.map(\.bitPattern), try fixture.tensor(name).array.map(\.bitPattern), name)
        }
        let model = try SSDModel.load(contentsOf: folder.appendingPathComponent("ssdlite.safetensors"), backend: NaiveBackend())
        XCTAssertEqual(model.kind, .ssdlite320)
        XCTAssertEqual(model.classCount, 21)
    }

    func testCOCOCheckpointInTheReferenceScriptsFormat() throws {
        let state = try ssdliteState(classCount: 91)
        let (out, summary) = try convertSSDLite(TorchSave.referenceCheckpoint(state, epoch: 659))
        XCTAssertEqual(out.metadata[MetadataKey.classCount.rawValue], "91")
        XCTAssertEqual(out.metadata["epoch"], "659")
        let names = try XCTUnwrap(JSONSerialization.jsonObject(with: Data((out.metadata[MetadataKey.classNames.rawValue] ?? "").utf8)) as? [String])
        XCTAssertEqual(names, SSDLiteCheckpoint.cocoClassNames)
        XCTAssertEqual(names.count, 90)
        XCTAssertEqual(names.first, "person")
        XCTAssertEqual(names.last, "toothbrush")
        XCTAssertTrue(summary.notes.contains { $0.contains("COCO") }, "\(summary.notes)")
        for (name, tensor) in state where !name.hasSuffix("num_batches_tracked") {
            XCTAssertEqual(try out.rawBytes(name), tensor.bytes, name)
        }
        XCTAssertEqual(out.entries["head.classification_head.module_list.5.1.bias"]?.shape, [546])
    }

    func testClassNamesFromAFile() throws {
        let state = try ssdliteState(classCount: 4)
        let data = TorchSave.stateDict(state)
        let json = try write(Data(#"["__background__", "cat", "dog", "N/A"]"#.utf8), "names.json")
        XCTAssertEqual(try classNames(try convertSSDLite(data, classNames: json).0), ["cat", "dog", "N/A"])
        let lines = try write(Data("cat\n  dog \n\nbird\n".utf8), "names.txt")
        XCTAssertEqual(try classNames(try convertSSDLite(data, classNames: lines).0), ["cat", "dog", "bird"])
        let (_, without) = try convertSSDLite(data)
        XCTAssertTrue(without.notes.contains { $0.contains("--class-names") }, "\(without.notes)")
        let short = try write(Data("cat\ndog\n".utf8), "short.txt")
        assertInteropError({ try self.convertSSDLite(data, classNames: short) }, contains: ["short.txt", "2 class names", "4 classes", "ssdlite.pth"])
        let bad = try write(Data(#"["cat", 3, "dog"]"#.utf8), "bad.json")
        assertInteropError({ try self.convertSSDLite(data, classNames: bad) }, contains: ["bad.json", "entry 1"])
    }

    func classNames(_ file: SafetensorsFile) throws -> [String] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data((file.metadata[MetadataKey.classNames.rawValue] ?? "").utf8)) as? [String])
    }

    func testBrokenOrForeignDetectionCheckpointsAreErrorsNamingFileAndTensor() throws {
        let state = try ssdliteState(classCount: 91)
        func replace(_ name: String, _ tensor: SavedTensor) -> [(String, SavedTensor)] {
            var s = state
            s[s.firstIndex { $0.0 == name }!].1 = tensor
            return s
        }
        let cases: [(String, [(String, SavedTensor)], [String])] = [
            ("missing.pth", state.filter { $0.0 != "backbone.extra.3.2.1.running_var" }, ["no tensor 'backbone.extra.3.2.1.running_var'"]),
            ("unexpected.pth", state + [("head.anchor_generator.scales", .random([6], seed: 1))],
             ["'head.anchor_generator.scales'", "not one of"]),
            ("shape.pth", replace("backbone.features.0.5.block.1.0.weight", .random([120, 1, 3, 3], seed: 2)),
             ["'backbone.features.0.5.block.1.0.weight'", "[120, 1, 3, 3]", "[120, 1, 5, 5]"]),
            ("fulltail.pth", replace("backbone.features.1.0.3.0.weight", .random([160, 672, 1, 1], seed: 3)),
             ["'backbone.features.1.0.3.0.weight'", "full-tail", "weights_backbone"]),
            ("classes.pth", replace(SSDLiteCheckpoint.classBias, .random([545], seed: 4)), ["'\(SSDLiteCheckpoint.classBias)'", "[545]"]),
            ("heads.pth", replace("head.classification_head.module_list.0.1.bias", .random([6 * 21], seed: 5)),
             ["'head.classification_head.module_list.0.1.bias'", "91 classes"]),
            ("dtype.pth", replace("head.regression_head.module_list.2.1.bias", .int64([24], Array(repeating: 0, count: 24))),
             ["'head.regression_head.module_list.2.1.bias'", "I64", "float"]),
            ("classifier.pth", TorchvisionMobileNetV3.stateDict(), ["not a torchvision ssdlite320_mobilenet_v3_large", SSDLiteCheckpoint.classBias]),
        ]
        for (file, tensors, parts) in cases {
            assertInteropError({ try self.convertSSDLite(TorchSave.stateDict(tensors), file: file) }, contains: [file] + parts)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("ssdlite.safetensors").path))
    }
}
