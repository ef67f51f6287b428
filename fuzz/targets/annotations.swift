import Foundation
import SSDData

// libFuzzer target: the COCO and Create ML annotation readers (COCO.read, CreateML.read) and
// the list assembly after them (DataLists.build(coco:) / build(createML:): image checks, label
// maps, encoding), as `create-data-lists --coco/--createml` uses them. The input is written as
// the annotation file of a folder holding two small images, a.jpg (64×48) and b.png (32×32), so
// entries that name them reach the box checks and the image decoding.
let folder: URL = {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("ssd-fuzz-annotations-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    try? ImageCodec.save(RGBImage(width: 64, height: 48), to: url.appendingPathComponent("a.jpg"))
    try? ImageCodec.save(RGBImage(width: 32, height: 32), to: url.appendingPathComponent("b.png"))
    return url
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAnnotations(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    let file = folder.appendingPathComponent("annotations.json")
    guard (try? data.write(to: file)) != nil else { return 0 }
    let source = AnnotatedFolder(annotations: file, images: folder)
    _ = try? DataLists.build(coco: source, test: nil)
    _ = try? DataLists.build(createML: source, test: nil)
    _ = try? DataLists.build(coco: source, test: source, strict: true)
    return 0
}
