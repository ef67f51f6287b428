import Foundation

// libFuzzer target: a whole .pth read (zip or legacy), every tensor materialised.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTorchFile(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    if let file = try? TorchFile(data: data, path: "fuzz"),
       let tensors = try? StateDict.allTensors(file.root, file: "fuzz") {
        for (name, tensor) in tensors.prefix(256) { _ = try? file.materialize(tensor, name: name) }
    }
    return 0
}
