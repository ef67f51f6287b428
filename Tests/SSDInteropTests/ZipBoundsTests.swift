import Foundation
import XCTest
import SSDInterop
import SSDTestSupport

/// Zip entries are inflated (by zlib) only up to what the pickle's storages need: an entry
/// declaring more, or a stream producing more than it declares, is refused before the excess
/// is allocated; declared sizes impossible for their compressed bytes are refused on open.
final class ZipBoundsTests: XCTestCase {
    /// A zip whose entries carry their own method, stored bytes, declared size and CRC.
    func makeArchive(_ items: [(name: String, method: Int, stored: [UInt8], size: Int, crc: UInt32)]) -> Data {
        ZipBuilder.archive(items.map { ZipItem(name: $0.name, method: $0.method, stored: $0.stored, uncompressedSize: $0.size, crc: $0.crc) })
    }

    /// `bytes` as one final stored DEFLATE block.
    func storedBlock(_ bytes: [UInt8]) -> [UInt8] {
        [0x01, UInt8(bytes.count & 0xFF), UInt8(bytes.count >> 8), ~UInt8(bytes.count & 0xFF), ~UInt8(bytes.count >> 8)] + bytes
    }

    let storage = (0..<40).map { UInt8($0) }
    var pickle: [UInt8] { PickleBuilder.stateDict(numel: 10, size: [10], stride: [1]) }

    /// `{'w': 10 floats}` with storage '0' given as `entry`.
    func pth(_ entry: (name: String, method: Int, stored: [UInt8], size: Int, crc: UInt32)) -> Data {
        makeArchive([("a/data.pkl", 0, pickle, pickle.count, testCRC32(pickle)), entry])
    }

    func testDeflatedStorageReadsBack() throws {
        let file = try TorchFile(data: pth(("a/data/0", 8, storedBlock(storage), 40, testCRC32(storage))), path: "ok.pth")
        XCTAssertEqual(try TorchConversion.stateDictTensors(file).first?.tensor.bytes, storage)
    }

    func testEntryDeclaringMoreThanItsStorageIsNotInflated() throws {
        // 2000 declared bytes for a 40-byte storage: refused by name, before inflating (the stream
        // itself only holds 40 bytes, so inflating would have failed differently).
        let file = try TorchFile(data: pth(("a/data/0", 8, storedBlock(storage), 2000, 0)), path: "big.pth")
        assertInteropError(try TorchConversion.stateDictTensors(file)) { error in
            XCTAssertTrue(error.description.contains("big.pth") && error.description.contains("a/data/0")
                          && error.description.contains("declares 2000") && error.description.contains("not inflated"), error.description)
        }
        // Fewer declared bytes than the tensor needs is the short-storage error.
        let short = try TorchFile(data: pth(("a/data/0", 8, storedBlock(Array(storage[0..<8])), 8, 0)), path: "short.pth")
        assertInteropError(try TorchConversion.stateDictTensors(short)) { error in
            XCTAssertTrue(error.description.contains("tensor 'w'") && error.description.contains("needs 40"), error.description)
        }
    }

    func testStreamLongerThanDeclaredStopsThere() throws {
        // The entry declares 40 bytes (what the storage needs) but its stream holds 60.
        let longer = storage + [UInt8](repeating: 7, count: 20)
        let file = try TorchFile(data: pth(("a/data/0", 8, storedBlock(longer), 40, testCRC32(storage))), path: "long.pth")
        assertInteropError(try TorchConversion.stateDictTensors(file)) { error in
            XCTAssertTrue(error.description.contains("a/data/0") && error.description.contains("more than the 40 bytes"), error.description)
        }
    }

    func testTruncatedAndCorruptStreamsAreErrors() throws {
        let truncated = Array(storedBlock(storage).prefix(25))
        let file = try TorchFile(data: pth(("a/data/0", 8, truncated, 40, testCRC32(storage))), path: "cut.pth")
        assertInteropError(try TorchConversion.stateDictTensors(file)) { XCTAssertTrue($0.description.contains("truncated"), $0.description) }
        // A reserved block type (BTYPE 11) is zlib's "invalid block type", named with the entry.
        let reserved = try TorchFile(data: pth(("a/data/0", 8, [0x07] + storage, 40, testCRC32(storage))), path: "bad.pth")
        assertInteropError(try TorchConversion.stateDictTensors(reserved)) {
            XCTAssertTrue($0.description.contains("a/data/0") && $0.description.contains("deflate"), $0.description)
        }
        // A wrong CRC is caught after inflating.
        let crc = try TorchFile(data: pth(("a/data/0", 8, storedBlock(storage), 40, testCRC32(storage) ^ 1)), path: "crc.pth")
        assertInteropError(try TorchConversion.stateDictTensors(crc)) { XCTAssertTrue($0.description.contains("CRC-32"), $0.description) }
    }

    func testImpossibleDeclaredSizesAreRefusedOnOpen() {
        // 10 MB from 45 compressed bytes exceeds DEFLATE's 1032:1; a stored entry must declare its stored size.
        assertInteropError(try ZipArchive(data: pth(("a/data/0", 8, storedBlock(storage), 10_000_000, 0)), path: "ratio.pth")) {
            XCTAssertTrue($0.description.contains("impossible"), $0.description)
        }
        assertInteropError(try ZipArchive(data: pth(("a/data/0", 0, storage, 41, 0)), path: "stored.pth")) {
            XCTAssertTrue($0.description.contains("impossible"), $0.description)
        }
    }

    func testReadersStateHowMuchTheyNeed() throws {
        let archive = try ZipArchive(data: pth(("a/data/0", 8, storedBlock(storage), 40, testCRC32(storage))), path: "z.pth")
        let entry = try XCTUnwrap(archive.entry(named: "a/data/0"))
        XCTAssertEqual(try archive.contents(of: entry, maximumSize: 40), Data(storage))
        assertInteropError(try archive.contents(of: entry, maximumSize: 39)) { error in
            guard case .limitExceeded = error else { return XCTFail("\(error)") }
        }
    }
}
