import Foundation
import SSDEngine
import SSDLayers

/// Locates the PyTorch reference fixtures: `$SSD_FIXTURES`, or `../shared/fixtures` beside
/// the checkout. Tests that need them call `Fixtures.require()` and skip — loudly — without.
public enum Fixtures {
    public static var root: URL? {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["SSD_FIXTURES"], !env.isEmpty {
            return fm.fileExists(atPath: env) ? URL(fileURLWithPath: env) : nil
        }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let candidate = repo.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
        return fm.fileExists(atPath: candidate.path) ? candidate : nil
    }

    /// The fixture file at `relative` (e.g. "ssd300/case.safetensors"), or nil with a loud
    /// message on standard error.
    public static func url(_ relative: String) -> URL? {
        guard let root, FileManager.default.fileExists(atPath: root.appendingPathComponent(relative).path) else {
            FileHandle.standardError.write(Data("""
                ⚠️  FIXTURE MISSING: \(relative) — set SSD_FIXTURES or place shared/fixtures beside the checkout. \
                Tests that compare against PyTorch are SKIPPED.\n
                """.utf8))
            return nil
        }
        return root.appendingPathComponent(relative)
    }
}

/// Largest |a − b| over the elements, and that value divided by max |b| (the tensor's scale).
public func maxDifference(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> (absolute: Float, relative: Float) {
    var d: Float = 0, scale: Float = 0
    for i in 0..<count {
        d = max(d, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    return (d, scale > 0 ? d / scale : d)
}

public func maxDifference(_ a: Tensor, _ b: Tensor) -> (absolute: Float, relative: Float) {
    precondition(a.count == b.count, "comparing \(a.shape) with \(b.shape)")
    return maxDifference(a.data, b.data, count: a.count)
}

public func maxDifference(_ a: [Float], _ b: [Float]) -> (absolute: Float, relative: Float) {
    precondition(a.count == b.count, "comparing \(a.count) with \(b.count) values")
    return a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in maxDifference(x.baseAddress!, y.baseAddress!, count: a.count) } }
}

/// A tensor of the given shape filled from a seeded normal distribution.
public func randomTensor(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
    var rng = SeededRandom(seed: seed)
    let t = Tensor(shape: shape)
    rng.fillNormal(t, std: std)
    return t
}

/// Prints a measured figure in a form easy to grep from test logs.
public func report(_ label: String, _ value: Any) {
    print("[measure] \(label): \(value)")
}
