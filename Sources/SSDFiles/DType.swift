/// The element types of the tensor files we read and write: safetensors' names, which are
/// PyTorch's element types too (the `.pth` reader maps its storage classes onto them).
public enum DType: String, CaseIterable, Sendable {
    case float32 = "F32", float16 = "F16", bfloat16 = "BF16", float64 = "F64"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"
    case uint16 = "U16", uint32 = "U32", uint64 = "U64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64, .uint64: return 8
        case .float32, .int32, .uint32: return 4
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
}

