import Foundation
import SSDData

// libFuzzer target: the Pascal VOC annotation parser (VOC.parseAnnotation(data:path:), libxml2
// in strict mode) and the label encoding of what it returns, as `create-data-lists` uses them.
// Every input reaches the parser. (Foundation's XMLParser, used before, trapped on non-UTF-8
// names and on a processing instruction without data: fuzz/regressions/voc/ keeps those inputs.)
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVOC(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    if let annotation = try? VOC.parseAnnotation(data: data, path: "fuzz.xml") {
        _ = try? annotation.objectSet(labelMap: .voc, path: "fuzz.xml")
    }
    return 0
}
