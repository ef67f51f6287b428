import Foundation

// libFuzzer target: the zip reader (central directory, local headers, ZIP64, CRC) on its own.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzZip(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = count > 0 && start != nil ? Data(bytes: start!, count: count) : Data()
    if let archive = try? ZipArchive(data: data, path: "fuzz") {
        // Readers state a bound (TorchFile: the storage's size); 16 MiB stands for one here.
        for entry in archive.entries.prefix(64) { _ = try? archive.contents(of: entry, maximumSize: 1 << 24) }
    }
    return 0
}
