import Foundation
import SSDData

// libFuzzer target: the Pascal VOC annotation parser (VOC.parseAnnotation(data:path:)) and the
// label encoding of what it returns, as `create-data-lists` uses them.
//
// SSD_FUZZ_VOC_UTF8_ONLY=1 skips inputs that are not valid UTF-8: a stop-gap that lets a
// campaign run past the known trap in Foundation's XMLParser on a non-UTF-8 element or attribute
// name (fuzz/regressions/voc/), until VOC.parseAnnotation refuses such bytes itself. Without
// it, every input reaches the parser.
private let utf8Only = ProcessInfo.processInfo.environment["SSD_FUZZ_VOC_UTF8_ONLY"] == "1"
/// Inputs seen and inputs given to the parser, printed at exit (they differ with the stop-gap).
private nonisolated(unsafe) var seen = 0, parsed = 0
private let reportAtExit: Void = {
    atexit { fputs("voc harness: \(parsed) of \(seen) inputs reached VOC.parseAnnotation\n", stderr) }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVOC(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    _ = reportAtExit
    seen += 1
    if utf8Only && String(data: data, encoding: .utf8) == nil { return 0 }
    parsed += 1
    if let annotation = try? VOC.parseAnnotation(data: data, path: "fuzz.xml") {
        _ = try? annotation.objectSet(labelMap: .voc, path: "fuzz.xml")
    }
    return 0
}
