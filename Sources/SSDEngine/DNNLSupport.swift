import CDNNL
import Foundation

/// Throws `EngineError.backend` when a oneDNN call does not return success.
@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
    if status != dnnl_success {
        throw EngineError.backend("oneDNN \(what()) failed with status \(status.rawValue)")
    }
}

/// The process's oneDNN CPU engine and its stream (created once).
final class DNNLContext: @unchecked Sendable {
    static let shared: DNNLContext = DNNLContext()

    let engine: dnnl_engine_t
    let stream: dnnl_stream_t

    private init() {
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let engine = e else {
            fatalError("oneDNN: cannot create the CPU engine")
        }
        var s: dnnl_stream_t?
        guard dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let stream = s else {
            fatalError("oneDNN: cannot create a stream")
        }
        self.engine = engine
        self.stream = stream
    }
}

/// A memory descriptor for dense f32 data with the given dims and format tag.
func memoryDesc(_ dims: [Int], _ tag: dnnl_format_tag_t) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    let d = dims.map { dnnl_dim_t($0) }
    try dnnlCheck(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag), "memory_desc_init \(dims)")
    return md
}

/// A oneDNN memory object. Either wraps caller memory (handle set per call) or owns an
/// aligned buffer sized for its descriptor.
final class DNNLMemory {
    let handle: dnnl_memory_t
    let desc: dnnl_memory_desc_t
    private var owned: UnsafeMutableRawPointer?

    /// `own`: allocate a buffer for this descriptor; otherwise the data handle is set by `bind`.
    init(_ desc: dnnl_memory_desc_t, own: Bool) throws {
        var d = desc
        self.desc = desc
        var m: dnnl_memory_t?
        let size = dnnl_memory_desc_get_size(&d)
        if own {
            owned = UnsafeMutableRawPointer.allocate(byteCount: max(size, 64), alignment: 64)
            owned!.initializeMemory(as: UInt8.self, repeating: 0, count: max(size, 64))
        }
        // DNNL_MEMORY_NONE: no buffer until bound.
        try dnnlCheck(dnnl_memory_create(&m, &d, DNNLContext.shared.engine, owned ?? nil), "memory_create")
        handle = m!
    }

    /// Points the memory at caller-owned data.
    func bind(_ pointer: UnsafeRawPointer) throws {
        try dnnlCheck(dnnl_memory_set_data_handle(handle, UnsafeMutableRawPointer(mutating: pointer)), "set_data_handle")
    }

    var pointer: UnsafeMutableRawPointer? { owned }

    deinit {
        dnnl_memory_destroy(handle)
        owned?.deallocate()
    }
}

/// What oneDNN chose for one primitive: the operation as we named it and its implementation
/// (e.g. "jit:avx2", "jit_1x1:avx512_core", "ref:any").
public struct KernelImplementation: Hashable, Sendable, CustomStringConvertible {
    public let operation: String
    public let implementation: String

    public init(operation: String, implementation: String) {
        self.operation = operation
        self.implementation = implementation
    }
    /// True for oneDNN's reference (plain C++ loop) implementations: far too slow for a hot path.
    public var isReference: Bool { implementation.hasPrefix("ref") }
    public var description: String {
        let name = implementation.count < 22 ? implementation.padding(toLength: 22, withPad: " ", startingAt: 0) : implementation
        return "\(name) \(operation)"
    }
}

/// Every oneDNN primitive this process created, in order (for `ssd info` and the test that no
/// hot-path primitive falls back to a reference implementation).
enum DNNLRegistry {
    nonisolated(unsafe) private static var records: [KernelImplementation] = []
    private static let lock = NSLock()

    static func record(_ operation: String, _ implementation: String) {
        lock.lock()
        defer { lock.unlock() }
        records.append(KernelImplementation(operation: operation, implementation: implementation))
    }

    static var all: [KernelImplementation] {
        lock.lock()
        defer { lock.unlock() }
        return records
    }

    static func forgetLast() {
        lock.lock()
        defer { lock.unlock() }
        _ = records.popLast()
    }

    static func reset() {
        lock.lock()
        defer { lock.unlock() }
        records.removeAll()
    }
}

/// A primitive together with its descriptor.
final class DNNLPrimitive {
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t

