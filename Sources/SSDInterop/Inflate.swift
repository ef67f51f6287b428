import CZlib
import Foundation

/// Raw DEFLATE (RFC 1951) decoding and CRC-32 for zip entries, by zlib.
///
/// Contract: `decompress` returns exactly `expectedSize` bytes or throws `InteropError` naming
/// `path` and `field`. It never allocates more than `expectedSize` bytes of output (plus zlib's
/// fixed 32 KiB window), so the caller bounds memory by bounding `expectedSize` *before* calling;
/// a stream that would produce more than `expectedSize` bytes is refused as soon as it does,
/// without inflating the rest.
enum Inflate {
    /// DEFLATE cannot expand data by more than about 1032 : 1.
    static let maximumRatio = 1032

    /// zlib's `avail_in` / `avail_out` are 32-bit: feed and drain at most this much per call.
    private static let chunk = 1 << 30

    /// Decompresses the raw DEFLATE stream `input`, which must produce exactly `expectedSize` bytes.
    static func decompress(_ input: UnsafeRawBufferPointer, expectedSize: Int, path: String, field: String) throws -> Data {
        func corrupt(_ message: String) -> InteropError { .corrupt(file: path, field: field, message: "deflate stream: \(message)") }
        let (limit, overflow) = input.count.multipliedReportingOverflow(by: maximumRatio)
        guard expectedSize >= 0, overflow || expectedSize <= limit + 1024 else {
            throw corrupt("declared size \(expectedSize) is impossible for \(input.count) compressed bytes")
        }
        var stream = z_stream()
        let initialised = inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initialised == Z_OK else {
            if initialised == Z_MEM_ERROR {
                throw InteropError.limitExceeded(file: path, field: field, message: "zlib could not allocate its inflate state")
            }
            throw corrupt("zlib inflateInit2 failed (\(initialised))")
        }
        defer { inflateEnd(&stream) }

        var output = Data(count: expectedSize)
        var consumed = 0
        var produced = 0
        var finished = false
        try output.withUnsafeMutableBytes { (out: UnsafeMutableRawBufferPointer) in
            let inBase = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
            let outBase = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            // A one-byte sink used once the declared size is reached: any byte written there
            // means the stream holds more than the archive declares.
            let sink = UnsafeMutablePointer<Bytef>.allocate(capacity: 1)
            defer { sink.deallocate() }
            while !finished {
                let inChunk = min(chunk, input.count - consumed)
                stream.next_in = inChunk > 0 ? inBase.map { $0 + consumed } : nil
                stream.avail_in = uInt(inChunk)
                let outRoom = expectedSize - produced
                let overflowProbe = outRoom == 0
                if overflowProbe {
                    stream.next_out = sink
                    stream.avail_out = 1
                } else {
                    stream.next_out = outBase.map { $0 + produced }
                    stream.avail_out = uInt(min(chunk, outRoom))
                }
                let before = (stream.avail_in, stream.avail_out)
                let status = inflate(&stream, Z_NO_FLUSH)
                let usedIn = Int(before.0 - stream.avail_in), madeOut = Int(before.1 - stream.avail_out)
                consumed += usedIn
                if overflowProbe {
                    if madeOut > 0 { throw corrupt("inflates to more than the \(expectedSize) bytes the archive declares") }
                } else {
                    produced += madeOut
                }
                switch status {
                case Z_STREAM_END:
                    finished = true
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // No progress possible: input exhausted before the end of the stream.
                    if usedIn == 0 && madeOut == 0 { throw corrupt("truncated (the stream ends before its last block)") }
                case Z_MEM_ERROR:
                    throw InteropError.limitExceeded(file: path, field: field, message: "zlib ran out of memory")
                default:
                    let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw corrupt(message)
                }
            }
        }
        guard produced == expectedSize else {
            throw corrupt("produced \(produced) bytes, the archive declares \(expectedSize)")
        }
        return output
    }
}

/// CRC-32 (IEEE 802.3, as zip uses), by zlib.
enum CRC32 {
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: Bytef.self), bytes.count > 0 else { return 0 }
        return UInt32(truncatingIfNeeded: crc32_z(0, base, bytes.count))
    }
}
