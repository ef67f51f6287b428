import Foundation

// libFuzzer target: the safetensors header parser (SafetensorsFile(data:path:)) and tensor reads.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    if let file = try? SafetensorsFile(data: data, path: "fuzz") {
        for name in file.names.prefix(64) {
            guard let entry = file.entries[name], entry.range.count <= 1 << 20 else { continue }
            _ = try? file.tensor(name)
            _ = try? file.integers(name)
        }
    }
    return 0
}
