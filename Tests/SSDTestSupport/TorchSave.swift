import Foundation
import SSDLayers

/// One tensor for a hand-made `.pth`: its storage class (`FloatStorage`, `HalfStorage`,
/// `LongStorage`, …), shape and contiguous little-endian bytes.
public struct SavedTensor: Equatable {
    public var storage: String
    public var shape: [Int]
    public var bytes: [UInt8]
    public init(storage: String, shape: [Int], bytes: [UInt8]) {
        self.storage = storage
        self.shape = shape
        self.bytes = bytes
    }

    public var count: Int { shape.reduce(1, *) }

    public static func float32(_ shape: [Int], _ values: [Float]) -> SavedTensor {
        precondition(values.count == shape.reduce(1, *))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 * values.count)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        return SavedTensor(storage: "FloatStorage", shape: shape, bytes: bytes)
    }

    public static func float16(_ shape: [Int], bits: [UInt16]) -> SavedTensor {
        var bytes: [UInt8] = []
        for b in bits { bytes += [UInt8(b & 0xFF), UInt8(b >> 8)] }
        return SavedTensor(storage: "HalfStorage", shape: shape, bytes: bytes)
    }

    public static func int64(_ shape: [Int], _ values: [Int64]) -> SavedTensor {
        var bytes: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        return SavedTensor(storage: "LongStorage", shape: shape, bytes: bytes)
    }

    /// Deterministic values drawn from `seed` (every bit of the mantissa used): in [−0.5, 0.5),
    /// or [0.5, 1.5) for a running variance, so a network run with them stays finite.
    public static func random(_ shape: [Int], seed: UInt64, positive: Bool = false) -> SavedTensor {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let values = (0..<shape.reduce(1, *)).map { _ -> Float in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            let unit = Float(bitPattern: 0x3F80_0000 | UInt32(truncatingIfNeeded: state >> 41)) - 1  // [0, 1), 23 random bits
            return positive ? unit + 0.5 : unit - 0.5
        }
        return .float32(shape, values)
    }

    /// A seed from a name (FNV-1a), so each tensor's values differ.
    public static func seed(_ name: String) -> UInt64 {
        name.utf8.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// `random` seeded by `name`; running variances positive.
    public static func random(_ name: String, _ shape: [Int]) -> SavedTensor {
        random(shape, seed: seed(name), positive: name.hasSuffix("running_var"))
    }

    /// The bytes as f32 values (FloatStorage only).
    public var floats: [Float] {
        stride(from: 0, to: bytes.count, by: 4).map {
            Float(bitPattern: UInt32(bytes[$0]) | UInt32(bytes[$0 + 1]) << 8 | UInt32(bytes[$0 + 2]) << 16 | UInt32(bytes[$0 + 3]) << 24)
        }
    }
}

/// Writes zip-format `.pth` files as `torch.save` does (protocol 2 pickle in `archive/data.pkl`,
/// one storage per tensor in `archive/data/N`, `archive/version`, `archive/byteorder`), for
/// tests of the readers and converters.
public enum TorchSave {
    /// A state dict (an `OrderedDict`, in the given order).
    public static func stateDict(_ tensors: [(String, SavedTensor)]) -> Data {
        var p = Pickle()
        p.stateDict(tensors, storageBase: 0)
        p.stop()
        return archive(p.bytes, tensors.map(\.1))
    }

    /// A checkpoint as torchvision's reference scripts save it: `{'model': state_dict,
    /// 'optimizer': {'state': {0: {'momentum_buffer': …}}, 'param_groups': […]}, 'args':
    /// argparse.Namespace(…), 'epoch': epoch}`.
    public static func referenceCheckpoint(_ tensors: [(String, SavedTensor)], epoch: Int) -> Data {
        var p = Pickle()
        let momentum = SavedTensor.float32([2], [0.25, -0.5])
        p.op(0x7D); p.op(0x28)
        p.string("model"); p.stateDict(tensors, storageBase: 0)
        p.string("optimizer")
        p.op(0x7D); p.op(0x28)
        p.string("state"); p.op(0x7D); p.int(0); p.op(0x7D); p.string("momentum_buffer"); p.tensor(momentum, key: String(tensors.count)); p.op(0x73); p.op(0x73)
        p.string("param_groups"); p.op(0x5D); p.op(0x7D); p.string("lr"); p.float(0.15); p.op(0x73); p.op(0x61)
        p.op(0x75)
        p.string("args")
        p.global("argparse", "Namespace"); p.op(0x29); p.op(0x81)
        p.op(0x7D); p.op(0x28); p.string("model"); p.string("ssdlite320_mobilenet_v3_large"); p.string("lr"); p.float(0.15); p.op(0x75)
        p.op(0x62)
        p.string("epoch"); p.int(epoch)
        p.op(0x75)
        p.stop()
        return archive(p.bytes, tensors.map(\.1) + [momentum])
    }

