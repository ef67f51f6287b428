import CDNNL
import Foundation

/// The instruction-set tiers that matter for our kernels, lowest first.
public enum CPUTier: Int, Comparable, Sendable, CustomStringConvertible {
    case baseline, avx, avx2, avx512, avx512BF16, amx

    public var description: String {
        switch self {
        case .baseline: return "SSE4.1 or older"
        case .avx: return "AVX"
        case .avx2: return "AVX2"
        case .avx512: return "AVX-512"
        case .avx512BF16: return "AVX-512-BF16"
        case .amx: return "AMX"
        }
    }

    public static func < (a: CPUTier, b: CPUTier) -> Bool { a.rawValue < b.rawValue }
}

/// What the host CPU is and what oneDNN dispatches to on it.
public enum HostCPU {
    /// /proc/cpuinfo's "model name" (empty where it is absent).
    public static let modelName: String = cpuinfoField("model name") ?? ""

    /// The highest tier the processor itself supports (from /proc/cpuinfo's flags).
    public static let tier: CPUTier = {
        let flags = Set((cpuinfoField("flags") ?? "").split(separator: " ").map(String.init))
        if flags.contains("amx_tile") && flags.contains("avx512f") { return .amx }
        if flags.contains("avx512_bf16") && flags.contains("avx512f") { return .avx512BF16 }
        if flags.contains("avx512f") && flags.contains("avx512bw") && flags.contains("avx512vl") { return .avx512 }
        if flags.contains("avx2") && flags.contains("fma") { return .avx2 }
        if flags.contains("avx") { return .avx }
        return .baseline
    }()

    /// The tier oneDNN dispatches to: the host's, capped by `ONEDNN_MAX_CPU_ISA` when set.
    public static var dispatchTier: CPUTier {
        let isa = dnnl_get_effective_cpu_isa()
        let value = isa.rawValue
        let tier: CPUTier
        if value & dnnl_cpu_isa_avx512_core_amx.rawValue == dnnl_cpu_isa_avx512_core_amx.rawValue { tier = .amx }
        else if value & dnnl_cpu_isa_avx512_core_bf16.rawValue == dnnl_cpu_isa_avx512_core_bf16.rawValue { tier = .avx512BF16 }
        else if value & dnnl_cpu_isa_avx512_core.rawValue == dnnl_cpu_isa_avx512_core.rawValue { tier = .avx512 }
        else if value & dnnl_cpu_isa_avx2.rawValue == dnnl_cpu_isa_avx2.rawValue { tier = .avx2 }
        else if value & dnnl_cpu_isa_avx.rawValue == dnnl_cpu_isa_avx.rawValue { tier = .avx }
        else { tier = .baseline }
        return min(tier, Self.tier)
    }

    /// oneDNN's version, e.g. "2.6.3".
    public static var oneDNNVersion: String {
        guard let v = dnnl_version()?.pointee else { return "unknown" }
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// One line naming the CPU, its tier and what oneDNN dispatches to.
    public static var summary: String {
        let dispatch = dispatchTier
        let capped = dispatch < tier ? " (capped by ONEDNN_MAX_CPU_ISA)" : ""
        return "\(modelName.isEmpty ? "unknown CPU" : modelName), \(ProcessInfo.processInfo.activeProcessorCount) cores, "
            + "tier \(tier); oneDNN \(oneDNNVersion) dispatches \(dispatch)\(capped)"
    }

    private static func cpuinfoField(_ name: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
