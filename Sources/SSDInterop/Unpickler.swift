import Foundation

/// A restricted unpickler for the pickle subset `torch.save` writes (protocols 2–5).
///
/// Contract: it never calls anything a pickle names. GLOBAL only records a name; REDUCE is
/// accepted only for the allow-list in `TorchRebuild` (tensor, parameter, OrderedDict, set, …)
/// and throws `InteropError.forbiddenGlobal` for any other callable; NEWOBJ and BUILD turn
/// classes into `PickleObject` data. Every length is checked against the remaining input before
/// it is used, nesting is capped at `maximumDepth`, and malformed input throws — it never traps.
///
/// Containers are Swift values, so decoded trees cannot be cyclic. The memo tracks the value on
/// the stack it was stored from: items added to a memoised dict, list or object while it is on
/// the stack (what pickle writers emit) are seen by later BINGETs; a container mutated after it
/// was embedded elsewhere is not (a self-referencing pickle decodes as a finite tree).
public struct Unpickler {
    /// The deepest container nesting accepted (PyTorch module trees stay far below this).
    public static let maximumDepth = 200
    /// How many memo slots may alias one stack value.
    static let maximumAliases = 16

    private struct Slot {
        var value: PickleValue
        var depth: Int
        var memoKeys: [Int] = []
    }

    private let bytes: [UInt8]
    private let path: String
    private var position = 0
    private var stack: [Slot] = []
    private var marks: [Int] = []
    private var memo: [Int: Slot] = [:]
    /// Every storage a persistent id named, by key (the legacy format needs their dtypes).
    public private(set) var storages: [String: TorchStorageReference] = [:]

    /// Decodes one pickle starting at `offset` in `bytes`; `path` names the file in errors.
    public init(bytes: [UInt8], offset: Int = 0, path: String = "<memory>") {
        self.bytes = bytes
        self.path = path
        self.position = offset
    }

    /// Where decoding stopped: just past the STOP opcode after `load()`.
    public var offset: Int { position }

    /// Decodes the pickle up to its STOP opcode and returns the top value.
    public mutating func load() throws -> PickleValue {
        while true {
            let at = position
            let opcode = try byte()
            if opcode == 0x2E { // STOP
                guard let top = stack.popLast(), stack.isEmpty, marks.isEmpty else {
                    throw corrupt("STOP at offset \(at) with \(stack.count) values on the stack")
                }
                return top.value
            }
            try execute(opcode, at: at)
        }
    }

    /// Decodes a whole byte string holding one pickle; trailing bytes are ignored.
    public static func load(_ bytes: [UInt8], path: String = "<memory>") throws -> PickleValue {
        var unpickler = Unpickler(bytes: bytes, path: path)
        return try unpickler.load()
    }

    // MARK: - Opcodes