    /// Creates the primitive descriptor from an op descriptor, then the primitive.
    init(opDesc: UnsafeRawPointer, hint: dnnl_primitive_desc_t? = nil, attr: dnnl_primitive_attr_t? = nil,
         what: String) throws {
        var p: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&p, opDesc, attr, DNNLContext.shared.engine, hint),
                      "primitive_desc_create (\(what))")
        pd = p!
        var prim: dnnl_primitive_t?
        let status = dnnl_primitive_create(&prim, pd)
        if status != dnnl_success {
            dnnl_primitive_desc_destroy(pd)
            throw EngineError.backend("oneDNN primitive_create (\(what)) failed with status \(status.rawValue)")
        }
        primitive = prim!
        DNNLRegistry.record(what, implementation)
    }

    /// A reorder between two descriptors (with `attr`, e.g. a sum post-op to accumulate).
    init(reorderFrom src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, attr: dnnl_primitive_attr_t? = nil,
         what: String) throws {
        var s = src, d = dst
        var p: dnnl_primitive_desc_t?
        let engine = DNNLContext.shared.engine
        try dnnlCheck(dnnl_reorder_primitive_desc_create(&p, &s, engine, &d, engine, attr), "reorder_primitive_desc_create")
        pd = p!
        var prim: dnnl_primitive_t?
        try dnnlCheck(dnnl_primitive_create(&prim, pd), "reorder primitive_create")
        primitive = prim!
        DNNLRegistry.record(what, implementation)
    }

    /// The memory descriptor the primitive chose for a query (src, weights, dst, workspace…).
    func queryDesc(_ what: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, index)!.pointee
    }

    /// The implementation name oneDNN chose (e.g. "jit:avx512_core").
    var implementation: String {
        var str: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &str) == dnnl_success, let s = str else {
            return "unknown"
        }
        return String(cString: s)
    }

    /// Executes with the given (argument, memory) pairs and waits for completion.
    func execute(_ args: [(Int32, DNNLMemory)]) throws {
        var list = args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1.handle) }
        let stream = DNNLContext.shared.stream
        try dnnlCheck(dnnl_primitive_execute(primitive, stream, Int32(list.count), &list), "primitive_execute")
        try dnnlCheck(dnnl_stream_wait(stream), "stream_wait")
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(pd)
    }
}

/// The extents a descriptor describes, e.g. [8, 64, 300, 300].
func dims(_ md: dnnl_memory_desc_t) -> [Int] {
    Mirror(reflecting: md.dims).children.prefix(Int(md.ndims)).compactMap { ($0.value as? dnnl_dim_t).map(Int.init) }
}

/// True when two descriptors describe the same layout.
func sameLayout(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
    var x = a, y = b
    return dnnl_memory_desc_equal(&x, &y) != 0
}

/// What a staging buffer holds; each role has one region in the arena.
enum StagingRole: Int, CaseIterable {
    case forwardSource, forwardWeights, forwardDestination
    case backwardDataDiffDestination, backwardDataWeights, backwardDataDiffSource
    case backwardWeightsSource, backwardWeightsDiffDestination, backwardWeightsDiffWeights
}

/// Scratch memory shared by every kernel of one backend: a region per staging role, grown to
/// the largest need. Kernels run one at a time and use their staging only within a call, so
/// one region serves every layer — instead of a weights-sized and activation-sized buffer per
/// layer. (One backend instance therefore serves one thread at a time.)
final class DNNLArena {
    private var regions: [StagingRole: (pointer: UnsafeMutableRawPointer, bytes: Int)] = [:]

    /// The region for `role`, at least `bytes` long. Growing it frees the old region: callers
    /// bind the pointer anew before every use.
    func region(_ role: StagingRole, bytes: Int) -> UnsafeMutableRawPointer {
        if let r = regions[role], r.bytes >= bytes { return r.pointer }
        regions[role]?.pointer.deallocate()
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        regions[role] = (pointer, max(bytes, 64))
        return pointer
    }

    deinit { for r in regions.values { r.pointer.deallocate() } }
}

/// Caller data in a plain layout (`user`) seen by a primitive that wants `internal`: either
/// the caller's memory directly, or an arena region plus reorders in either direction. With
/// `accumulate`, results are added into the caller's memory (a reorder with a sum post-op)
/// rather than written over it.
final class DNNLStaging {
    let user: DNNLMemory
    let internalMemory: DNNLMemory
    private let toInternal: DNNLPrimitive?
    private let toUser: DNNLPrimitive?
    private let arena: DNNLArena
    private let role: StagingRole
    private let bytes: Int
    /// With a persistent buffer: the (pointer, version) whose reorder it holds.
    private let persistent: Bool
    private var loaded: (pointer: UnsafeRawPointer, version: UInt64)?

    /// `persistent`: the internal copy lives in its own buffer rather than the shared arena,
    /// so it survives between calls and `load(_:version:)` can skip the reorder.
    init(user userDesc: dnnl_memory_desc_t, internal internalDesc: dnnl_memory_desc_t, needsIn: Bool, needsOut: Bool,
         arena: DNNLArena, role: StagingRole, accumulate: Bool = false, persistent: Bool = false) throws {
        self.arena = arena
        self.role = role
        var d = internalDesc
        bytes = dnnl_memory_desc_get_size(&d)
        user = try DNNLMemory(userDesc, own: false)
        let same = sameLayout(userDesc, internalDesc) && !accumulate
        self.persistent = persistent && !same
        if same {
            internalMemory = user
            toInternal = nil
            toUser = nil
        } else {
            internalMemory = try DNNLMemory(internalDesc, own: self.persistent)
            toInternal = needsIn ? try DNNLPrimitive(reorderFrom: userDesc, to: internalDesc, what: "reorder \(role) in \(dims(userDesc))") : nil
            let sum = accumulate ? try DNNLAttributes(sumPostOp: true) : nil
            toUser = needsOut ? try DNNLPrimitive(reorderFrom: internalDesc, to: userDesc, attr: sum?.handle,
                                                  what: "reorder \(role) out \(dims(userDesc))\(accumulate ? " (accumulating)" : "")") : nil
        }
    }

