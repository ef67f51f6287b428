import Foundation

/// A DEFLATE (RFC 1951) decoder for zip entries, written for untrusted input: output is capped at
/// the size the archive declares (itself capped by DEFLATE's maximum ratio), every code and
/// distance is checked, and errors throw instead of trapping. Not fast — PyTorch stores its
/// entries uncompressed; this handles archives that someone re-zipped.
enum Inflate {
    /// DEFLATE cannot expand data by more than about 1032 : 1.
    static let maximumRatio = 1032
    /// The largest entry decompressed (16 GiB), whatever the archive declares.
    static let maximumOutput = 1 << 34

    private static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                                       2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    private static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    private static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    /// A canonical Huffman code: how many codes of each length, and symbols in code order.
    private struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []

        /// Nil if the lengths over-subscribe the code space.
        init?(lengths: ArraySlice<Int>) {
            for length in lengths { counts[length] += 1 }
            var left = 1
            for length in 1...15 {
                left <<= 1
                left -= counts[length]
                if left < 0 { return nil }
            }
            var offsets = [Int](repeating: 0, count: 16)
            for length in 1..<15 { offsets[length + 1] = offsets[length] + counts[length] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (symbol, length) in lengths.enumerated() where length != 0 {
                symbols[offsets[length]] = symbol
                offsets[length] += 1
            }
        }
    }

    private struct BitReader {
        let input: UnsafeRawBufferPointer
        var position = 0
        var buffer = 0
        var count = 0
        let fail: () -> InteropError

        mutating func bits(_ n: Int) throws -> Int {
            while count < n {
                guard position < input.count else { throw fail() }
                buffer |= Int(input[position]) << count
                position += 1
                count += 8
            }
            let value = buffer & ((1 << n) - 1)
            buffer >>= n
            count -= n
            return value
        }

        mutating func decode(_ code: Huffman) throws -> Int {
            var value = 0, first = 0, index = 0
            for length in 1...15 {
                value |= try bits(1)
                let n = code.counts[length]
                if value - n < first { return code.symbols[index + value - first] }
                index += n
                first = (first + n) << 1
                value <<= 1
            }
            throw fail()
        }
    }

    /// Decompresses a raw DEFLATE stream that must produce exactly `expectedSize` bytes.
    static func decompress(_ input: UnsafeRawBufferPointer, expectedSize: Int, path: String, field: String) throws -> [UInt8] {
        func corrupt(_ message: String) -> InteropError { .corrupt(file: path, field: field, message: "deflate stream: \(message)") }
        let (limit, overflow) = input.count.multipliedReportingOverflow(by: maximumRatio)
        guard expectedSize >= 0, overflow || expectedSize <= limit + 1024 else {
            throw corrupt("declared size \(expectedSize) is impossible for \(input.count) compressed bytes")
        }
        guard expectedSize <= maximumOutput else {
            throw InteropError.limitExceeded(file: path, field: field, message: "declared size \(expectedSize) exceeds \(maximumOutput) bytes")
        }
        var reader = BitReader(input: input, fail: { corrupt("truncated or invalid code") })
        var out: [UInt8] = []
        // Grow with the data actually produced; reserve only a bounded amount up front.
        out.reserveCapacity(min(expectedSize, 1 << 26))
        var last = 0
        repeat {
            last = try reader.bits(1)
            switch try reader.bits(2) {
            case 0: // stored
                reader.buffer = 0
                reader.count = 0
                guard reader.position + 4 <= input.count else { throw corrupt("truncated stored block") }
                let length = Int(input[reader.position]) | Int(input[reader.position + 1]) << 8
                let complement = Int(input[reader.position + 2]) | Int(input[reader.position + 3]) << 8
                reader.position += 4
                guard length == ~complement & 0xFFFF else { throw corrupt("stored block length check failed") }
                guard length <= input.count - reader.position else { throw corrupt("truncated stored block") }
                guard length <= expectedSize - out.count else { throw corrupt("output exceeds the declared \(expectedSize) bytes") }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[reader.position..<(reader.position + length)]))
                reader.position += length
            case 1: // fixed Huffman codes
                var lengths = [Int](repeating: 8, count: 288)
                for i in 144..<256 { lengths[i] = 9 }
                for i in 256..<280 { lengths[i] = 7 }
                guard let literals = Huffman(lengths: lengths[...]),
                      let distances = Huffman(lengths: [Int](repeating: 5, count: 30)[...]) else { throw corrupt("internal table") }
                try inflateBlock(&reader, &out, literals, distances, expectedSize, corrupt)
            case 2: // dynamic Huffman codes
                let literalCount = try reader.bits(5) + 257
                let distanceCount = try reader.bits(5) + 1
                let codeLengthCount = try reader.bits(4) + 4
                guard literalCount <= 286, distanceCount <= 30 else { throw corrupt("too many codes") }
                var codeLengths = [Int](repeating: 0, count: 19)
                for i in 0..<codeLengthCount { codeLengths[codeLengthOrder[i]] = try reader.bits(3) }
                guard let lengthCode = Huffman(lengths: codeLengths[...]) else { throw corrupt("bad code-length code") }
                var lengths: [Int] = []
                while lengths.count < literalCount + distanceCount {
                    let symbol = try reader.decode(lengthCode)
                    var repeatValue = 0, repeatCount = 0
                    switch symbol {
                    case 0..<16: lengths.append(symbol); continue
                    case 16:
                        guard let previous = lengths.last else { throw corrupt("repeat with no previous length") }
                        repeatValue = previous; repeatCount = 3 + (try reader.bits(2))
                    case 17: repeatCount = 3 + (try reader.bits(3))
                    default: repeatCount = 11 + (try reader.bits(7))
                    }
                    guard lengths.count + repeatCount <= literalCount + distanceCount else { throw corrupt("code lengths overflow") }
                    lengths += [Int](repeating: repeatValue, count: repeatCount)
                }
                guard lengths[256] != 0 else { throw corrupt("no end-of-block code") }
                guard let literals = Huffman(lengths: lengths[0..<literalCount]),
                      let distances = Huffman(lengths: lengths[literalCount...]) else { throw corrupt("over-subscribed code") }
                try inflateBlock(&reader, &out, literals, distances, expectedSize, corrupt)
            default:
                throw corrupt("reserved block type")
            }
        } while last == 0
        guard out.count == expectedSize else { throw corrupt("produced \(out.count) bytes, the archive declares \(expectedSize)") }
        return out
    }

    private static func inflateBlock(_ reader: inout BitReader, _ out: inout [UInt8], _ literals: Huffman, _ distances: Huffman,
                                     _ expectedSize: Int, _ corrupt: (String) -> InteropError) throws {
        while true {
            let symbol = try reader.decode(literals)
            if symbol < 256 {
                guard out.count < expectedSize else { throw corrupt("output exceeds the declared \(expectedSize) bytes") }
                out.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let index = symbol - 257
                guard index < 29 else { throw corrupt("invalid length code") }
                let length = lengthBase[index] + (try reader.bits(lengthExtra[index]))
                let distanceSymbol = try reader.decode(distances)
                guard distanceSymbol < 30 else { throw corrupt("invalid distance code") }
                let distance = distanceBase[distanceSymbol] + (try reader.bits(distanceExtra[distanceSymbol]))
                guard distance <= out.count else { throw corrupt("distance \(distance) reaches before the start of the output") }
                guard length <= expectedSize - out.count else { throw corrupt("output exceeds the declared \(expectedSize) bytes") }
                let start = out.count - distance
                for i in 0..<length { out.append(out[start + i]) }
            }
        }
    }
}
