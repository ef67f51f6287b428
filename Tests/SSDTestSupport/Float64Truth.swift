import Foundation
import SSDEngine
import SSDLayers
import XCTest

/// The float64 truth of a fixture case (`case_f64.safetensors`: the reference run in float64,
/// stored rounded to float32) and PyTorch float32's own error against it per key
/// (`case_f64.json` → `pytorch_f32_relative_error`, max|f32 − f64| / max|f64|).
///
/// Parity is judged against the truth, with a bound per tensor drawn from PyTorch's error: a
/// bound tighter than PyTorch's own error only holds where our kernels happen to be PyTorch's
/// (the same oneDNN kernels on the same ISA) and breaks on another CPU.
public struct Float64Truth {
    public let file: SafetensorsFile
    /// Per key: max|PyTorch f32 − f64| / max|f64|.
    public let pytorchError: [String: Double]
    /// The SGD losses in full float64 (the safetensors copy is rounded to float32).
    public let sgdLosses: [Double]

    /// Keys whose truth is zero (to 1e-12): their errors are absolute, max|ours − f64|, and
    /// `pytorchError` holds PyTorch's absolute error for them.
    public var absoluteKeys: Set<String> = []

    /// Loads `<directory>/case_f64.safetensors` and PyTorch's error per key — from
    /// `case_f64.json` (`pytorch_f32_relative_error`, SSD300's fixture) or from `case.json`
    /// (`pytorch_f32_error`: per key `relative`, `absolute`, `max_abs_f64`; a null relative error
    /// where the truth is zero) — or nil (loudly) without them.
    public static func load(_ directory: String) throws -> Float64Truth? {
        guard let url = Fixtures.url("\(directory)/case_f64.safetensors") else { return nil }
        if let root = Fixtures.root, FileManager.default.fileExists(atPath: root.appendingPathComponent("\(directory)/case_f64.json").path),
           let jsonURL = Fixtures.url("\(directory)/case_f64.json") {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as? [String: Any] ?? [:]
            let errors = json["pytorch_f32_relative_error"] as? [String: Double] ?? [:]
            return Float64Truth(file: try SafetensorsFile(url: url), pytorchError: errors,
                                sgdLosses: json["sgd_losses_f64"] as? [Double] ?? [])
        }
        guard let jsonURL = Fixtures.url("\(directory)/case.json") else { return nil }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as? [String: Any] ?? [:]
        let entries = json["pytorch_f32_error"] as? [String: [String: Any]] ?? [:]
        var truth = Float64Truth(file: try SafetensorsFile(url: url),
                                 // Where the truth is zero the relative error is null, and `relativeError` measures
                                 // the absolute one: compare with PyTorch's absolute error there.
                                 pytorchError: entries.compactMapValues { ($0["relative"] as? Double) ?? ($0["absolute"] as? Double) },
                                 sgdLosses: json["sgd_losses_f64"] as? [Double] ?? [])
        truth.absoluteKeys = Set(entries.filter { $0.value["relative"] as? Double == nil }.keys)
        return truth
    }
}

/// How far an implementation may sit from the float64 truth, as a multiple of PyTorch
/// float32's own error for the same quantity, never below `floor` (relative): the truth itself
/// is stored rounded to float32, and a few quantities come out of PyTorch with an error near
/// float32's rounding.
public struct ParityBound: Sendable, CustomStringConvertible {
    public var factor: Double
    public var floor: Double

    public init(factor: Double, floor: Double) {
        self.factor = factor
        self.floor = floor
    }

    /// The bound for a quantity PyTorch float32 computes `pytorchError` away from the truth.
    public func bound(pytorchError: Double) -> Double { max(factor * pytorchError, floor) }

    public var description: String { "≤ max(\(factor)× PyTorch f32 error, \(floor))" }
}

/// One comparison's outcome.
public struct ParityMeasure {
    public let key: String
    /// max|ours − f64| / max|f64| (absolute max|ours| where the truth is all zero).
    public let error: Double
    /// PyTorch float32's error for the same key.
    public let pytorchError: Double
    public let bound: Double
    /// error / PyTorch's error: how many times PyTorch's own float32 error we are off.
    public var ratio: Double { pytorchError > 0 ? error / pytorchError : (error == 0 ? 0 : .infinity) }
}

/// Relative error of `ours` against `truth`, in Double: max|a − b| / max|b|, or max|a| when
/// `truth` is all zero (then `ours` must be zero too).
public func relativeError(_ ours: UnsafePointer<Float>, _ truth: UnsafePointer<Float>, count: Int) -> Double {
    var d = 0.0, scale = 0.0, size = 0.0
    for i in 0..<count {
        d = max(d, abs(Double(ours[i]) - Double(truth[i])))
        scale = max(scale, abs(Double(truth[i])))
        size = max(size, abs(Double(ours[i])))
    }
    return scale > 0 ? d / scale : size
}

extension Float64Truth {
    /// Compares `ours` (same element count) with the truth under `key`, asserts the bound and
    /// reports the measured error and its ratio to PyTorch's. `boundFrom` replaces the PyTorch
    /// error the bound is drawn from (the ratio still uses the key's own).
    @discardableResult
    public func judge(_ key: String, _ ours: Tensor, _ bound: ParityBound, boundFrom: Double? = nil, label: String = "",
                      file: StaticString = #filePath, line: UInt = #line) throws -> ParityMeasure {
        let truth = try self.file.tensor(key)
        XCTAssertEqual(truth.count, ours.count, "\(key): element count", file: file, line: line)
        guard truth.count == ours.count else { return ParityMeasure(key: key, error: .infinity, pytorchError: 0, bound: 0) }
        let error = absoluteKeys.contains(key)
            ? Double(maxDifference(ours.data, truth.data, count: ours.count).absolute)
            : relativeError(ours.data, truth.data, count: ours.count)
        return check(key, error: error, bound, boundFrom: boundFrom, label: label, file: file, line: line)
    }

    /// Asserts a measured relative `error` for `key` against its bound and reports it.
    @discardableResult
    public func check(_ key: String, error: Double, _ bound: ParityBound, boundFrom: Double? = nil, label: String = "",
                      file: StaticString = #filePath, line: UInt = #line) -> ParityMeasure {
        let pytorch = pytorchError[key] ?? 0
        XCTAssertNotNil(pytorchError[key], "\(key): no PyTorch error recorded in case_f64.json", file: file, line: line)
        let m = ParityMeasure(key: key, error: error, pytorchError: pytorch, bound: bound.bound(pytorchError: boundFrom ?? pytorch))
        XCTAssertLessThanOrEqual(m.error, m.bound, "\(label) \(key): \(m.error) vs f64, PyTorch f32 is \(pytorch) (bound \(m.bound))",
                                 file: file, line: line)
        return m
    }
}

/// Prints a table row per measure and a summary (the worst ratio), greppable from test logs.
public func reportParity(_ title: String, _ measures: [ParityMeasure]) {
    guard !measures.isEmpty else { return }
    for m in measures {
        report("\(title) \(m.key) vs f64", String(format: "%.3g (PyTorch f32 %.3g, ratio %.2f, bound %.3g)",
                                                  m.error, m.pytorchError, m.ratio, m.bound))
    }
    let worst = measures.filter { $0.pytorchError > 0 }.max { $0.ratio < $1.ratio }
    if let worst {
        report("\(title) worst ratio to PyTorch f32 error", String(format: "%.2f× on %@ (%.3g vs %.3g)", worst.ratio, worst.key,
                                                                    worst.error, worst.pytorchError))
    }
}
