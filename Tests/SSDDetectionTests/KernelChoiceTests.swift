import SSDDetection
import SSDEngine
import SSDTestSupport
import XCTest

/// oneDNN falls back to its reference loops (`ref:…`, hundreds to thousands of times slower)
/// when asked for a layout or shape its fast kernels do not cover on the host — as nChw16c
/// max pooling did on AVX2. No primitive of either model may do that on the running host (the
/// suite runs natively and with ONEDNN_MAX_CPU_ISA=AVX2, so both tiers are covered here).
final class KernelChoiceTests: XCTestCase {
    func testNoPrimitiveOfEitherModelUsesAReferenceImplementation() throws {
        report("host", HostCPU.summary)
        report("activation layout", DNNLBackend().hostLayout)
        for (name, configuration) in [("SSD300", SSDConfiguration(classCount: 21)), ("compact", .compact(classCount: 21))] {
            for algorithm in [ConvolutionAlgorithm.direct, .winograd] {
                let kernels = try KernelSurvey.survey(configuration, algorithm: algorithm)
                let operations = Set(kernels.map { $0.operation.prefix { $0 != " " } })
                // Every kind of hot-path primitive was created and looked at.
                for kind in ["convolution", "max", "relu", "reorder"] where !(kind == "relu" && configuration.batchNorm) {
                    XCTAssertTrue(operations.contains(Substring(kind)), "\(name): no \(kind) primitive was surveyed")
                }
                let slow = kernels.filter(\.isReference)
                XCTAssertTrue(slow.isEmpty, "\(name) \(algorithm) on \(HostCPU.dispatchTier): reference kernels for "
                              + slow.map(\.operation).joined(separator: "; "))
                var counts: [String: Int] = [:]
                for k in kernels { counts[k.implementation, default: 0] += 1 }
                report("\(name) \(algorithm) kernels", counts.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }
                    .joined(separator: ", "))
            }
        }
    }

    func testHostLayoutIsOneOneDNNChose() {
        let layout = DNNLBackend().hostLayout
        // A blocked layout on x86-64 tiers with AVX2 or better; whatever it is, the backend
        // must accept it for a typical convolution.
        XCTAssertNoThrow(try DNNLBackend().convolution(
            ConvolutionShape(batch: 1, inChannels: 64, outChannels: 64, inHeight: 8, inWidth: 8, kernelSize: (3, 3),
                             padding: (1, 1)), algorithm: .direct, input: layout, output: layout, fusedReLU: true))
        if HostCPU.dispatchTier >= .avx2 { XCTAssertNotEqual(layout, .nchw, "oneDNN chose no blocked layout on \(HostCPU.summary)") }
    }
}
