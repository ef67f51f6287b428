import Foundation
import SSDData

// libFuzzer target: the reader of the reference's data lists (DataLists.read(split:from:) over
// TRAIN_images.json + TRAIN_objects.json, DataLists.readLabelMap over label_map.json). The input
// is split at the first two "\n#\n" separators into those three files, written to a scratch
// folder of this process (the readers take a folder), then read back.
private let folder: URL = {
    // A RAM-backed folder where there is one: three file writes per execution.
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("ssd-fuzz-datalists-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(at: folder) }
    return url
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDataLists(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = count > 0 && start != nil ? Array(UnsafeBufferPointer(start: start, count: count)) : []
    var parts: [Data] = []
    var from = 0, i = 0
    let separator = Array("\n#\n".utf8)
    while i + separator.count <= bytes.count, parts.count < 2 {
        if Array(bytes[i..<(i + separator.count)]) == separator {
            parts.append(Data(bytes[from..<i]))
            i += separator.count
            from = i
        } else {
            i += 1
        }
    }
    parts.append(Data(bytes[from...]))
    while parts.count < 3 { parts.append(Data()) }
    let images = folder.appendingPathComponent("TRAIN_images.json")
    let objects = folder.appendingPathComponent("TRAIN_objects.json")
    let labels = folder.appendingPathComponent("label_map.json")
    do {
        try parts[0].write(to: images)
        try parts[1].write(to: objects)
        try parts[2].write(to: labels)
    } catch {
        fatalError("cannot write the scratch files in \(folder.path): \(error)")
    }
    if let list = try? DataLists.read(split: .train, from: folder) { _ = list.objectCount }
    if let map = try? DataLists.readLabelMap(labels) { _ = map.classes }
    return 0
}
