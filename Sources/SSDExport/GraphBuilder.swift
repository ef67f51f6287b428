import Foundation
import SSDEngine

/// An attribute value of an ONNX node.
enum Attribute {
    case int(Int)
    case ints([Int])
    case float(Float)

    func proto(named name: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        switch self {
        case let .int(v):
            a.type = .int
            a.i = Int64(v)
        case let .ints(v):
            a.type = .ints
            a.ints = v.map(Int64.init)
        case let .float(v):
            a.type = .float
            a.f = v
        }
        return a
    }
}

/// An ONNX graph under construction: nodes in topological order (each added after the values it
/// reads), initializers, and fresh value names. Values are referred to by name; the builder
/// never reuses a name, so the graph is in SSA form as ONNX requires.
struct GraphBuilder {
    private(set) var nodes: [Onnx_NodeProto] = []
    private(set) var initializers: [Onnx_TensorProto] = []
    /// Names taken so far, of values and initializers alike (ONNX names must be unique across both).
    private var names: Set<String> = []
    private var counter = 0
    /// Constants already added, by content, so that repeated shapes and scalars are shared.
    private var constants: [String: String] = [:]

    /// A value name not used before, derived from `hint`.
    mutating func fresh(_ hint: String) -> String {
        counter += 1
        var name = "\(hint)_\(counter)"
        while names.contains(name) { counter += 1; name = "\(hint)_\(counter)" }
        names.insert(name)
        return name
    }

    /// Adds a node reading `inputs` and returns its outputs' names (`outputs` of them, fresh
    /// unless `named` gives them).
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], outputs: Int = 1,
                       named: [String]? = nil, hint: String? = nil) -> [String] {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        let outs = named ?? (0..<outputs).map { _ in fresh(hint ?? op.lowercased()) }
        if let named { names.formUnion(named) }
        n.output = outs
        n.name = "\(op)_\(nodes.count)"
        n.attribute = attributes.keys.sorted().map { attributes[$0]!.proto(named: $0) }
        nodes.append(n)
        return outs
    }

    /// A one-output node; returns its output's name.
    mutating func op(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:], hint: String? = nil,
                     named: String? = nil) -> String {
        node(op, inputs, attributes, named: named.map { [$0] }, hint: hint)[0]
    }

    /// Adds a float32 initializer under `name` (a state_dict name or an exporter constant) holding
    /// `count` floats from `data` with shape `dims`; returns the name. Throws on a name taken.
    @discardableResult
    mutating func initializer(_ name: String, dims: [Int], data: UnsafePointer<Float>, count: Int) throws -> String {
        guard !names.contains(name) else { throw ExportError.duplicateName(name) }
        precondition(dims.reduce(1, *) == count, "\(name): shape \(dims) for \(count) values")
        names.insert(name)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = dims.map(Int64.init)
        // raw_data is little-endian; so is every platform this builds for.
        t.rawData = Data(buffer: UnsafeBufferPointer(start: data, count: count))
        initializers.append(t)
        return name
    }

    /// A float32 initializer from an engine tensor, with the tensor's shape unless `dims` is given.
    @discardableResult
    mutating func initializer(_ name: String, _ tensor: Tensor, dims: [Int]? = nil) throws -> String {
        try initializer(name, dims: dims ?? tensor.shape, data: tensor.data, count: tensor.count)
    }

    /// A float32 constant (shared between identical uses), named after `hint`.
    mutating func constant(_ values: [Float], dims: [Int], hint: String = "const") -> String {
        let key = "f\(dims):\(values.map(\.bitPattern))"
        if let name = constants[key] { return name }
        let name = fresh("ssd_export.\(hint)")
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = dims.map(Int64.init)
        t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
        initializers.append(t)
        constants[key] = name
        return name
    }

    /// An int64 constant (shapes, axes, indices, counts), shared between identical uses.
    mutating func constant(int64 values: [Int], dims: [Int]? = nil, hint: String = "const") -> String {
        let dims = dims ?? [values.count]
        let key = "i\(dims):\(values)"
        if let name = constants[key] { return name }
        let name = fresh("ssd_export.\(hint)")
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.dims = dims.map(Int64.init)
        t.int64Data = values.map(Int64.init)
        initializers.append(t)
        constants[key] = name
        return name
    }

    /// A float32 scalar constant (rank 0).
    mutating func scalar(_ value: Float, hint: String = "scalar") -> String { constant([value], dims: [], hint: hint) }
    /// An int64 scalar constant (rank 0).
    mutating func scalar(int64 value: Int, hint: String = "scalar") -> String { constant(int64: [value], dims: [], hint: hint) }
}

/// A graph input or output: float32 or int64, dimensions fixed or named (`N`, `detections`).
enum Dimension: Equatable {
    case fixed(Int)
    case named(String)
}

func valueInfo(_ name: String, elementType: Onnx_TensorProto.DataType, dims: [Dimension]) -> Onnx_ValueInfoProto {
    var shape = Onnx_TensorShapeProto()
    shape.dim = dims.map { d in
        var dim = Onnx_TensorShapeProto.Dimension()
        switch d {
        case let .fixed(v): dim.dimValue = Int64(v)
        case let .named(s): dim.dimParam = s
        }
        return dim
    }
    var tensor = Onnx_TypeProto.Tensor()
    tensor.elemType = Int32(elementType.rawValue)
    tensor.shape = shape
    var type = Onnx_TypeProto()
    type.tensorType = tensor
    var info = Onnx_ValueInfoProto()
    info.name = name
    info.type = type
    return info
}