    private mutating func execute(_ opcode: UInt8, at: Int) throws {
        switch opcode {
        case 0x80: // PROTO
            let version = try byte()
            guard version <= 5 else { throw unsupported("pickle protocol \(version)") }
        case 0x95: // FRAME: a hint only; the frame must lie within the input.
            let length = try integer(width: 8, signed: false)
            guard length <= bytes.count - position else { throw corrupt("FRAME of \(length) bytes past the end of the input") }
        case 0x28: marks.append(stack.count) // MARK
        case 0x30: _ = try pop() // POP
        case 0x31: _ = try popMark() // POP_MARK
        case 0x32: // DUP
            let top = try peek()
            stack.append(Slot(value: top.value, depth: top.depth))
        case 0x7D: push(.dict([]), depth: 1) // EMPTY_DICT
        case 0x5D: push(.list([]), depth: 1) // EMPTY_LIST
        case 0x29: push(.tuple([]), depth: 1) // EMPTY_TUPLE
        case 0x8F: push(.list([]), depth: 1) // EMPTY_SET (as a list)
        case 0x74: let items = try popMark(); try pushContainer(.tuple(items.map(\.value)), children: items) // TUPLE
        case 0x6C: let items = try popMark(); try pushContainer(.list(items.map(\.value)), children: items) // LIST
        case 0x91: let items = try popMark(); try pushContainer(.list(items.map(\.value)), children: items) // FROZENSET
        case 0x85, 0x86, 0x87: // TUPLE1-3
            let n = Int(opcode - 0x84)
            guard stack.count - (marks.last ?? 0) >= n else { throw corrupt("TUPLE\(n) at offset \(at) with too few values") }
            let items = Array(stack.suffix(n))
            stack.removeLast(n)
            try pushContainer(.tuple(items.map(\.value)), children: items)
        case 0x64: // DICT
            let items = try popMark()
            guard items.count % 2 == 0 else { throw corrupt("DICT at offset \(at) with an odd number of values") }
            var pairs: [(key: PickleValue, value: PickleValue)] = []
            for i in stride(from: 0, to: items.count, by: 2) { pairs.append((items[i].value, items[i + 1].value)) }
            try pushContainer(.dict(pairs), children: items)
        case 0x71: try memoize(Int(try byte())) // BINPUT
        case 0x72: try memoize(try integer(width: 4, signed: false)) // LONG_BINPUT
        case 0x94: try memoize(memo.count) // MEMOIZE
        case 0x68: try fetch(Int(try byte())) // BINGET
        case 0x6A: try fetch(try integer(width: 4, signed: false)) // LONG_BINGET
        case 0x4A: push(.int(try integer(width: 4, signed: true)), depth: 0) // BININT
        case 0x4B: push(.int(Int(try byte())), depth: 0) // BININT1
        case 0x4D: push(.int(try integer(width: 2, signed: false)), depth: 0) // BININT2
        case 0x8A: push(try long(length: Int(try byte())), depth: 0) // LONG1
        case 0x8B: // LONG4
            let length = try integer(width: 4, signed: true)
            guard length >= 0, length <= 4096 else { throw unsupported("LONG4 of \(length) bytes") }
            push(try long(length: length), depth: 0)
        case 0x47: // BINFLOAT, big-endian
            var bits: UInt64 = 0
            for b in try take(8) { bits = bits << 8 | UInt64(b) }
            push(.float(Double(bitPattern: bits)), depth: 0)
        case 0x8C: push(.string(try text(Int(try byte()))), depth: 0) // SHORT_BINUNICODE
        case 0x58: push(.string(try text(try integer(width: 4, signed: false))), depth: 0) // BINUNICODE
        case 0x8D: push(.string(try text(try integer(width: 8, signed: false))), depth: 0) // BINUNICODE8
        case 0x43: push(.bytes(Array(try take(Int(try byte())))), depth: 0) // SHORT_BINBYTES
        case 0x42: push(.bytes(Array(try take(try integer(width: 4, signed: false)))), depth: 0) // BINBYTES
        case 0x8E: push(.bytes(Array(try take(try integer(width: 8, signed: false)))), depth: 0) // BINBYTES8
        case 0x55: push(.string(latin1(try take(Int(try byte())))), depth: 0) // SHORT_BINSTRING
        case 0x54: // BINSTRING
            let length = try integer(width: 4, signed: true)
            guard length >= 0 else { throw corrupt("BINSTRING with negative length at offset \(at)") }
            push(.string(latin1(try take(length))), depth: 0)
        case 0x4E: push(.none, depth: 0) // NONE
        case 0x88: push(.bool(true), depth: 0) // NEWTRUE
        case 0x89: push(.bool(false), depth: 0) // NEWFALSE
        case 0x73: // SETITEM
            let value = try pop(), key = try pop()
            let file = path
            try mutateTop(adding: [key, value]) { try Self.setItems(&$0, [(key.value, value.value)], path: file) }
        case 0x75: // SETITEMS
            let items = try popMark()
            guard items.count % 2 == 0 else { throw corrupt("SETITEMS at offset \(at) with an odd number of values") }
            var pairs: [(key: PickleValue, value: PickleValue)] = []
            for i in stride(from: 0, to: items.count, by: 2) { pairs.append((items[i].value, items[i + 1].value)) }
            let file = path
            try mutateTop(adding: items) { try Self.setItems(&$0, pairs, path: file) }
        case 0x61: // APPEND
            let value = try pop()
            let file = path
            try mutateTop(adding: [value]) { try Self.append(&$0, [value.value], path: file) }
        case 0x65, 0x90: // APPENDS, ADDITEMS
            let items = try popMark()
            let file = path
            try mutateTop(adding: items) { try Self.append(&$0, items.map(\.value), path: file) }
        case 0x63: // GLOBAL
            let module = try line(), name = try line()
            push(TorchRebuild.global(module: module, name: name), depth: 0)
        case 0x93: // STACK_GLOBAL
            let name = try pop(), module = try pop()
            guard let n = name.value.stringValue, let m = module.value.stringValue else {
                throw corrupt("STACK_GLOBAL at offset \(at) without two strings")
            }
            push(TorchRebuild.global(module: m, name: n), depth: 0)
        case 0x52: // REDUCE
            let arguments = try pop(), callable = try pop()
            guard case let .tuple(args) = arguments.value else {
                throw corrupt("REDUCE at offset \(at) with \(arguments.value.kind) arguments instead of a tuple")
            }
            let result = try TorchRebuild.call(callable.value, arguments: args, path: path)
            try pushContainer(result, children: [arguments])
        case 0x81: // NEWOBJ
            let arguments = try pop(), cls = try pop()
            try pushObject(cls, arguments, at: at)
        case 0x92: // NEWOBJ_EX
            _ = try pop()
            let arguments = try pop(), cls = try pop()
            try pushObject(cls, arguments, at: at)
        case 0x62: // BUILD
            let state = try pop()
            let file = path
            try mutateTop(adding: [state]) { target in
                switch target {
                case var .object(object):
                    object.state = state.value
                    target = .object(object)
                case .tensor, .storage:
                    break // tensor state (hooks, python attributes) carries no data we use
                case .dict, .list:
                    // A dict or list subclass (an OrderedDict state_dict with `_metadata`): the
                    // state is instance attributes, not items, and holds no weights.
                    break
                default:
                    throw InteropError.corrupt(file: file, field: "pickle", message: "BUILD at offset \(at) on a \(target.kind)")
                }
            }
        case 0x51: // BINPERSID
            let pid = try pop()
            // Legacy saves record module classes as ('module', class, source_file, source): the
            // class reference itself is the value (its source text is ignored, never run).
            if case let .tuple(items) = pid.value, items.count >= 2, items[0].stringValue == "module", case .global = items[1] {
                push(items[1], depth: 0)
                return
            }
            let storage = try TorchRebuild.storage(fromPersistentID: pid.value, path: path)
            if let known = storages[storage.key], known.dtype != storage.dtype {
                throw corrupt("storage '\(storage.key)' named with dtypes \(known.dtype) and \(storage.dtype)")
            }
            if storages[storage.key] == nil { storages[storage.key] = storage }
            try pushContainer(.storage(storage), children: [])
        default:
            throw unsupported("pickle opcode 0x\(String(opcode, radix: 16)) at offset \(at)")
        }
    }

