import Foundation
import SSDFiles

/// A materialised tensor: contiguous (row-major) little-endian bytes of its dtype.
public struct TorchTensor: Equatable, Sendable {
    public var dtype: TorchDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(dtype: TorchDType, shape: [Int], bytes: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Number of elements (nil if the shape is negative or overflows).
    public var count: Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    /// Whether `bytes` holds exactly the elements `shape` and `dtype` call for.
    public var isConsistent: Bool {
        guard let count else { return false }
        let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        return !overflow && needed == bytes.count
    }
}

/// A PyTorch `.pth` file read without Python: the zip format (PyTorch ≥ 1.6,
/// `<archive>/data.pkl` + `<archive>/data/<key>`) or the legacy stream (magic number, protocol,
/// sys info, pickle, storage keys, raw storages). The pickle is decoded by the restricted
/// `Unpickler`; tensors are materialised on request, after checking their storage holds
/// every element they address. Total materialised bytes are capped at 4 × the storage bytes
/// (the file size, plus what the pickle's storages need of a zip's compressed entries) + 64 MiB,
/// so views sharing a storage cannot multiply memory without bound.
///
/// Memory follows what is used: a zip entry is inflated only when a tensor is materialised from
/// it, and only if its declared size is exactly what the pickle's storage holds (elements × dtype
/// size); an entry declaring more, or a stream inflating past its declared size, is refused
/// before (or as soon as) the excess would be allocated. The pickle itself is capped at
/// `maximumPickleBytes`.
public struct TorchFile {
    public let path: String
    /// The decoded top-level object.
    public let root: PickleValue
    /// True for the zip format, false for the legacy stream.
    public let isZip: Bool
    private let archive: ZipArchive?
    private let archivePrefix: String
    /// Legacy format: each storage's bytes by key.
    private let legacyStorages: [String: Data]
    private let budget: MaterializationBudget

    /// The largest `data.pkl` read (256 MiB: the pickle of a model with millions of tensors).
    public static let maximumPickleBytes = 1 << 28

    /// The legacy format's magic number, 0x1950a86a20f9469cfc6c, as LONG1 bytes.
    public static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Reads `url`.
    public init(url: URL) throws {
        if let problem = RegularFile.problem(url.path) { throw InteropError.unreadable(file: url.path, reason: problem) }
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw InteropError.corrupt(file: url.path, field: "file", message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(data: data, path: url.path)
    }

    /// Parses in-memory bytes; `path` is used in error messages.
    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        if data.count >= 4, data.prefix(4).elementsEqual([0x50, 0x4B, 0x03, 0x04]) {
            let archive = try ZipArchive(data: data, path: path)
            guard let pickle = archive.entries.first(where: { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }) else {
                throw InteropError.unexpectedContent(file: path, message: "zip archive has no data.pkl record (not a torch.save file)")
            }
            let prefix = String(pickle.name.dropLast("data.pkl".count))
            archivePrefix = prefix
            if let order = try archive.contents(named: prefix + "byteorder", maximumSize: 16),
               String(decoding: order, as: UTF8.self) != "little" {
                throw InteropError.unsupported(file: path, field: "byteorder", message: "big-endian tensors")
            }
            var unpickler = Unpickler(bytes: Array(try archive.contents(of: pickle, maximumSize: Self.maximumPickleBytes)), path: path)
            root = try unpickler.load()
            // Compressed entries may hold more than the file size: budget on what the pickle's
            // storages need of them (never more than an entry declares).
            var storageBytes = data.count
            for storage in unpickler.storages.values {
                guard let entry = archive.entry(named: prefix + "data/" + storage.key) else { continue }
                let (elements, o1) = storage.rootOffset.addingReportingOverflow(storage.elementCount)
                let (needed, o2) = elements.multipliedReportingOverflow(by: storage.dtype.size)
                let (sum, o3) = storageBytes.addingReportingOverflow(min(o1 || o2 ? Int.max : needed, entry.uncompressedSize))
                storageBytes = o3 ? Int.max / 8 : sum
            }
            budget = MaterializationBudget(bytes: Self.budgetBytes(storageBytes))
            self.archive = archive
            isZip = true
            legacyStorages = [:]
        } else if data.first == 0x80 {
            budget = MaterializationBudget(bytes: Self.budgetBytes(data.count))
            (root, legacyStorages) = try Self.readLegacy(Array(data), path: path)
            archive = nil
            archivePrefix = ""
            isZip = false
        } else {
            budget = MaterializationBudget(bytes: 0)
            throw InteropError.unsupported(file: path, field: "file format",
                                           message: "neither a zip-format nor a legacy pickle-format .pth (tar files from PyTorch < 0.4 are not read)")
        }
    }

