import Foundation
import XCTest
import SSDInterop
import SSDLayers
import SSDTestSupport

/// Emits pickle opcodes byte by byte, for handcrafted test inputs.
struct PickleBuilder {
    var bytes: [UInt8] = [0x80, 2] // PROTO 2

    mutating func op(_ b: UInt8...) { bytes += b }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        op(0x58); le(UInt64(u.count), 4); bytes += u
    }
    mutating func int(_ v: Int) { op(0x4A); le(UInt64(UInt32(bitPattern: Int32(v))), 4) }
    mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    mutating func le(_ v: UInt64, _ width: Int) { for i in 0..<width { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func intTuple(_ values: [Int]) { op(0x28); for v in values { int(v) }; op(0x74) }
    mutating func stop() { op(0x2E) }

    /// `_rebuild_tensor_v2(storage('0', FloatStorage, numel), offset, size, stride, False, OrderedDict())`.
    mutating func tensor(storageKey: String = "0", numel: Int, offset: Int = 0, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        op(0x28)
        op(0x28); string("storage"); global("torch", "FloatStorage"); string(storageKey); string("cpu"); int(numel); op(0x74)
        op(0x51) // BINPERSID
        int(offset); intTuple(size); intTuple(stride); op(0x89)
        global("collections", "OrderedDict"); op(0x29, 0x52)
        op(0x74, 0x52)
    }

    /// A pickle of `{'w': tensor}`.
    static func stateDict(numel: Int, offset: Int = 0, size: [Int], stride: [Int]) -> [UInt8] {
        var p = PickleBuilder()
        p.op(0x7D); p.string("w"); p.tensor(numel: numel, offset: offset, size: size, stride: stride); p.op(0x73); p.stop()
        return p.bytes
    }
}

/// A minimal STORED zip writer (with an optional method override, to test refusals).
/// With `zip64`, sizes and offsets are saturated in the central directory and given in ZIP64
/// extra fields, and the ZIP64 end-of-central-directory record and locator are written.
func makeZip(_ entries: [(String, [UInt8])], method: UInt16 = 0, zip64: Bool = false) -> Data {
    var out: [UInt8] = []
    var central: [UInt8] = []
    func le(_ v: UInt64, _ w: Int, _ into: inout [UInt8]) { for i in 0..<w { into.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    for (name, data) in entries {
        let offset = out.count
        let crc = testCRC32(data)
        let n = Array(name.utf8)
        le(0x0403_4b50, 4, &out); le(20, 2, &out); le(0, 2, &out); le(UInt64(method), 2, &out); le(0, 4, &out)
        le(UInt64(crc), 4, &out); le(UInt64(data.count), 4, &out); le(UInt64(data.count), 4, &out)
        le(UInt64(n.count), 2, &out); le(0, 2, &out); out += n; out += data
        le(0x0201_4b50, 4, &central); le(20, 2, &central); le(20, 2, &central); le(0, 2, &central); le(UInt64(method), 2, &central)
        le(0, 4, &central); le(UInt64(crc), 4, &central); le(UInt64(data.count), 4, &central); le(UInt64(data.count), 4, &central)
        if zip64 {
            central.removeLast(8)
            le(0xFFFF_FFFF, 4, &central); le(0xFFFF_FFFF, 4, &central)
            le(UInt64(n.count), 2, &central); le(28, 2, &central); le(0, 2, &central); le(0, 2, &central); le(0, 2, &central)
            le(0, 4, &central); le(0xFFFF_FFFF, 4, &central); central += n
            le(1, 2, &central); le(24, 2, &central)
            le(UInt64(data.count), 8, &central); le(UInt64(data.count), 8, &central); le(UInt64(offset), 8, &central)
            continue
        }
        le(UInt64(n.count), 2, &central); le(0, 2, &central); le(0, 2, &central); le(0, 2, &central); le(0, 2, &central)
        le(0, 4, &central); le(UInt64(offset), 4, &central); central += n
    }
    let directoryOffset = out.count
    out += central
    if zip64 {
        let recordOffset = out.count
        le(0x0606_4b50, 4, &out); le(44, 8, &out); le(45, 2, &out); le(45, 2, &out); le(0, 4, &out); le(0, 4, &out)
        le(UInt64(entries.count), 8, &out); le(UInt64(entries.count), 8, &out)
        le(UInt64(central.count), 8, &out); le(UInt64(directoryOffset), 8, &out)
        le(0x0706_4b50, 4, &out); le(0, 4, &out); le(UInt64(recordOffset), 8, &out); le(1, 4, &out)
        le(0x0605_4b50, 4, &out); le(0, 2, &out); le(0, 2, &out); le(0xFFFF, 2, &out); le(0xFFFF, 2, &out)
        le(0xFFFF_FFFF, 4, &out); le(0xFFFF_FFFF, 4, &out); le(0, 2, &out)
        return Data(out)
    }
    le(0x0605_4b50, 4, &out); le(0, 2, &out); le(0, 2, &out); le(UInt64(entries.count), 2, &out); le(UInt64(entries.count), 2, &out)
    le(UInt64(central.count), 4, &out); le(UInt64(directoryOffset), 4, &out); le(0, 2, &out)
    return Data(out)
}

func testCRC32(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in data {
        c ^= UInt32(b)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    }
    return ~c
}

/// A legacy-format stream holding `mainPickle` and one storage '0' of `storageCount` f32 elements.
func makeLegacy(_ mainPickle: [UInt8], storageCount: UInt64, storageBytes: [UInt8]) -> Data {
    var out: [UInt8] = [0x80, 2, 0x8A, 10] + TorchFile.legacyMagic + [0x2E]
    out += [0x80, 2, 0x4D, 0xE9, 0x03, 0x2E] // 1001
    out += [0x80, 2, 0x7D, 0x2E] // {}
    out += mainPickle
    var keys = PickleBuilder(); keys.op(0x28); keys.string("0"); keys.op(0x6C); keys.stop()
    out += keys.bytes
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: storageCount >> (8 * UInt64(i)))) }
    out += storageBytes
    return Data(out)
}