    /// A safetensors file's tensors as a `.pth` state dict.
    public static func stateDict(fromSafetensors url: URL) throws -> Data {
        stateDict(try tensors(of: try SafetensorsFile(url: url)))
    }

    /// The tensors of a safetensors file (F32, F16 and I64) as a state dict, in name order.
    public static func tensors(of file: SafetensorsFile) throws -> [(String, SavedTensor)] {
        try file.names.map { name in
            guard let entry = file.entries[name] else { throw SafetensorsError.missingTensor(file: file.path, name: name) }
            let bytes = try file.rawBytes(name)
            let storage: String
            switch entry.dtype {
            case .float32: storage = "FloatStorage"
            case .float16: storage = "HalfStorage"
            case .int64: storage = "LongStorage"
            default: throw SafetensorsError.unsupportedDType(file: file.path, name: name, dtype: entry.dtype.rawValue)
            }
            return (name, SavedTensor(storage: storage, shape: entry.shape, bytes: bytes))
        }
    }

    static func archive(_ pickle: [UInt8], _ storages: [SavedTensor]) -> Data {
        var items = [item("archive/data.pkl", pickle), item("archive/byteorder", Array("little".utf8))]
        for (index, tensor) in storages.enumerated() { items.append(item("archive/data/\(index)", tensor.bytes)) }
        items.append(item("archive/version", Array("3\n".utf8)))
        return ZipBuilder.archive(items)
    }

    static func item(_ name: String, _ bytes: [UInt8]) -> ZipItem {
        ZipItem(name: name, method: 0, stored: bytes, uncompressedSize: bytes.count, crc: crc32(bytes))
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    /// Pickle opcodes (protocol 2), as `torch.save` emits them for state dicts.
    struct Pickle {
        var bytes: [UInt8] = [0x80, 2]
        mutating func op(_ b: UInt8...) { bytes += b }
        mutating func le(_ v: UInt64, _ width: Int) { for i in 0..<width { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        mutating func string(_ s: String) { let u = Array(s.utf8); op(0x58); le(UInt64(u.count), 4); bytes += u }
        mutating func int(_ v: Int) { op(0x4A); le(UInt64(UInt32(bitPattern: Int32(v))), 4) }
        mutating func float(_ v: Double) { op(0x47); for i in (0..<8).reversed() { bytes.append(UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt64(i)))) } }
        mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
        mutating func intTuple(_ values: [Int]) { op(0x28); for v in values { int(v) }; op(0x74) }
        mutating func stop() { op(0x2E) }

        /// `_rebuild_tensor_v2(storage, 0, size, contiguous strides, False, OrderedDict())`.
        mutating func tensor(_ t: SavedTensor, key: String) {
            global("torch._utils", "_rebuild_tensor_v2")
            op(0x28)
            op(0x28); string("storage"); global("torch", t.storage); string(key); string("cpu"); int(t.count); op(0x74)
            op(0x51)
            int(0); intTuple(t.shape)
            var strides = [Int](repeating: 1, count: t.shape.count)
            for d in stride(from: t.shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * t.shape[d + 1] }
            intTuple(strides); op(0x89)
            global("collections", "OrderedDict"); op(0x29, 0x52)
            op(0x74, 0x52)
        }

        /// `OrderedDict([(name, tensor), …])`, storages keyed from `storageBase`.
        mutating func stateDict(_ tensors: [(String, SavedTensor)], storageBase: Int) {
            global("collections", "OrderedDict"); op(0x29, 0x52)
            op(0x28)
            for (index, (name, saved)) in tensors.enumerated() {
                string(name)
                tensor(saved, key: String(storageBase + index))
            }
            op(0x75)
        }
    }
}

/// torchvision's `mobilenet_v3_large` (ImageNet classifier) state dict, written here from
/// torchvision 0.29's `models/mobilenetv3.py`: `features.0` (3×3 stem), the 15 inverted residual
/// blocks of `bneck_conf` (`features.N.block.K`: expansion where it widens, depthwise,
/// squeeze-and-excitation `fc1`/`fc2` where configured, projection), `features.16` (1×1 to 6×),
/// `classifier.0` / `classifier.3`; every batch norm with its `num_batches_tracked`.
public enum TorchvisionMobileNetV3 {
    struct Block { let input: Int, kernel: Int, expanded: Int, output: Int, squeeze: Bool }

