import Foundation
import SSDEngine
import SSDLayers

/// The `ssd convert` conversions, as library calls: each reads a `.pth`, selects and names the
/// tensors, and writes a safetensors file atomically. They throw `InteropError` on bad input.
public enum TorchConversion {
    /// Every tensor of a state-dict-like file under its dotted key, dtypes preserved.
    public static func stateDictTensors(_ file: TorchFile) throws -> [(name: String, tensor: TorchTensor)] {
        let references = try StateDict.allTensors(file.root, file: file.path)
        guard !references.isEmpty else { throw InteropError.unexpectedContent(file: file.path, message: "holds no tensors") }
        return try references.map { ($0.name, try file.materialize($0.tensor, name: $0.name)) }
    }

    /// The model weights of a reference checkpoint — `{'epoch', 'model', 'optimizer'}` with the
    /// whole model pickled, `{'model': state_dict}`, `{'state_dict': …}`, a pickled module, or a
    /// plain state dict — under the reference's names (a DataParallel `module.` prefix removed),
    /// and the metadata to record (`epoch` when present).
    public static func checkpointTensors(_ file: TorchFile) throws -> (tensors: [(name: String, tensor: TorchTensor)], metadata: [String: String]) {
        let (references, metadata) = try modelReferences(file)
        // Checked on the pickle's references, before any tensor is read or inflated.
        try SSD300Names.check(references, file: file.path)
        let tensors = try references.map { ($0.name, try file.materialize($0.tensor, name: $0.name)) }
        return (tensors, metadata)
    }

    /// The model's tensor references in a checkpoint of any of the forms `checkpointTensors`
    /// reads (nothing is materialised yet), and the metadata to record.
    public static func modelReferences(_ file: TorchFile) throws -> (references: [(name: String, tensor: TorchTensorReference)], metadata: [String: String]) {
        let root = file.root
        var metadata: [String: String] = [:]
        if let epoch = root["epoch"]?.intValue { metadata["epoch"] = String(epoch) }
        let model = root["model"] ?? root["state_dict"] ?? root
        var references: [(name: String, tensor: TorchTensorReference)]
        if StateDict.isModule(model) {
            references = try StateDict.moduleTensors(model, file: file.path)
        } else if case .dict = model {
            references = try StateDict.allTensors(model, file: file.path)
        } else {
            throw InteropError.unexpectedContent(file: file.path, message: "'model' is a \(model.kind), neither a module nor a state dict")
        }
        guard !references.isEmpty else { throw InteropError.unexpectedContent(file: file.path, message: "the checkpoint holds no model tensors") }
        if references.allSatisfy({ $0.name.hasPrefix("module.") }) {
            references = references.map { (String($0.name.dropFirst("module.".count)), $0.tensor) }
        }
        return (references, metadata)
    }

    /// `ssd convert pth`: reads `input`, writes every tensor to `output` (never over `input`).
    public static func convertStateDict(input: URL, output: URL) throws -> Int {
        try refuseOverwritingInput(input: input, output: output)
        let tensors = try stateDictTensors(try TorchFile(url: input))
        try writeSafetensors(tensors, to: output)
        return tensors.count
    }

    /// `ssd convert checkpoint`: reads `input`, writes the model weights to `output` (never over
    /// `input`). A checkpoint whose model is not the reference SSD300 is an error.
    public static func convertCheckpoint(input: URL, output: URL) throws -> Int {
        try refuseOverwritingInput(input: input, output: output)
        let (tensors, metadata) = try checkpointTensors(try TorchFile(url: input))
        try writeSafetensors(tensors, metadata: metadata, to: output)
        return tensors.count
    }

    /// Serialises tensors of any supported dtype as safetensors (header keys sorted, data in the
    /// given order, data section 8-byte aligned).
    public static func encodeSafetensors(_ tensors: [(name: String, tensor: TorchTensor)], metadata: [String: String] = [:]) throws -> Data {
        for (name, tensor) in tensors where !tensor.isConsistent {
            throw InteropError.unexpectedContent(file: "<output>", message: "tensor '\(name)': \(tensor.bytes.count) bytes do not match shape \(tensor.shape)")
        }
        do {
            return try SafetensorsWriter.encode(entries: tensors.map { name, tensor in
                SafetensorsWriter.Entry(name: name, dtype: tensor.dtype, shape: tensor.shape, byteCount: tensor.bytes.count) {
                    $0.append(contentsOf: tensor.bytes)
                }
            }, metadata: metadata)
        } catch let error as EngineError {
            throw InteropError.unexpectedContent(file: "<output>", message: error.description)
        }
    }

    /// Writes `tensors` to `url` atomically.
    public static func writeSafetensors(_ tensors: [(name: String, tensor: TorchTensor)], metadata: [String: String] = [:], to url: URL) throws {
        try writeAtomically(try encodeSafetensors(tensors, metadata: metadata), to: url)
    }
}

/// Throws `InteropError.outputIsInput` when `output` names the same file as `input`: the same
/// path, another spelling of it, or a symbolic or hard link to it (same device and inode).
/// An output that does not exist yet cannot be the input.
public func refuseOverwritingInput(input: URL, output: URL) throws {
    if input.standardizedFileURL.resolvingSymlinksInPath().path == output.standardizedFileURL.resolvingSymlinksInPath().path {
        throw InteropError.outputIsInput(file: input.path, output: output.path)
    }
    var a = stat(), b = stat()
    guard stat(input.path, &a) == 0, stat(output.path, &b) == 0 else { return }
    if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
        throw InteropError.outputIsInput(file: input.path, output: output.path)
    }
}
