import Foundation
import SSDEngine
import SSDFiles

/// Errors reading or writing safetensors files; each names the file and, where there is one,
/// the tensor.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    case io(file: String, message: String)
    case header(file: String, message: String)
    case missingTensor(file: String, name: String)
    case wrongShape(file: String, name: String, expected: [Int], got: [Int])
    case unsupportedDType(file: String, name: String, dtype: String)
    case badOffsets(file: String, name: String, message: String)

    public var description: String {
        switch self {
        case let .io(file, message): return "\(file): \(message)"
        case let .header(file, message): return "\(file): invalid safetensors header: \(message)"
        case let .missingTensor(file, name): return "\(file): no tensor named '\(name)'"
        case let .wrongShape(file, name, expected, got):
            return "\(file): tensor '\(name)' has shape \(got), expected \(expected)"
        case let .unsupportedDType(file, name, dtype): return "\(file): tensor '\(name)' has unsupported dtype \(dtype)"
        case let .badOffsets(file, name, message): return "\(file): tensor '\(name)': \(message)"
        }
    }
}

/// A safetensors file read into memory: an 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets}, "__metadata__": {…}}`, then raw little-endian data.
///
/// The header is fully validated on open, as the safetensors format requires, so later reads
/// cannot go out of bounds and no two tensors can share bytes: the header length is at most
/// 100 MB and inside the file, the header is a JSON object starting with `{`; each tensor has a
/// known dtype, a shape of at most `maximumRank` non-negative dimensions (each below 2^31) whose
/// element count and byte size do not overflow and equal its `data_offsets` range; and the
/// ranges, sorted, tile the data section exactly: no overlap, no hole, nothing out of range and
/// no byte left over. Every error names the file and the tensor or field at fault.
public struct SafetensorsFile {
    /// One entry of the header.
    public struct Entry: Equatable, Sendable {
        public var dtype: DType
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>
    }

    /// The safetensors reference implementation caps the header at 100 MB.
    static let maximumHeaderBytes = 100_000_000
    /// The most dimensions a tensor may have (PyTorch's historical limit).
    public static let maximumRank = 64
    /// The largest single dimension accepted.
    public static let maximumDimension = Int(Int32.max)

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let bytes: Data
    private let dataStart: Int

    /// Tensor names, sorted.
    public var names: [String] { entries.keys.sorted() }

    /// Opens and validates `url`.
    public init(url: URL) throws {
        let path = url.path
        if let problem = RegularFile.problem(path) { throw SafetensorsError.io(file: path, message: "cannot read: \(problem)") }
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw SafetensorsError.io(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, path: path)
    }

