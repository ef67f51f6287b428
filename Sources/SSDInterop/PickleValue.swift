import SSDFiles
import Foundation

/// A value decoded by the restricted unpickler. Python objects are never constructed: classes
/// become `.object` nodes (class name, constructor arguments, BUILD state), tensors stay
/// references into storages until `TorchFile` materialises them.
///
/// Values are plain Swift values (no shared references), so a decoded tree has no cycles and its
/// depth is bounded by `Unpickler.maximumDepth`.
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too large for `Int`: little-endian two's-complement bytes, as LONG1/LONG4 hold it.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    /// Dictionaries keep insertion order; keys may be any value (optimizer state is keyed by tensors).
    case dict([(key: PickleValue, value: PickleValue)])
    /// A reference to `module.name`, never resolved to code.
    case global(module: String, name: String)
    case object(PickleObject)
    case storage(TorchStorageReference)
    case tensor(TorchTensorReference)

    /// The string, if this is one.
    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    /// The integer, if this is one that fits `Int`.
    public var intValue: Int? { if case let .int(i) = self { return i } else { return nil } }

    /// The value stored under string key `key`, if this is a dict holding it.
    public subscript(key: String) -> PickleValue? {
        guard case let .dict(items) = self else { return nil }
        return items.last { $0.key.stringValue == key }?.value
    }

    /// A short description of the kind of value, for error messages.
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case let .global(module, name): return "global \(module).\(name)"
        case let .object(o): return "object of class \(o.className)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// An instance of a pickled class (an `nn.Module`, an optimizer, …) as data only.
public struct PickleObject {
    /// `module.qualname`, e.g. `model.SSD300` or `torch.nn.modules.conv.Conv2d`.
    public var className: String
    /// Arguments given to NEWOBJ / `copyreg._reconstructor`.
    public var arguments: [PickleValue]
    /// The BUILD state (usually the instance `__dict__`), if any.
    public var state: PickleValue?
    /// Items added with APPEND(S) or SETITEM(S) to an object that is not a plain list or dict.
    public var listItems: [PickleValue] = []
    public var dictItems: [(key: PickleValue, value: PickleValue)] = []
}

/// PyTorch's element types are safetensors' (`DType`, in SSDFiles): one type for both.
public typealias TorchDType = DType

extension DType {
    /// The dtype of a legacy typed-storage class name such as `FloatStorage`.
    public init?(storageClass name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage", "UntypedStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

/// A storage named by a persistent id `('storage', type, key, location, numel[, view])`.
public struct TorchStorageReference: Equatable, Sendable {
    /// The archive record (`data/<key>`) or legacy storage key holding the bytes.
    public var key: String
    public var dtype: TorchDType
    public var location: String
    /// Elements in this storage (or storage view).
    public var elementCount: Int
    /// Elements to skip in the root storage: non-zero only for legacy storage views.
    public var rootOffset: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view into a storage. The geometry is
/// validated when decoded: every addressed element lies inside the storage.
public struct TorchTensorReference: Equatable, Sendable {
    public var storage: TorchStorageReference
    /// In elements.
    public var storageOffset: Int
    public var shape: [Int]
    /// In elements, one per dimension.
    public var strides: [Int]
    public var requiresGrad: Bool
    /// Product of `shape`.
    public var elementCount: Int

    /// A view; `TorchFile.materialize` checks it against its storage before reading.
    public init(storage: TorchStorageReference, storageOffset: Int, shape: [Int], strides: [Int], requiresGrad: Bool = false) {
        self.storage = storage
        self.storageOffset = storageOffset
        self.shape = shape
        self.strides = strides
        self.requiresGrad = requiresGrad
        self.elementCount = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
    }

    /// Why this view cannot be read from its storage, or nil if it can: sizes, strides and
    /// offset must be non-negative, the element count must not overflow, and every addressed
    /// element must lie inside the storage (all arithmetic overflow-checked).
    public var geometryProblem: String? {
        guard shape.count == strides.count else { return "size \(shape) and stride \(strides) differ in rank" }
        guard storageOffset >= 0, shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
            return "negative size, stride or offset (size \(shape), stride \(strides), offset \(storageOffset))"
        }
        var count = 1
        var last = storageOffset
        for (size, stride) in zip(shape, strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: size)
            guard !o1 else { return "size \(shape) overflows" }
            count = c
            if size > 0 {
                let (span, o2) = (size - 1).multipliedReportingOverflow(by: stride)
                let (end, o3) = last.addingReportingOverflow(span)
                guard !o2, !o3 else { return "stride \(strides) overflows" }
                last = end
            }
        }
        guard count == elementCount else { return "element count \(elementCount) does not match size \(shape)" }
        if count > 0 && last >= storage.elementCount {
            return "view (offset \(storageOffset), size \(shape), stride \(strides)) reaches element \(last) of a storage of \(storage.elementCount)"
        }
        return nil
    }
}
