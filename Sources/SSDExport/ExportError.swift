/// Why a model could not be exported. Each case names what is at fault.
public enum ExportError: Error, CustomStringConvertible, Equatable {
    /// The weights lack a tensor the description needs (state_dict name).
    case missingTensor(String)
    /// A tensor's shape is not the one the description implies.
    case shapeMismatch(name: String, expected: [Int], got: [Int])
    /// Two initializers would share a name.
    case duplicateName(String)
    /// The description does not add up (prior count, source order, class count, …).
    case inconsistentDescription(String)
    /// A post-processing setting ONNX cannot express, or out of range.
    case invalidSettings(String)

    public var description: String {
        switch self {
        case let .missingTensor(name): return "the weights have no tensor \(name), which the model's description needs"
        case let .shapeMismatch(name, expected, got): return "\(name): shape \(got), the model's description needs \(expected)"
        case let .duplicateName(name): return "two ONNX initializers would be named \(name)"
        case let .inconsistentDescription(message): return message
        case let .invalidSettings(message): return message
        }
    }
}