    // MARK: - Stack and memo

    private mutating func push(_ value: PickleValue, depth: Int) {
        stack.append(Slot(value: value, depth: depth))
    }

    /// Pushes a value built from `children`, one level deeper than the deepest of them.
    private mutating func pushContainer(_ value: PickleValue, children: [Slot]) throws {
        let depth = (children.map(\.depth).max() ?? 0) + 1
        guard depth <= Self.maximumDepth else {
            throw InteropError.limitExceeded(file: path, field: "pickle", message: "nesting deeper than \(Self.maximumDepth) levels")
        }
        stack.append(Slot(value: value, depth: depth))
    }

    private mutating func pushObject(_ cls: Slot, _ arguments: Slot, at: Int) throws {
        guard case let .global(module, name) = cls.value else {
            throw corrupt("NEWOBJ at offset \(at) on a \(cls.value.kind) instead of a class")
        }
        guard case let .tuple(args) = arguments.value else { throw corrupt("NEWOBJ at offset \(at) without an argument tuple") }
        let object = TorchRebuild.newObject(module: module, name: name, arguments: args)
        try pushContainer(object, children: [arguments])
    }

    private mutating func pop() throws -> Slot {
        guard stack.count > (marks.last ?? 0), let top = stack.popLast() else {
            throw corrupt("stack underflow at offset \(position - 1)")
        }
        return top
    }

    private func peek() throws -> Slot {
        guard stack.count > (marks.last ?? 0), let top = stack.last else { throw corrupt("stack underflow at offset \(position - 1)") }
        return top
    }