    /// 4 × the storage bytes + 64 MiB, saturating.
    private static func budgetBytes(_ storageBytes: Int) -> Int {
        let (times4, overflow) = min(storageBytes, Int.max / 8).multipliedReportingOverflow(by: 4)
        return overflow ? Int.max / 2 : times4 + (64 << 20)
    }

    private static func readLegacy(_ bytes: [UInt8], path: String) throws -> (PickleValue, [String: Data]) {
        var unpickler = Unpickler(bytes: bytes, path: path)
        guard case let .bigInt(magic) = try unpickler.load(), magic == legacyMagic else {
            throw InteropError.corrupt(file: path, field: "legacy header", message: "wrong magic number (not a torch.save file)")
        }
        unpickler = Unpickler(bytes: bytes, offset: unpickler.offset, path: path)
        guard let version = try unpickler.load().intValue, version == 1001 else {
            throw InteropError.unsupported(file: path, field: "legacy header", message: "protocol version (expected 1001)")
        }
        unpickler = Unpickler(bytes: bytes, offset: unpickler.offset, path: path)
        let systemInfo = try unpickler.load()
        if case let .bool(little)? = systemInfo["little_endian"], !little {
            throw InteropError.unsupported(file: path, field: "sys_info", message: "big-endian tensors")
        }
        unpickler = Unpickler(bytes: bytes, offset: unpickler.offset, path: path)
        let root = try unpickler.load()
        let storages = unpickler.storages
        var keysReader = Unpickler(bytes: bytes, offset: unpickler.offset, path: path)
        guard case let .list(keyValues) = try keysReader.load() else {
            throw InteropError.corrupt(file: path, field: "storage key list", message: "not a list")
        }
        var position = keysReader.offset
        var data: [String: Data] = [:]
        for keyValue in keyValues {
            guard let key = keyValue.stringValue else {
                throw InteropError.corrupt(file: path, field: "storage key list", message: "holds a \(keyValue.kind)")
            }
            let field = "storage '\(key)'"
            guard let storage = storages[key] else {
                throw InteropError.corrupt(file: path, field: field, message: "listed but never referenced, so its dtype is unknown")
            }
            guard position <= bytes.count - 8 else {
                throw InteropError.corrupt(file: path, field: field, message: "truncated before its element count")
            }
            var count: UInt64 = 0
            for i in 0..<8 { count |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
            position += 8
            guard count <= UInt64(bytes.count) else {
                throw InteropError.corrupt(file: path, field: field, message: "element count \(count) exceeds the file size")
            }
            let length = try Checked.multiply(Int(count), storage.dtype.size, file: path, field: field)
            guard length <= bytes.count - position else {
                throw InteropError.corrupt(file: path, field: field,
                                           message: "\(length) bytes of data run past the end of the file (\(bytes.count - position) left)")
            }
            data[key] = Data(bytes[position..<(position + length)])
            position += length
        }
        return (root, data)
    }

    /// The raw bytes of the root storage `key`, which must hold `needed` bytes. A zip entry must
    /// declare exactly that many (PyTorch writes each storage whole): one declaring fewer cannot
    /// hold the tensor, one declaring more disagrees with the pickle and is not inflated.
    private func storageBytes(_ key: String, needed: Int, field: String) throws -> Data {
        if let archive {
            let name = archivePrefix + "data/" + key
            guard let entry = archive.entry(named: name) else {
                throw InteropError.corrupt(file: path, field: "storage '\(key)'", message: "no record \(name) in the archive")
            }
            guard entry.uncompressedSize >= needed else {
                throw InteropError.corrupt(file: path, field: field,
                                           message: "storage '\(key)' has \(entry.uncompressedSize) bytes, the tensor needs \(needed)")
            }
            guard entry.uncompressedSize == needed else {
                throw InteropError.corrupt(file: path, field: field,
                                           message: "zip entry '\(name)' declares \(entry.uncompressedSize) bytes, but the pickle's storage '\(key)' holds \(needed) (not inflated)")
            }
            return try archive.contents(of: entry, maximumSize: needed)
        }
        guard let data = legacyStorages[key] else {
            throw InteropError.corrupt(file: path, field: "storage '\(key)'", message: "missing from the storage section")
        }
        return data
    }

    /// The tensor `reference` as contiguous bytes; `name` is used in errors.
    public func materialize(_ reference: TorchTensorReference, name: String) throws -> TorchTensor {
        let storage = reference.storage
        let size = storage.dtype.size
        let field = "tensor '\(name)'"
        if let problem = reference.geometryProblem { throw InteropError.corrupt(file: path, field: field, message: problem) }
        let neededElements = try Checked.add(storage.rootOffset, storage.elementCount, file: path, field: field)
        let needed = try Checked.multiply(neededElements, size, file: path, field: field)
        let outputBytes = try Checked.multiply(reference.elementCount, size, file: path, field: field)
        try budget.check(outputBytes, path: path, field: field)
        let data = try storageBytes(storage.key, needed: needed, field: field)
        guard data.count >= needed else {
            throw InteropError.corrupt(file: path, field: field,
                                       message: "storage '\(storage.key)' has \(data.count) bytes, the tensor needs \(needed)")
        }
        try budget.spend(outputBytes, path: path, field: field)
        var out = [UInt8](repeating: 0, count: outputBytes)
        let base = storage.rootOffset + reference.storageOffset
        data.withUnsafeBytes { raw in
            out.withUnsafeMutableBytes { destination in
                copyStrided(from: raw, base: base, shape: reference.shape, strides: reference.strides,
                            elementSize: size, into: destination)
            }
        }
        return TorchTensor(dtype: storage.dtype, shape: reference.shape, bytes: out)
    }
}

/// Copies a strided view (already validated to lie inside `source`) into contiguous order.
func copyStrided(from source: UnsafeRawBufferPointer, base: Int, shape: [Int], strides: [Int], elementSize: Int,
                 into destination: UnsafeMutableRawBufferPointer) {
    let count = shape.reduce(1, *)
    guard count > 0, let src = source.baseAddress, let dst = destination.baseAddress else { return }
    // Contiguous fast path.
    var expected = 1
    var contiguous = true
    for (size, stride) in zip(shape, strides).reversed() where size > 1 {
        if stride != expected { contiguous = false; break }
        expected *= size
    }
    if contiguous {
        dst.copyMemory(from: src + base * elementSize, byteCount: count * elementSize)
        return
    }
    var index = [Int](repeating: 0, count: shape.count)
    var offset = base
    for n in 0..<count {
        (dst + n * elementSize).copyMemory(from: src + offset * elementSize, byteCount: elementSize)
        var d = shape.count - 1
        while d >= 0 {
            index[d] += 1
            offset += strides[d]
            if index[d] < shape[d] { break }
            offset -= strides[d] * shape[d]
            index[d] = 0
            d -= 1
        }
    }
}

/// Bytes still allowed to be materialised from one file.
final class MaterializationBudget: @unchecked Sendable {
    private var remaining: Int
    init(bytes: Int) { remaining = bytes }

    /// Throws if `bytes` would exceed what is left, spending nothing.
    func check(_ bytes: Int, path: String, field: String) throws {
        guard bytes <= remaining else {
            throw InteropError.limitExceeded(file: path, field: field,
                                             message: "tensors would expand to more than 4× the stored data (views of shared storages)")
        }
    }

    func spend(_ bytes: Int, path: String, field: String) throws {
        try check(bytes, path: path, field: field)
        remaining -= bytes
    }
}
