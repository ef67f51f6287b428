import Foundation

/// One entry of a hand-made zip archive: its compression method (0 stored, 8 DEFLATE), the
/// bytes as stored, the uncompressed size and CRC-32 it declares (true or not: tests lie).
public struct ZipItem {
    public var name: String
    public var method: Int
    public var stored: [UInt8]
    public var uncompressedSize: Int
    public var crc: UInt32
    public init(name: String, method: Int, stored: [UInt8], uncompressedSize: Int, crc: UInt32) {
        self.name = name
        self.method = method
        self.stored = stored
        self.uncompressedSize = uncompressedSize
        self.crc = crc
    }
}

/// Writes zip archives byte by byte (local headers, central directory, end record; no ZIP64),
/// so tests can give the zip reader exactly the lies they need.
public enum ZipBuilder {
    public static func archive(_ items: [ZipItem]) -> Data {
        var out: [UInt8] = [], central: [UInt8] = []
        func le(_ value: Int, _ width: Int, _ into: inout [UInt8]) {
            for i in 0..<width { into.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
        }
        for item in items {
            let name = Array(item.name.utf8), offset = out.count
            le(0x0403_4b50, 4, &out); le(20, 2, &out); le(0, 2, &out); le(item.method, 2, &out); le(0, 4, &out)
            le(Int(item.crc), 4, &out); le(item.stored.count, 4, &out); le(item.uncompressedSize, 4, &out)
            le(name.count, 2, &out); le(0, 2, &out); out += name; out += item.stored
            le(0x0201_4b50, 4, &central); le(20, 2, &central); le(20, 2, &central); le(0, 2, &central); le(item.method, 2, &central)
            le(0, 4, &central); le(Int(item.crc), 4, &central); le(item.stored.count, 4, &central); le(item.uncompressedSize, 4, &central)
            le(name.count, 2, &central); for _ in 0..<4 { le(0, 2, &central) }
            le(0, 4, &central); le(offset, 4, &central); central += name
        }
        let directory = out.count
        out += central
        le(0x0605_4b50, 4, &out); le(0, 4, &out); le(items.count, 2, &out); le(items.count, 2, &out)
        le(central.count, 4, &out); le(directory, 4, &out); le(0, 2, &out)
        return Data(out)
    }
}
