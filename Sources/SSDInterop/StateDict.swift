import Foundation

/// Turns decoded pickles into flat `name → tensor` lists, the way `state_dict()` names them.
public enum StateDict {
    /// Largest number of nodes one walk visits (guards against shared sub-trees referenced
    /// exponentially often).
    static let maximumVisits = 2_000_000

    /// Whether `value` is a pickled `nn.Module`: an object whose state has `_parameters` and `_modules`.
    public static func isModule(_ value: PickleValue) -> Bool {
        guard case let .object(object) = value, let state = object.state else { return false }
        return state["_parameters"] != nil && state["_modules"] != nil
    }

    /// The state dict of a pickled module: parameters, persistent buffers and plain tensor
    /// attributes (such as the reference's `priors_cxcy`) of it and its submodules, by dotted name.
    public static func moduleTensors(_ module: PickleValue, file: String) throws -> [(name: String, tensor: TorchTensorReference)] {
        var walk = Walk(file: file)
        try walk.module(module, prefix: "", depth: 0)
        return walk.result
    }

    /// Every tensor reachable from `value` through dicts (string or int keys), lists, tuples
    /// and modules, named by the dotted path to it. Other values are skipped.
    public static func allTensors(_ value: PickleValue, file: String) throws -> [(name: String, tensor: TorchTensorReference)] {
        var walk = Walk(file: file)
        try walk.any(value, prefix: "", depth: 0)
        return walk.result
    }

    private struct Walk {
        let file: String
        var result: [(name: String, tensor: TorchTensorReference)] = []
        var names = Set<String>()
        var visits = 0

        init(file: String) { self.file = file }

        mutating func emit(_ name: String, _ tensor: TorchTensorReference) throws {
            guard names.insert(name).inserted else {
                throw InteropError.unexpectedContent(file: file, message: "two tensors are named '\(name)'")
            }
            result.append((name, tensor))
        }

        mutating func visit(_ depth: Int) throws {
            visits += 1
            guard visits <= StateDict.maximumVisits, depth <= Unpickler.maximumDepth else {
                throw InteropError.limitExceeded(file: file, field: "object tree", message: "too large or too deep to walk")
            }
        }

        static func join(_ prefix: String, _ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

        static func key(_ value: PickleValue) -> String? {
            switch value {
            case let .string(s): return s
            case let .int(i): return String(i)
            default: return nil
            }
        }

        mutating func module(_ value: PickleValue, prefix: String, depth: Int) throws {
            try visit(depth)
            guard case let .object(object) = value, let state = object.state else { return }
            var skipped = Set<String>()
            if case let .list(names)? = state["_non_persistent_buffers_set"] {
                for name in names { if let s = name.stringValue { skipped.insert(s) } }
            }
            if case let .dict(items)? = state["_parameters"] {
                for (key, item) in items { if let k = Self.key(key), case let .tensor(t) = item { try emit(Self.join(prefix, k), t) } }
            }
            if case let .dict(items)? = state["_buffers"] {
                for (key, item) in items {
                    if let k = Self.key(key), !skipped.contains(k), case let .tensor(t) = item { try emit(Self.join(prefix, k), t) }
                }
            }
            if case let .dict(items) = state {
                for (key, item) in items {
                    if let k = key.stringValue, !k.hasPrefix("_"), case let .tensor(t) = item { try emit(Self.join(prefix, k), t) }
                }
            }
            if case let .dict(items)? = state["_modules"] {
                for (key, child) in items {
                    if let k = Self.key(key), StateDict.isModule(child) { try module(child, prefix: Self.join(prefix, k), depth: depth + 1) }
                }
            }
        }

        mutating func any(_ value: PickleValue, prefix: String, depth: Int) throws {
            try visit(depth)
            switch value {
            case let .tensor(t):
                try emit(prefix, t)
            case let .dict(items):
                for (key, item) in items {
                    if let k = Self.key(key) { try any(item, prefix: Self.join(prefix, k), depth: depth + 1) }
                }
            case let .list(items), let .tuple(items):
                for (i, item) in items.enumerated() { try any(item, prefix: Self.join(prefix, String(i)), depth: depth + 1) }
            case .object:
                if StateDict.isModule(value) { try module(value, prefix: prefix, depth: depth + 1) }
            default:
                break
            }
        }
    }
}
