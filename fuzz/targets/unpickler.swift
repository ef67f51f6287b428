// libFuzzer target: the restricted unpickler and the state-dict walk over whatever it decodes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUnpickler(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = count > 0 && start != nil ? Array(UnsafeBufferPointer(start: start, count: count)) : []
    if let value = try? Unpickler.load(bytes, path: "fuzz") {
        _ = try? StateDict.allTensors(value, file: "fuzz")
        _ = try? StateDict.moduleTensors(value, file: "fuzz")
    }
    return 0
}
