import Foundation
import XCTest
import SSDInterop
import SSDLayers
import SSDTestSupport

/// Hostile and broken input: refused globals, truncation, corruption, bombs, absurd sizes.
final class SafetyTests: XCTestCase {
    /// A marker file that a shell command in a malicious pickle would create.
    private var marker: String { FileManager.default.temporaryDirectory.appendingPathComponent("ssd-pwned-\(getpid())").path }

    func testOsSystemIsRefusedAndNothingRuns() throws {
        try? FileManager.default.removeItem(atPath: marker)
        var p = PickleBuilder()
        p.global("os", "system"); p.string("touch \(marker)"); p.op(0x85, 0x52); p.stop()
        assertInteropError(try Unpickler.load(p.bytes, path: "evil.pth")) { error in
            XCTAssertEqual(error, .forbiddenGlobal(file: "evil.pth", global: "os.system"))
            XCTAssertTrue(error.description.contains("os.system"))
        }
        // The same pickle inside a torch zip archive, read as a file.
        let zip = makeZip([("evil/data.pkl", p.bytes)])
        assertInteropError(try TorchFile(data: zip, path: "evil.pth")) { XCTAssertEqual($0, .forbiddenGlobal(file: "evil.pth", global: "os.system")) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the command ran")
    }

    func testOtherCallablesAreRefusedByName() {
        let cases: [(String, String)] = [("builtins", "eval"), ("__builtin__", "exec"), ("subprocess", "Popen"),
                                         ("posix", "system"), ("torch", "load"), ("numpy.core.multiarray", "_reconstruct")]
        for (module, name) in cases {
            var p = PickleBuilder()
            // STACK_GLOBAL spelling: module and name strings from the stack.
            p.string(module); p.string(name); p.op(0x93); p.string("1+1"); p.op(0x85, 0x52); p.stop()
            let expected = (module == "__builtin__" ? "builtins" : module) + "." + name
            assertInteropError(try Unpickler.load(p.bytes)) { XCTAssertEqual($0, .forbiddenGlobal(file: "<memory>", global: expected)) }
        }
    }

    func testClassesBecomeDataNotInstances() throws {
        // NEWOBJ + BUILD of an arbitrary class: an object node holding the state, nothing constructed.
        var p = PickleBuilder()
        p.global("model", "SSD300"); p.op(0x29, 0x81)
        p.op(0x7D); p.string("n_classes"); p.int(21); p.op(0x73); p.op(0x62); p.stop()
        guard case let .object(object) = try Unpickler.load(p.bytes) else { return XCTFail("not an object") }
        XCTAssertEqual(object.className, "model.SSD300")
        XCTAssertEqual(object.state?["n_classes"]?.intValue, 21)
    }

    func testStateDictMetadataAttributeIsNotAnItem() throws {
        // OrderedDict() ; SETITEMS {'w': 1} ; BUILD {'_metadata': {...}} — attributes stay out of the items.
        var p = PickleBuilder()
        p.global("collections", "OrderedDict"); p.op(0x29, 0x52)
        p.string("w"); p.int(1); p.op(0x73)
        p.op(0x7D); p.string("_metadata"); p.op(0x7D); p.op(0x73); p.op(0x62); p.stop()
        guard case let .dict(items) = try Unpickler.load(p.bytes) else { return XCTFail("not a dict") }
        XCTAssertEqual(items.compactMap { $0.key.stringValue }, ["w"])
    }

    func testMemoisedDictSeesLaterItems() throws {
        // {} BINPUT 0, items set afterwards, then BINGET 0: the fetched dict must hold them.
        var p = PickleBuilder()
        p.op(0x5D) // outer list
        p.op(0x7D, 0x71, 0); p.string("a"); p.int(7); p.op(0x73) // {'a': 7}, memo 0
        p.op(0x61) // append
        p.op(0x68, 0, 0x61) // append memo 0 again
        p.stop()
        guard case let .list(items) = try Unpickler.load(p.bytes), items.count == 2 else { return XCTFail("not a 2-list") }
        XCTAssertEqual(items[1]["a"]?.intValue, 7)
    }

    func testEveryPrefixOfEveryFixtureIsAnError() throws {
        for name in ["state_dict_zip.pth", "state_dict_legacy.pth", "tutorial_style_checkpoint.pth.tar", "tutorial_style_checkpoint_zip.pth.tar"] {
            let data = try Data(contentsOf: try fixture(name))
            var failures = 0
            for length in 0..<data.count {
                do {
                    let file = try TorchFile(data: data.prefix(length), path: name)
                    _ = try TorchConversion.stateDictTensors(file)
                    XCTFail("\(name): prefix of \(length) bytes was accepted")
                } catch is InteropError {
                    failures += 1
                } catch {
                    XCTFail("\(name): prefix of \(length) bytes threw a non-Interop error \(error)")
                }
            }
            XCTAssertEqual(failures, data.count, name)
        }
    }

    func testSingleByteCorruptionNeverCrashes() throws {
        for name in ["state_dict_zip.pth", "state_dict_legacy.pth"] {
            let data = try Data(contentsOf: try fixture(name))
            var errors = 0
            for position in 0..<data.count {
                for flip: UInt8 in [0x01, 0x80, 0xFF] {
                    var copy = data
                    copy[position] ^= flip
                    do {
                        _ = try TorchConversion.stateDictTensors(try TorchFile(data: copy, path: name))
                    } catch is InteropError {
                        errors += 1
                    }
                }
            }
            XCTAssertGreaterThan(errors, data.count / 2, "\(name): most corruptions are detected")
        }
        // In the zip format every byte of the storages is covered by a CRC.
        let zip = try Data(contentsOf: try fixture("state_dict_zip.pth"))
        let archive = try ZipArchive(data: zip, path: "z")
        let storage = try XCTUnwrap(archive.entry(named: "state_dict_zip/data/0"))
        var copy = zip
        let extra = Int(zip[storage.localHeaderOffset + 28]) | Int(zip[storage.localHeaderOffset + 29]) << 8
        copy[storage.localHeaderOffset + 30 + storage.name.utf8.count + extra + 100] ^= 1 // inside its 432 data bytes
        assertInteropError(try TorchConversion.stateDictTensors(try TorchFile(data: copy, path: "z")))
    }

    func testStorageShorterThanTensorNeeds() {
        // Zip: the pickle promises 10 floats, data/0 holds 8 bytes.
        let pickle = PickleBuilder.stateDict(numel: 10, size: [10], stride: [1])
        let zip = makeZip([("a/data.pkl", pickle), ("a/data/0", [UInt8](repeating: 0, count: 8))])
        assertInteropError(try TorchConversion.stateDictTensors(try TorchFile(data: zip, path: "short.pth"))) { error in
            XCTAssertTrue(error.description.contains("tensor 'w'") && error.description.contains("needs 40"), error.description)
        }
        // Legacy: the storage section declares 10 elements but the file ends after 8 bytes.
        let legacy = makeLegacy(pickle, storageCount: 10, storageBytes: [UInt8](repeating: 0, count: 8))
        assertInteropError(try TorchFile(data: legacy, path: "short.pth")) { XCTAssertTrue($0.description.contains("storage '0'"), $0.description) }
        // A view reaching past its storage is refused when decoded.
        assertInteropError(try Unpickler.load(PickleBuilder.stateDict(numel: 10, offset: 5, size: [3, 3], stride: [3, 1])))
        // And the well-formed versions of both files are read.
        let good = (0..<40).map(UInt8.init)
        XCTAssertEqual(try TorchConversion.stateDictTensors(try TorchFile(data: makeZip([("a/data.pkl", pickle), ("a/data/0", good)]))).first?.tensor.bytes, good)
        XCTAssertEqual(try TorchConversion.stateDictTensors(try TorchFile(data: makeLegacy(pickle, storageCount: 10, storageBytes: good))).first?.tensor.bytes, good)
    }

    func testMaterializeRechecksHandMadeViews() throws {
        // A reference built through the public initialiser is re-validated before any read.
        let file = try TorchFile(data: makeZip([("a/data.pkl", PickleBuilder.stateDict(numel: 4, size: [4], stride: [1])),
                                                ("a/data/0", [UInt8](repeating: 1, count: 16))]))
        guard case let .tensor(good)? = file.root["w"] else { return XCTFail("no tensor") }
        XCTAssertEqual(try file.materialize(good, name: "w").bytes.count, 16)
        for (shape, strides, offset) in [([5], [1], 0), ([2, 2], [2, 1], 1), ([1 << 40, 1 << 40], [0, 0], 0), ([2], [-1], 1)] {
            let bad = TorchTensorReference(storage: good.storage, storageOffset: offset, shape: shape, strides: strides)
            assertInteropError(try file.materialize(bad, name: "bad"), "\(shape) \(strides) \(offset)")
        }
    }

    func testZip64DirectoryIsRead() throws {
        let pickle = PickleBuilder.stateDict(numel: 4, size: [2, 2], stride: [1, 2])
        let storage: [UInt8] = (0..<16).map(UInt8.init)
        let zip = makeZip([("a/data.pkl", pickle), ("a/data/0", storage)], zip64: true)
        let archive = try ZipArchive(data: zip, path: "zip64.pth")
        XCTAssertEqual(archive.entries.map(\.name), ["a/data.pkl", "a/data/0"])
        XCTAssertEqual(archive.entries.map(\.uncompressedSize), [pickle.count, 16])
        let tensor = try XCTUnwrap(try TorchConversion.stateDictTensors(try TorchFile(data: zip)).first?.tensor)
        // Transposed 2×2 view: elements 0, 2, 1, 3 of the storage.
        XCTAssertEqual(tensor.bytes, [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15])
        // A ZIP64 record claiming more entries than its directory can hold is refused.
        var bad = [UInt8](zip)
        let locator = bad.count - 22 - 20
        let record = Int(bad[locator + 8]) | Int(bad[locator + 9]) << 8
        for i in 0..<8 { bad[record + 32 + i] = i == 7 ? 0x0F : 0xFF }
        assertInteropError(try ZipArchive(data: Data(bad)))
    }

    func testUnknownCompressionIsRefusedClearly() {
        let zip = makeZip([("a/data.pkl", PickleBuilder.stateDict(numel: 1, size: [1], stride: [1]))], method: 12)
        assertInteropError(try TorchFile(data: zip, path: "bzip2.pth")) { error in
            guard case .unsupported = error else { return XCTFail("\(error)") }
            XCTAssertTrue(error.description.contains("compression method 12"), error.description)
        }
    }

    func testDeflatedArchivesReadLikeStoredOnes() throws {
        let expected = try RawSafetensors(url: try fixture("state_dict_expected.safetensors"))
        for (label, data) in [("level 9", DeflatedFixtures.level9), ("level 0", DeflatedFixtures.level0)] {
            let archive = try ZipArchive(data: data, path: label)
            XCTAssertTrue(archive.entries.allSatisfy { $0.method == 8 }, label)
            let tensors = try TorchConversion.stateDictTensors(try TorchFile(data: data, path: label))
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.tensor) }), expected.tensors, label)
        }
        // Every prefix of the compressed data of one entry, and corrupted bytes, are errors (CRC or stream).
        let archive = try ZipArchive(data: DeflatedFixtures.level9)
        let entry = try XCTUnwrap(archive.entry(named: "state_dict_zip/data.pkl"))
        var corrupted = 0
        for position in 0..<DeflatedFixtures.level9.count {
            var copy = DeflatedFixtures.level9
            copy[position] ^= 0x5A
            do { _ = try ZipArchive(data: copy).contents(named: entry.name) } catch is InteropError { corrupted += 1 }
        }
        XCTAssertGreaterThan(corrupted, 0)
    }

    func testNestingBombs() {
        let depth = 100_000
        var lists = PickleBuilder()
        lists.bytes += [UInt8](repeating: 0x5D, count: depth) + [UInt8](repeating: 0x61, count: depth - 1); lists.stop()
        var tuples = PickleBuilder()
        tuples.op(0x4E); tuples.bytes += [UInt8](repeating: 0x85, count: depth); tuples.stop()
        var marks = PickleBuilder()
        marks.bytes += [UInt8](repeating: 0x28, count: depth) + [UInt8](repeating: 0x74, count: depth); marks.stop()
        var memo = PickleBuilder() // [] put 0; then repeatedly: get 0, wrap in a list, put 0
        memo.op(0x5D, 0x71, 0)
        for _ in 0..<depth { memo.op(0x30, 0x5D, 0x68, 0, 0x61, 0x71, 0) }
        memo.stop()
        for (label, bomb) in [("lists", lists), ("tuples", tuples), ("marks", marks), ("memo", memo)] {
            assertInteropError(try Unpickler.load(bomb.bytes), label) { error in
                guard case .limitExceeded = error else { return XCTFail("\(label): \(error)") }
            }
        }
        // Nesting within the limit is fine.
        var shallow = PickleBuilder()
        shallow.op(0x4E); shallow.bytes += [UInt8](repeating: 0x85, count: 50); shallow.stop()
        XCTAssertNoThrow(try Unpickler.load(shallow.bytes))
    }

    func testAbsurdSizesAreRefusedWithoutAllocating() {
        // BINUNICODE / BINBYTES8 lengths far beyond the input.
        assertInteropError(try Unpickler.load([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E]))
        assertInteropError(try Unpickler.load([0x80, 2, 0x8E] + [UInt8](repeating: 0xFF, count: 7) + [0x3F, 0x2E]))
        assertInteropError(try Unpickler.load([0x80, 2, 0x95] + [UInt8](repeating: 0xFF, count: 8) + [0x4E, 0x2E]))
        // A tensor of 2^60 elements viewing one element through zero strides.
        var p = PickleBuilder()
        p.op(0x7D); p.string("w"); p.tensor(numel: 1, size: [1 << 30, 1 << 30], stride: [0, 0]); p.op(0x73); p.stop()
        let zip = makeZip([("a/data.pkl", p.bytes), ("a/data/0", [0, 0, 0, 0])])
        assertInteropError(try TorchConversion.stateDictTensors(try TorchFile(data: zip))) { error in
            guard case .limitExceeded = error else { return XCTFail("\(error)") }
        }
        // Legacy storage count of 2^60.
        let legacy = makeLegacy(PickleBuilder.stateDict(numel: 1, size: [1], stride: [1]), storageCount: 1 << 60, storageBytes: [0, 0, 0, 0])
        assertInteropError(try TorchFile(data: legacy))
        // Zip: central directory claiming 65535 entries; entry sizes of 4 GiB.
        var zipBytes = [UInt8](makeZip([("a/data.pkl", [0x80, 2, 0x4E, 0x2E])]))
        let eocd = zipBytes.count - 22
        zipBytes[eocd + 10] = 0xFF; zipBytes[eocd + 11] = 0xFF
        assertInteropError(try ZipArchive(data: Data(zipBytes)))
        var bigEntry = [UInt8](makeZip([("a/data.pkl", [0x80, 2, 0x4E, 0x2E])]))
        let directory = Int(bigEntry[eocd + 16]) | Int(bigEntry[eocd + 17]) << 8
        for i in 20..<28 { bigEntry[directory + i] = 0xFF }
        assertInteropError(try TorchFile(data: Data(bigEntry)))
        // Safetensors: a header length of 2^63.
        XCTAssertThrowsError(try SafetensorsFile(data: Data([0, 0, 0, 0, 0, 0, 0, 0x80] + Array("{}".utf8))))
    }

    func testOptimizerStateKeyedByTensorsIsSkippedNotFatal() throws {
        // A dict keyed by a tensor (like SGD's state) contributes no names to `convert pth`.
        var p = PickleBuilder()
        p.op(0x7D); p.string("state"); p.op(0x7D); p.tensor(numel: 1, size: [1], stride: [1]); p.int(3); p.op(0x73, 0x73); p.stop()
        let zip = makeZip([("a/data.pkl", p.bytes), ("a/data/0", [0, 0, 0, 0])])
        assertInteropError(try TorchConversion.stateDictTensors(try TorchFile(data: zip, path: "opt.pth"))) { error in
            XCTAssertEqual(error, .unexpectedContent(file: "opt.pth", message: "holds no tensors"))
        }
    }
}
