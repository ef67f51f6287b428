import Foundation

/// A read-only view of a zip archive held in memory, as PyTorch (≥ 1.6) writes `.pth` files:
/// the central directory is parsed and validated on open (ZIP64 included); entry data is
/// returned only after its local header, bounds and CRC-32 have been checked.
///
/// STORED entries (what PyTorch writes) and DEFLATE entries (a re-zipped file; inflated by zlib)
/// can be read; other methods are refused with `InteropError.unsupported`. No size read from the
/// archive is trusted before it is checked against the bytes present, and a reader states how
/// many bytes it needs (`maximumSize`): an entry declaring more is refused before anything is
/// allocated or inflated, so memory follows what the caller uses, not what the archive claims.
public struct ZipArchive {
    /// One central-directory record.
    public struct Entry: Equatable, Sendable {
        public var name: String
        /// 0 = STORED, 8 = DEFLATE, …
        public var method: Int
        public var compressedSize: Int
        public var uncompressedSize: Int
        public var crc32: UInt32
        public var localHeaderOffset: Int
    }

    /// Names used in error messages.
    public let path: String
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let bytes: Data
    private let index: [String: Int]

    /// An upper bound on the number of entries, far above what any model file holds.
    static let maximumEntries = 1_000_000

    /// Parses the central directory of `data`; `path` is used in error messages.
    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.bytes = data
        let entries = try data.withUnsafeBytes { raw in try Self.readDirectory(Reader(raw, path: path)) }
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() where index[entry.name] == nil { index[entry.name] = i }
        self.entries = entries
        self.index = index
    }

    /// The entry named exactly `name`, if any.
    public func entry(named name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The uncompressed bytes of `entry` (STORED or DEFLATE), checked against its CRC-32.
    /// An entry declaring more than `maximumSize` bytes is refused (`limitExceeded`) before any
    /// allocation; a DEFLATE stream producing more than it declares is refused as soon as it does.
    public func contents(of entry: Entry, maximumSize: Int = Int.max) throws -> Data {
        let field = "zip entry '\(entry.name)'"
        guard entry.uncompressedSize <= maximumSize else {
            throw InteropError.limitExceeded(file: path, field: field,
                                             message: "declares \(entry.uncompressedSize) bytes, more than the \(maximumSize) its reader needs")
        }
        guard entry.method == 0 || entry.method == 8 else {
            throw InteropError.unsupported(file: path, field: field,
                                           message: "compression method \(entry.method) (only STORED and DEFLATE entries are read)")
        }
        if entry.method == 0 && entry.compressedSize != entry.uncompressedSize {
            throw InteropError.corrupt(file: path, field: field, message: "stored entry with different compressed and uncompressed sizes")
        }
        return try bytes.withUnsafeBytes { raw in
            let reader = Reader(raw, path: path)
            let offset = entry.localHeaderOffset
            guard try reader.uint32(at: offset, field: field) == 0x0403_4b50 else {
                throw InteropError.corrupt(file: path, field: field, message: "no local header signature at offset \(offset)")
            }
            let nameLength = Int(try reader.uint16(at: offset + 26, field: field))
            let extraLength = Int(try reader.uint16(at: offset + 28, field: field))
            let start = try Checked.add(offset + 30, nameLength + extraLength, file: path, field: field)
            let end = try Checked.add(start, entry.compressedSize, file: path, field: field)
            guard end <= raw.count else {
                throw InteropError.corrupt(file: path, field: field,
                                           message: "data [\(start), \(end)) runs past the end of the archive (\(raw.count) bytes)")
            }
            let stored = UnsafeRawBufferPointer(rebasing: raw[start..<end])
            let output: Data
            if entry.method == 8 {
                output = try Inflate.decompress(stored, expectedSize: entry.uncompressedSize, path: path, field: field)
            } else {
                output = Data(stored)
            }
            let crc = output.withUnsafeBytes { CRC32.checksum($0) }
            guard crc == entry.crc32 else {
                throw InteropError.corrupt(file: path, field: field,
                                           message: "CRC-32 mismatch (stored \(hex(entry.crc32)), computed \(hex(crc)))")
            }
            return output
        }
    }

    /// The bytes of the entry named `name`, or nil if there is none; `maximumSize` as in `contents(of:)`.
    public func contents(named name: String, maximumSize: Int = Int.max) throws -> Data? {
        guard let entry = entry(named: name) else { return nil }
        return try contents(of: entry, maximumSize: maximumSize)
    }

    // MARK: - Central directory

    private static func readDirectory(_ reader: Reader) throws -> [Entry] {
        let path = reader.path
        let count = reader.count
        guard count >= 22 else { throw InteropError.corrupt(file: path, field: "zip archive", message: "shorter than an end-of-central-directory record") }
        // The EOCD record is in the last 22 + 65535 bytes.
        var eocd = -1
        var position = count - 22
        let lowest = max(0, count - 22 - 65_535)
        while position >= lowest {
            if try reader.uint32(at: position, field: "end of central directory") == 0x0605_4b50 { eocd = position; break }
            position -= 1
        }
        guard eocd >= 0 else { throw InteropError.corrupt(file: path, field: "zip archive", message: "no end-of-central-directory record") }
        var entryCount = Int(try reader.uint16(at: eocd + 10, field: "end of central directory"))
        var directorySize = Int(try reader.uint32(at: eocd + 12, field: "end of central directory"))
        var directoryOffset = Int(try reader.uint32(at: eocd + 16, field: "end of central directory"))
        // ZIP64: a locator just before the EOCD points at the ZIP64 EOCD record.
        if eocd >= 20, try reader.uint32(at: eocd - 20, field: "zip64 locator") == 0x0706_4b50 {
            let field = "zip64 end of central directory"
            let recordOffset = try reader.int64(at: eocd - 20 + 8, field: field)
            guard try reader.uint32(at: recordOffset, field: field) == 0x0606_4b50 else {
                throw InteropError.corrupt(file: path, field: field, message: "no record at offset \(recordOffset)")
            }
            entryCount = try reader.int64(at: recordOffset + 32, field: field)
            directorySize = try reader.int64(at: recordOffset + 40, field: field)
            directoryOffset = try reader.int64(at: recordOffset + 48, field: field)
        }
        let field = "zip central directory"
        let directoryEnd = try Checked.add(directoryOffset, directorySize, file: path, field: field)
        guard directoryEnd <= count else {
            throw InteropError.corrupt(file: path, field: field, message: "[\(directoryOffset), \(directoryEnd)) lies outside the \(count)-byte archive")
        }
        // Each record is at least 46 bytes: the size bounds the count before anything is allocated.
        guard entryCount <= directorySize / 46, entryCount <= maximumEntries else {
            throw InteropError.corrupt(file: path, field: field, message: "\(entryCount) entries cannot fit in \(directorySize) bytes")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        var cursor = directoryOffset
        for number in 0..<entryCount {
            let field = "zip central directory record \(number)"
            guard try reader.uint32(at: cursor, field: field) == 0x0201_4b50 else {
                throw InteropError.corrupt(file: path, field: field, message: "bad signature at offset \(cursor)")
            }
            let method = Int(try reader.uint16(at: cursor + 10, field: field))
            let crc = try reader.uint32(at: cursor + 16, field: field)
            var compressed = Int(try reader.uint32(at: cursor + 20, field: field))
            var uncompressed = Int(try reader.uint32(at: cursor + 24, field: field))
            let nameLength = Int(try reader.uint16(at: cursor + 28, field: field))
            let extraLength = Int(try reader.uint16(at: cursor + 30, field: field))
            let commentLength = Int(try reader.uint16(at: cursor + 32, field: field))
            var localOffset = Int(try reader.uint32(at: cursor + 42, field: field))
            let nameStart = cursor + 46
            let extraStart = nameStart + nameLength
            let next = extraStart + extraLength + commentLength
            guard next <= directoryEnd else {
                throw InteropError.corrupt(file: path, field: field, message: "record runs past the end of the central directory")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: reader.raw[nameStart..<extraStart]), as: UTF8.self)
            // ZIP64 extended information: 64-bit values replace fields saturated at 0xFFFFFFFF, in order.
            var extra = extraStart
            while extra + 4 <= extraStart + extraLength {
                let tag = try reader.uint16(at: extra, field: field)
                let size = Int(try reader.uint16(at: extra + 2, field: field))
                guard extra + 4 + size <= extraStart + extraLength else { break }
                if tag == 0x0001 {
                    var item = extra + 4
                    let itemEnd = extra + 4 + size
                    func next64() throws -> Int {
                        guard item + 8 <= itemEnd else {
                            throw InteropError.corrupt(file: path, field: field, message: "zip64 extra field too short")
                        }
                        defer { item += 8 }
                        return try reader.int64(at: item, field: field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
                }
                extra += 4 + size
            }
            guard compressed <= count, localOffset < count else {
                throw InteropError.corrupt(file: path, field: "zip entry '\(name)'",
                                           message: "size \(compressed) or offset \(localOffset) exceeds the \(count)-byte archive")
            }
            // Declared sizes are bounded by what the entry's bytes can hold, so no later sum or
            // allocation based on them is out of proportion to the archive.
            let (ceiling, overflow) = compressed.multipliedReportingOverflow(by: Inflate.maximumRatio)
            if (method == 0 && uncompressed != compressed) || (method == 8 && !overflow && uncompressed > ceiling + 1024) {
                throw InteropError.corrupt(file: path, field: "zip entry '\(name)'",
                                           message: "declared size \(uncompressed) is impossible for \(compressed) \(method == 0 ? "stored" : "compressed") bytes")
            }
            entries.append(Entry(name: name, method: method, compressedSize: compressed, uncompressedSize: uncompressed,
                                 crc32: crc, localHeaderOffset: localOffset))
            cursor = next
        }
        return entries
    }
}

/// Bounds-checked little-endian reads from a byte buffer.
struct Reader {
    let raw: UnsafeRawBufferPointer
    let path: String
    init(_ raw: UnsafeRawBufferPointer, path: String) { self.raw = raw; self.path = path }
    var count: Int { raw.count }

    private func check(_ offset: Int, _ width: Int, _ field: String) throws {
        guard offset >= 0, offset <= raw.count - width else {
            throw InteropError.corrupt(file: path, field: field, message: "read of \(width) bytes at offset \(offset) is outside the \(raw.count)-byte input")
        }
    }

    func uint16(at offset: Int, field: String) throws -> UInt16 {
        try check(offset, 2, field)
        return UInt16(raw[offset]) | UInt16(raw[offset + 1]) << 8
    }

    func uint32(at offset: Int, field: String) throws -> UInt32 {
        try check(offset, 4, field)
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(raw[offset + i]) << (8 * UInt32(i)) }
        return v
    }

    /// A 64-bit field that must fit a non-negative Int.
    func int64(at offset: Int, field: String) throws -> Int {
        try check(offset, 8, field)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(raw[offset + i]) << (8 * UInt64(i)) }
        guard v <= UInt64(Int.max) else {
            throw InteropError.corrupt(file: path, field: field, message: "64-bit value \(v) out of range")
        }
        return Int(v)
    }
}

func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