/// Raw contents of a safetensors file: dtype, shape and bytes of each tensor, plus metadata.
struct RawSafetensors: Equatable {
    var tensors: [String: TorchTensor]
    var metadata: [String: String]

    init(data: Data, path: String) throws {
        let file = try SafetensorsFile(data: data, path: path)
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        let start = 8 + Int(n)
        var tensors: [String: TorchTensor] = [:]
        for (name, entry) in file.entries {
            let dtype = entry.dtype
            let bytes = [UInt8](data[(data.startIndex + start + entry.range.lowerBound)..<(data.startIndex + start + entry.range.upperBound)])
            tensors[name] = TorchTensor(dtype: dtype, shape: entry.shape, bytes: bytes)
        }
        self.tensors = tensors
        metadata = file.metadata
    }

    init(url: URL) throws { try self.init(data: try Data(contentsOf: url), path: url.path) }
}

func fixture(_ name: String) throws -> URL {
    guard let url = Fixtures.url("torch_interop/\(name)") else { throw XCTSkip("fixture torch_interop/\(name) missing") }
    return url
}

/// Asserts `body` throws an `InteropError` (not any other error, not a crash).
func assertInteropError<T>(_ body: @autoclosure () throws -> T, _ message: String = "", file: StaticString = #filePath, line: UInt = #line,
                           _ check: (InteropError) -> Void = { _ in }) {
    do {
        _ = try body()
        XCTFail("expected an InteropError \(message)", file: file, line: line)
    } catch let error as InteropError {
        check(error)
    } catch {
        XCTFail("expected an InteropError, got \(error) \(message)", file: file, line: line)
    }
}
