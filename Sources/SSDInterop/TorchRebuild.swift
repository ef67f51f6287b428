import Foundation

/// The allow-list of callables a `.pth` pickle may invoke through REDUCE, each implemented here
/// as pure data construction. Anything else throws `InteropError.forbiddenGlobal` — the promise
/// of `torch.load(weights_only=True)`.
enum TorchRebuild {
    /// Names that Python 2 pickles spell differently.
    static func global(module: String, name: String) -> PickleValue {
        switch module {
        case "__builtin__": return .global(module: "builtins", name: name)
        case "copy_reg": return .global(module: "copyreg", name: name)
        default: return .global(module: module, name: name)
        }
    }

    /// Performs REDUCE of `callable` on `arguments`, for allow-listed callables only.
    static func call(_ callable: PickleValue, arguments: [PickleValue], path: String) throws -> PickleValue {
        guard case let .global(module, name) = callable else {
            throw InteropError.unsupported(file: path, field: "pickle", message: "REDUCE on a \(callable.kind)")
        }
        let qualified = "\(module).\(name)"
        func bad(_ message: String) -> InteropError {
            .corrupt(file: path, field: "pickle", message: "\(qualified): \(message)")
        }
        switch qualified {
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            guard arguments.count >= 4 else { throw bad("expected at least 4 arguments, got \(arguments.count)") }
            guard case let .storage(storage) = arguments[0] else { throw bad("argument 0 is a \(arguments[0].kind), not a storage") }
            guard let offset = arguments[1].intValue else { throw bad("storage offset is a \(arguments[1].kind)") }
            let shape = try integers(arguments[2], what: "size", bad)
            let strides = try integers(arguments[3], what: "stride", bad)
            var requiresGrad = false
            if arguments.count > 4, case let .bool(flag) = arguments[4] { requiresGrad = flag }
            return .tensor(try tensor(storage: storage, offset: offset, shape: shape, strides: strides,
                                      requiresGrad: requiresGrad, bad))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            // (data, requires_grad, backward_hooks[, state])
            guard arguments.count >= 2, case var .tensor(tensor) = arguments[0] else {
                throw bad("expected (tensor, requires_grad, …)")
            }
            if case let .bool(flag) = arguments[1] { tensor.requiresGrad = flag }
            return .tensor(tensor)
        case "collections.OrderedDict", "builtins.dict", "collections.defaultdict":
            // OrderedDict() / dict() / defaultdict(factory): an empty dict, filled by SETITEMS.
            // OrderedDict([(k, v), …]) is accepted too.
            if qualified != "collections.defaultdict", let first = arguments.first {
                guard case let .list(pairs) = first else { throw bad("argument is a \(first.kind)") }
                var items: [(key: PickleValue, value: PickleValue)] = []
                for pair in pairs {
                    guard case let .tuple(kv) = pair, kv.count == 2 else { throw bad("item is not a (key, value) pair") }
                    items.append((kv[0], kv[1]))
                }
                return .dict(items)
            }
            return .dict([])
        case "builtins.set", "builtins.frozenset", "builtins.list":
            guard let first = arguments.first else { return .list([]) }
            switch first {
            case let .list(items), let .tuple(items): return .list(items)
            default: throw bad("argument is a \(first.kind)")
            }
        case "_codecs.encode":
            // Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1').
            guard let text = arguments.first?.stringValue else { throw bad("expected a string") }
            let encoding = arguments.count > 1 ? arguments[1].stringValue ?? "" : "utf-8"
            if encoding == "latin1" || encoding == "latin-1" {
                var out: [UInt8] = []
                for scalar in text.unicodeScalars {
                    guard scalar.value < 256 else { throw bad("character outside latin-1") }
                    out.append(UInt8(scalar.value))
                }
                return .bytes(out)
            }
            return .bytes(Array(text.utf8))
        case "copyreg._reconstructor":
            // (cls, base, state): an instance of cls, as data.
            guard let cls = arguments.first, case let .global(m, n) = cls else { throw bad("expected a class") }
            return newObject(module: m, name: n, arguments: Array(arguments.dropFirst()))
        default:
            throw InteropError.forbiddenGlobal(file: path, global: qualified)
        }
    }

    /// A class instance as data; nothing is constructed or run.
    static func newObject(module: String, name: String, arguments: [PickleValue]) -> PickleValue {
        .object(PickleObject(className: "\(module).\(name)", arguments: arguments, state: nil))
    }

    /// Resolves a persistent id `('storage', storage_type, key, location, numel[, view_metadata])`.
    static func storage(fromPersistentID pid: PickleValue, path: String) throws -> TorchStorageReference {
        func bad(_ message: String) -> InteropError { .corrupt(file: path, field: "persistent id", message: message) }
        guard case let .tuple(items) = pid, items.count >= 5, items[0].stringValue == "storage" else {
            throw bad("expected ('storage', type, key, location, numel), got a \(pid.kind)")
        }
        guard case let .global(module, typeName) = items[1] else { throw bad("storage type is a \(items[1].kind)") }
        guard module == "torch" || module == "torch.storage", let dtype = TorchDType(storageClass: typeName) else {
            throw InteropError.unsupported(file: path, field: "persistent id", message: "storage type \(module).\(typeName)")
        }
        let key: String
        switch items[2] {
        case let .string(s): key = s
        case let .int(i): key = String(i)
        default: throw bad("storage key is a \(items[2].kind)")
        }
        guard key.utf8.count <= 256 else { throw bad("storage key longer than 256 bytes") }
        guard let numel = items[4].intValue, numel >= 0 else { throw bad("element count is not a non-negative int") }
        var reference = TorchStorageReference(key: key, dtype: dtype, location: items[3].stringValue ?? "",
                                              elementCount: numel, rootOffset: 0)
        // Legacy storage views: (view_key, offset, view_size) into the root storage.
        if items.count > 5, case let .tuple(view) = items[5], view.count == 3 {
            guard let offset = view[1].intValue, let size = view[2].intValue, offset >= 0, size >= 0,
                  offset <= numel, size <= numel - offset
            else { throw bad("storage view outside its root storage '\(key)'") }
            reference.rootOffset = offset
            reference.elementCount = size
        }
        return reference
    }

    private static func integers(_ value: PickleValue, what: String, _ bad: (String) -> InteropError) throws -> [Int] {
        guard case let .tuple(items) = value else { throw bad("\(what) is a \(value.kind), not a tuple") }
        guard items.count <= 64 else { throw bad("\(what) has \(items.count) dimensions") }
        return try items.map { item in
            guard let n = item.intValue else { throw bad("\(what) holds a \(item.kind)") }
            return n
        }
    }

    /// A strided view, validated against its storage.
    private static func tensor(storage: TorchStorageReference, offset: Int, shape: [Int], strides: [Int],
                               requiresGrad: Bool, _ bad: (String) -> InteropError) throws -> TorchTensorReference {
        let reference = TorchTensorReference(storage: storage, storageOffset: offset, shape: shape, strides: strides,
                                             requiresGrad: requiresGrad)
        if let problem = reference.geometryProblem { throw bad(problem) }
        return reference
    }
}