    /// Parses in-memory bytes; `path` is used in error messages.
    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.bytes = data
        guard data.count >= 8 else { throw SafetensorsError.header(file: path, message: "file shorter than 8 bytes") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard n <= UInt64(Self.maximumHeaderBytes) else {
            throw SafetensorsError.header(file: path, message: "header length \(n) exceeds the \(Self.maximumHeaderBytes)-byte limit")
        }
        guard Int(n) <= data.count - 8 else {
            throw SafetensorsError.header(file: path, message: "header length \(n) exceeds the file (\(data.count) bytes)")
        }
        let headerLength = Int(n)
        dataStart = 8 + headerLength
        guard headerLength >= 2, data[data.startIndex + 8] == UInt8(ascii: "{") else {
            throw SafetensorsError.header(file: path, message: "the header does not start with '{' (not a safetensors file?)")
        }
        let headerBytes = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + dataStart))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw SafetensorsError.header(file: path, message: "not JSON (\(error.localizedDescription))")
        }
        guard let object = json as? [String: Any] else {
            throw SafetensorsError.header(file: path, message: "not a JSON object")
        }
        let dataCount = data.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw SafetensorsError.header(file: path, message: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw SafetensorsError.header(file: path, message: "__metadata__ value '\(k)' is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try Self.entry(name, value, dataCount: dataCount, path: path)
        }
        try Self.checkTiling(entries, dataCount: dataCount, path: path)
        self.entries = entries
        self.metadata = metadata
    }

    /// One header entry, checked on its own: dtype, shape, and a byte range that fits the data
    /// section and matches the shape.
    private static func entry(_ name: String, _ value: Any, dataCount: Int, path: String) throws -> Entry {
        guard let info = value as? [String: Any] else {
            throw SafetensorsError.header(file: path, message: "entry '\(name)' is not an object")
        }
        guard let dtype = info["dtype"] as? String else {
            throw SafetensorsError.header(file: path, message: "entry '\(name)' has no dtype")
        }
        guard let type = DType(rawValue: dtype) else {
            throw SafetensorsError.unsupportedDType(file: path, name: name, dtype: dtype)
        }
        guard let rawShape = info["shape"] as? [Any], let shape = integers(rawShape) else {
            throw SafetensorsError.header(file: path, message: "entry '\(name)' has no shape, or a shape that is not a list of integers")
        }
        guard shape.count <= maximumRank else {
            throw SafetensorsError.badOffsets(file: path, name: name, message: "shape has \(shape.count) dimensions (at most \(maximumRank))")
        }
        if let bad = shape.firstIndex(where: { $0 < 0 || $0 > maximumDimension }) {
            throw SafetensorsError.badOffsets(file: path, name: name,
                                              message: "shape[\(bad)] = \(shape[bad]) is not a dimension (0…\(maximumDimension))")
        }
        guard let rawOffsets = info["data_offsets"] as? [Any], let offsets = integers(rawOffsets), offsets.count == 2 else {
            throw SafetensorsError.header(file: path, message: "entry '\(name)' has no data_offsets, or not two integers")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin >= 0, begin <= end, end <= dataCount else {
            throw SafetensorsError.badOffsets(file: path, name: name,
                                              message: "data_offsets [\(begin), \(end)] outside the \(dataCount) data bytes")
        }
        // Element count and byte size, overflow-checked. The product of the non-zero
        // dimensions must fit too, so a zero-element tensor's strides cannot overflow either.
        var extent = 1
        for d in shape where d > 0 {
            let (product, overflow) = extent.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw SafetensorsError.badOffsets(file: path, name: name, message: "shape \(shape): element count overflows")
            }
            extent = product
        }
        let (byteSize, overflow) = extent.multipliedReportingOverflow(by: type.size)
        guard !overflow else {
            throw SafetensorsError.badOffsets(file: path, name: name,
                                              message: "shape \(shape) of \(dtype): \(extent) elements of \(type.size) bytes overflow")
        }
        let needed = shape.contains(0) ? 0 : byteSize
        guard needed == end - begin else {
            throw SafetensorsError.badOffsets(file: path, name: name,
                                              message: "shape \(shape) of \(dtype) needs \(needed) bytes, data_offsets [\(begin), \(end)] give \(end - begin)")
        }
        return Entry(dtype: type, shape: shape, range: begin..<end)
    }

    /// The ranges, sorted, must tile `0..<dataCount` exactly: no two tensors share a byte, no
    /// byte belongs to none.
    private static func checkTiling(_ entries: [String: Entry], dataCount: Int, path: String) throws {
        let sorted = entries.sorted { a, b in
            (a.value.range.lowerBound, a.value.range.upperBound, a.key) < (b.value.range.lowerBound, b.value.range.upperBound, b.key)
        }
        var covered = 0
        var previous: (name: String, range: Range<Int>)?
        for (name, entry) in sorted {
            let range = entry.range
            if range.lowerBound < covered {
                let other = previous.map { "tensor '\($0.name)' [\($0.range.lowerBound), \($0.range.upperBound)]" } ?? "another tensor"
                throw SafetensorsError.badOffsets(file: path, name: name,
                                                  message: "data_offsets [\(range.lowerBound), \(range.upperBound)] overlap \(other)")
            }
            if range.lowerBound > covered {
                let after = previous.map { "tensor '\($0.name)' ends at \(covered)" } ?? "the data section starts at 0"
                throw SafetensorsError.badOffsets(file: path, name: name,
                                                  message: "data_offsets start at \(range.lowerBound) but \(after): bytes [\(covered), \(range.lowerBound)) belong to no tensor")
            }
            covered = range.upperBound
            if !range.isEmpty { previous = (name, range) }
        }
        guard covered == dataCount else {
            throw SafetensorsError.header(file: path, message: "the tensors cover \(covered) of the \(dataCount) data bytes: \(dataCount - covered) trailing bytes belong to no tensor")
        }
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            guard let n = v as? Int else { return nil }
            out.append(n)
        }
        return out
    }

    private func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(file: path, name: name) }
        return e
    }

    /// Calls `body` with the raw bytes of a tensor.
    private func withBytes<R>(_ e: Entry, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[(dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)]))
        }
    }

    /// A tensor's bytes as stored (little-endian, its own dtype).
    public func rawBytes(_ name: String) throws -> [UInt8] {
        withBytes(try entry(name)) { [UInt8]($0) }
    }

    /// A tensor as f32: F32 as is, F16 and BF16 widened exactly, F64 rounded.
    public func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        let t = Tensor(shape: e.shape)
        try decodeFloats(e, name: name, into: t.data)
        return t
    }

    /// Reads tensor `name` into `destination`, whose shape it must have.
    public func load(_ name: String, into destination: Tensor) throws {
        let e = try entry(name)
        guard e.shape == destination.shape else {
            throw SafetensorsError.wrongShape(file: path, name: name, expected: destination.shape, got: e.shape)
        }
        try decodeFloats(e, name: name, into: destination.data)
        destination.markModified()
    }

    private func decodeFloats(_ e: Entry, name: String, into out: UnsafeMutablePointer<Float>) throws {
        try withBytes(e) { raw in
            switch e.dtype {
            case .float32:
                let n = raw.count / 4
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .float16:
                let n = raw.count / 2
                for i in 0..<n {
                    out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                }
            case .bfloat16:
                let n = raw.count / 2
                for i in 0..<n {
                    let b = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    out[i] = Float(bitPattern: UInt32(b) << 16)
                }
            case .float64:
                let n = raw.count / 8
                for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            default:
                throw SafetensorsError.unsupportedDType(file: path, name: name, dtype: e.dtype.rawValue)
            }
        }
    }

    /// An integer tensor (I64, I32, U8, BOOL) as Int64 values, with its shape.
    public func integers(_ name: String) throws -> (values: [Int64], shape: [Int]) {
        let e = try entry(name)
        let values: [Int64] = try withBytes(e) { raw in
            switch e.dtype {
            case .int64: return (0..<(raw.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .int32: return (0..<(raw.count / 4)).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            case .uint8, .bool: return raw.map { Int64($0) }
            default: throw SafetensorsError.unsupportedDType(file: path, name: name, dtype: e.dtype.rawValue)
            }
        }
        return (values, e.shape)
    }
}

/// Writes safetensors files (F32 data) atomically: to a temporary file beside the target,
/// then renamed over it, so a reader never sees a half-written file.
public enum SafetensorsWriter {
    /// One tensor to write, of any dtype: its name, dtype ("F32", "I64", …), shape, byte count,
    /// and a closure appending exactly that many little-endian bytes.
    public struct Entry {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int
        public var appendBytes: (inout Data) -> Void

        public init(name: String, dtype: DType, shape: [Int], byteCount: Int, appendBytes: @escaping (inout Data) -> Void) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.byteCount = byteCount
            self.appendBytes = appendBytes
        }
    }

    /// The serialised bytes of `entries` (written in the given order) and `metadata`.
    public static func encode(entries: [Entry], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for e in entries {
            guard e.name != "__metadata__", header[e.name] == nil else {
                throw EngineError.invalidArgument("safetensors: duplicate or reserved tensor name '\(e.name)'")
            }
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]] as [String: Any]
            offset += e.byteCount
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data section starts 8-byte aligned.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for e in entries {
            let before = out.count
            e.appendBytes(&out)
            guard out.count - before == e.byteCount else {
                throw EngineError.invalidArgument("safetensors: tensor '\(e.name)' wrote \(out.count - before) bytes, declared \(e.byteCount)")
            }
        }
        return out
    }

    /// The serialised bytes of f32 `tensors` (written in the given order) and `metadata`.
    public static func encode(_ tensors: [(String, Tensor)], metadata: [String: String] = [:]) throws -> Data {
        // Tensors are little-endian f32 on every platform we build for.
        try encode(entries: tensors.map { name, t in
            Entry(name: name, dtype: .float32, shape: t.shape, byteCount: 4 * t.count) { $0.append(UnsafeBufferPointer(start: t.data, count: t.count)) }
        }, metadata: metadata)
    }

    /// Writes `tensors` and `metadata` to `url` atomically.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        let data = try encode(tensors, metadata: metadata)
        try writeAtomically(data, to: url)
    }
}

/// Writes `data` to a temporary file in the destination's folder, then renames it into place.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let dir = url.deletingLastPathComponent()
    let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
    do {
        try data.write(to: tmp)
        // rename(2) replaces the destination atomically.
        guard rename(tmp.path, url.path) == 0 else {
            throw SafetensorsError.io(file: url.path, message: "cannot rename into place: \(String(cString: strerror(errno)))")
        }
    } catch let error as SafetensorsError {
        try? FileManager.default.removeItem(at: tmp)
        throw error
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw SafetensorsError.io(file: url.path, message: "cannot write: \(error.localizedDescription)")
    }
}