    /// Whether the primitive works on the caller's memory directly.
    var isDirect: Bool { internalMemory === user }

    private func bindInternal() throws {
        if !isDirect && !persistent { try internalMemory.bind(arena.region(role, bytes: bytes)) }
    }

    /// Like `load`, but skips the reorder when the persistent copy already holds this
    /// pointer's data at this version.
    func load(_ pointer: UnsafeRawPointer, version: UInt64) throws {
        if persistent, let l = loaded, l.pointer == pointer, l.version == version { return }
        try load(pointer)
        loaded = persistent ? (pointer, version) : nil
    }

    /// Binds the caller's pointer and reorders it into the internal layout when they differ.
    func load(_ pointer: UnsafeRawPointer) throws {
        try user.bind(pointer)
        try bindInternal()
        if let r = toInternal {
            try r.execute([(DNNL_ARG_FROM, user), (DNNL_ARG_TO, internalMemory)])
        }
    }

    /// Binds the caller's pointer (for an output written by the primitive).
    func bindOutput(_ pointer: UnsafeMutableRawPointer) throws {
        try user.bind(pointer)
        try bindInternal()
    }

    /// Reorders (or adds) the internal result back into the caller's memory when they differ.
    func store() throws {
        if let r = toUser {
            try r.execute([(DNNL_ARG_FROM, internalMemory), (DNNL_ARG_TO, user)])
        }
    }
}

extension ActivationLayout {
    /// The oneDNN format tag of this layout, or nil for a block oneDNN has no tag for.
    var dnnlTag: dnnl_format_tag_t? {
        switch self {
        case .nchw: return dnnl_nchw
        case .blocked(4): return dnnl_nChw4c
        case .blocked(8): return dnnl_nChw8c
        case .blocked(16): return dnnl_nChw16c
        case .blocked: return nil
        }
    }

    /// The blocked layouts oneDNN has tags for, smallest block first.
    static let dnnlBlocked: [ActivationLayout] = [.blocked(4), .blocked(8), .blocked(16)]
}

/// A memory descriptor for dense f32 activations of `dims` (N, C, H, W) in `layout`.
func memoryDesc(_ dims: [Int], _ layout: ActivationLayout) throws -> dnnl_memory_desc_t {
    guard let tag = layout.dnnlTag else { throw EngineError.invalidArgument("oneDNN has no format tag for \(layout)") }
    return try memoryDesc(dims, tag)
}

/// Primitive attributes (owned): a ReLU post-op (convolution epilogue) or a sum post-op
/// (a reorder that accumulates into its destination).
final class DNNLAttributes {
    let handle: dnnl_primitive_attr_t

    /// The eltwise post-op of an activation, where oneDNN 2.6 has PyTorch's formula: ReLU,
    /// ReLU6 (clip to [0, 6]) and hardswish (x·min(max(x + 3, 0), 6)/6); not hardsigmoid.
    static func eltwise(_ f: ActivationFunction) -> (dnnl_alg_kind_t, Float, Float)? {
        switch f {
        case .relu: return (dnnl_eltwise_relu, 0, 0)
        case .relu6: return (dnnl_eltwise_clip, 0, 6)
        case .hardswish: return (dnnl_eltwise_hardswish, 0, 0)
        case .hardsigmoid: return nil
        }
    }

    convenience init(reluPostOp: Bool = false, sumPostOp: Bool = false) throws {
        try self.init(activation: reluPostOp ? .relu : nil, sumPostOp: sumPostOp)
    }

    init(activation: ActivationFunction?, sumPostOp: Bool = false) throws {
        var a: dnnl_primitive_attr_t?
        try dnnlCheck(dnnl_primitive_attr_create(&a), "primitive_attr_create")
        handle = a!
        let eltwise = activation.flatMap(Self.eltwise)
        guard eltwise != nil || sumPostOp else { return }
        var p: dnnl_post_ops_t?
        try dnnlCheck(dnnl_post_ops_create(&p), "post_ops_create")
        defer { dnnl_post_ops_destroy(p) }
        if sumPostOp { try dnnlCheck(dnnl_post_ops_append_sum(p, 1), "post_ops_append_sum") }
        if let (kind, alpha, beta) = eltwise {
            try dnnlCheck(dnnl_post_ops_append_eltwise(p, 1, kind, alpha, beta), "post_ops_append_eltwise")
        }
        try dnnlCheck(dnnl_primitive_attr_set_post_ops(handle, p), "primitive_attr_set_post_ops")
    }

    deinit { dnnl_primitive_attr_destroy(handle) }
}