    private mutating func popMark() throws -> [Slot] {
        guard let mark = marks.popLast() else { throw corrupt("no MARK before offset \(position - 1)") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    /// Applies `change` to the top value in place, updating its depth and the memo slots that
    /// alias it (so a memoised dict later fetched with BINGET has its items).
    private mutating func mutateTop(adding children: [Slot], _ change: (inout PickleValue) throws -> Void) throws {
        guard stack.count > (marks.last ?? 0) else { throw corrupt("stack underflow at offset \(position - 1)") }
        let index = stack.count - 1
        var slot = stack[index]
        stack[index].value = .none
        // Drop the memo's references first so the mutation does not copy the container.
        for key in slot.memoKeys { memo[key]?.value = .none }
        try change(&slot.value)
        slot.depth = max(slot.depth, (children.map(\.depth).max() ?? 0) + 1)
        guard slot.depth <= Self.maximumDepth else {
            throw InteropError.limitExceeded(file: path, field: "pickle", message: "nesting deeper than \(Self.maximumDepth) levels")
        }
        for key in slot.memoKeys { memo[key] = Slot(value: slot.value, depth: slot.depth) }
        stack[index] = slot
    }

    private mutating func memoize(_ key: Int) throws {
        guard stack.count > (marks.last ?? 0) else { throw corrupt("memo store on an empty stack at offset \(position - 1)") }
        let index = stack.count - 1
        guard stack[index].memoKeys.count < Self.maximumAliases else {
            throw InteropError.limitExceeded(file: path, field: "pickle", message: "one value stored in more than \(Self.maximumAliases) memo slots")
        }
        if !stack[index].memoKeys.contains(key) { stack[index].memoKeys.append(key) }
        memo[key] = Slot(value: stack[index].value, depth: stack[index].depth)
    }

    private mutating func fetch(_ key: Int) throws {
        guard let slot = memo[key] else { throw corrupt("memo key \(key) read before it was stored (offset \(position - 1))") }
        stack.append(Slot(value: slot.value, depth: slot.depth, memoKeys: [key]))
    }

    private static func setItems(_ target: inout PickleValue, _ pairs: [(key: PickleValue, value: PickleValue)], path: String) throws {
        switch target {
        case var .dict(items):
            target = .none
            items.append(contentsOf: pairs)
            target = .dict(items)
        case var .object(object):
            target = .none
            object.dictItems.append(contentsOf: pairs)
            target = .object(object)
        default:
            throw InteropError.corrupt(file: path, field: "pickle", message: "SETITEM on a \(target.kind)")
        }
    }

    private static func append(_ target: inout PickleValue, _ values: [PickleValue], path: String) throws {
        switch target {
        case var .list(items):
            target = .none
            items.append(contentsOf: values)
            target = .list(items)
        case var .object(object):
            target = .none
            object.listItems.append(contentsOf: values)
            target = .object(object)
        default:
            throw InteropError.corrupt(file: path, field: "pickle", message: "APPEND on a \(target.kind)")
        }
    }

    // MARK: - Input

    private mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw corrupt("truncated: ends at offset \(bytes.count) before STOP") }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next `count` bytes; `count` is checked against the remaining input before any copy.
    private mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - position else {
            throw corrupt("length \(count) at offset \(position) runs past the end of the input (\(bytes.count) bytes)")
        }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    private mutating func integer(width: Int, signed: Bool) throws -> Int {
        let slice = try take(width)
        var value: UInt64 = 0
        for (i, b) in slice.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
        if signed && width == 4 { return Int(Int32(bitPattern: UInt32(truncatingIfNeeded: value))) }
        guard value <= UInt64(Int.max) else { throw corrupt("length \(value) out of range at offset \(position - width)") }
        return Int(value)
    }

    private mutating func long(length: Int) throws -> PickleValue {
        let slice = Array(try take(length))
        if slice.isEmpty { return .int(0) }
        if slice.count <= 8 {
            var value: UInt64 = 0
            for (i, b) in slice.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
            if slice.count < 8, let last = slice.last, last & 0x80 != 0 { value |= ~UInt64(0) << (8 * UInt64(slice.count)) }
            return .int(Int(Int64(bitPattern: value)))
        }
        return .bigInt(slice)
    }

    private mutating func text(_ count: Int) throws -> String {
        String(decoding: try take(count), as: UTF8.self)
    }

    private func latin1(_ bytes: ArraySlice<UInt8>) -> String {
        String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }

    /// A newline-terminated line (GLOBAL operands), at most 512 bytes.
    private mutating func line() throws -> String {
        let start = position
        while position < bytes.count, position - start <= 512 {
            if bytes[position] == 0x0A {
                defer { position += 1 }
                return String(decoding: bytes[start..<position], as: UTF8.self)
            }
            position += 1
        }
        throw corrupt("GLOBAL operand at offset \(start) is unterminated or longer than 512 bytes")
    }

    private func corrupt(_ message: String) -> InteropError { .corrupt(file: path, field: "pickle", message: message) }
    private func unsupported(_ message: String) -> InteropError { .unsupported(file: path, field: "pickle", message: message) }
}