    static func blocks(reducedTail: Bool) -> [Block] {
        let r = reducedTail ? 2 : 1
        return [
            Block(input: 16, kernel: 3, expanded: 16, output: 16, squeeze: false),
            Block(input: 16, kernel: 3, expanded: 64, output: 24, squeeze: false),
            Block(input: 24, kernel: 3, expanded: 72, output: 24, squeeze: false),
            Block(input: 24, kernel: 5, expanded: 72, output: 40, squeeze: true),
            Block(input: 40, kernel: 5, expanded: 120, output: 40, squeeze: true),
            Block(input: 40, kernel: 5, expanded: 120, output: 40, squeeze: true),
            Block(input: 40, kernel: 3, expanded: 240, output: 80, squeeze: false),
            Block(input: 80, kernel: 3, expanded: 200, output: 80, squeeze: false),
            Block(input: 80, kernel: 3, expanded: 184, output: 80, squeeze: false),
            Block(input: 80, kernel: 3, expanded: 184, output: 80, squeeze: false),
            Block(input: 80, kernel: 3, expanded: 480, output: 112, squeeze: true),
            Block(input: 112, kernel: 3, expanded: 672, output: 112, squeeze: true),
            Block(input: 112, kernel: 5, expanded: 672, output: 160 / r, squeeze: true),
            Block(input: 160 / r, kernel: 5, expanded: 960 / r, output: 160 / r, squeeze: true),
            Block(input: 160 / r, kernel: 5, expanded: 960 / r, output: 160 / r, squeeze: true),
        ]
    }

    /// torchvision's `_make_divisible(v, 8)`.
    static func makeDivisible(_ v: Int) -> Int {
        var n = max(8, (v + 4) / 8 * 8)
        if Double(n) < 0.9 * Double(v) { n += 8 }
        return n
    }

    /// Names and shapes in `state_dict()` order.
    public static func shapes(reducedTail: Bool = false, classifier: Bool = true) -> [(String, [Int])] {
        var out: [(String, [Int])] = []
        func convNorm(_ prefix: String, _ input: Int, _ output: Int, _ kernel: Int, groups: Int = 1) {
            out.append(("\(prefix).0.weight", [output, input / groups, kernel, kernel]))
            for p in ["weight", "bias", "running_mean", "running_var"] { out.append(("\(prefix).1.\(p)", [output])) }
            out.append(("\(prefix).1.num_batches_tracked", []))
        }
        convNorm("features.0", 3, 16, 3)
        for (i, b) in blocks(reducedTail: reducedTail).enumerated() {
            let prefix = "features.\(i + 1).block"
            var k = 0
            if b.expanded != b.input { convNorm("\(prefix).\(k)", b.input, b.expanded, 1); k += 1 }
            convNorm("\(prefix).\(k)", b.expanded, b.expanded, b.kernel, groups: b.expanded); k += 1
            if b.squeeze {
                let s = makeDivisible(b.expanded / 4)
                out += [("\(prefix).\(k).fc1.weight", [s, b.expanded, 1, 1]), ("\(prefix).\(k).fc1.bias", [s]),
                        ("\(prefix).\(k).fc2.weight", [b.expanded, s, 1, 1]), ("\(prefix).\(k).fc2.bias", [b.expanded])]
                k += 1
            }
            convNorm("\(prefix).\(k)", b.expanded, b.output, 1)
        }
        let last = blocks(reducedTail: reducedTail).last!.output
        convNorm("features.16", last, 6 * last, 1)
        if classifier {
            let hidden = reducedTail ? 640 : 1280
            out += [("classifier.0.weight", [hidden, 6 * last]), ("classifier.0.bias", [hidden]),
                    ("classifier.3.weight", [1000, hidden]), ("classifier.3.bias", [1000])]
        }
        return out
    }

    /// The state dict with `SavedTensor.random` values (step counters 0-d int64).
    public static func stateDict(reducedTail: Bool = false, classifier: Bool = true) -> [(String, SavedTensor)] {
        shapes(reducedTail: reducedTail, classifier: classifier).map { name, shape in
            name.hasSuffix("num_batches_tracked") ? (name, .int64([], [1234])) : (name, .random(name, shape))
        }
    }
}
