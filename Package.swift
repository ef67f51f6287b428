// swift-tools-version:6.0
import PackageDescription

// Every target ships with Swift's checks on (-O in release: bounds, overflow, preconditions), the
// same settings the fuzz harnesses build with. -Ounchecked was measured not to pay: on a Zen 4,
// compact training 43.0 vs 44.1 img/s and batch-8 inference 142-154 vs 148-152 img/s, within noise
// (the hot loops run on unsafe pointers, where unchecked changes nothing).
let package = Package(
    name: "SSD",
    products: [
        .executable(name: "ssd", targets: ["ssd"]),
        .library(name: "SSDDetection", targets: ["SSDDetection"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // ONNX export: the runtime only (onnx.pb.swift is generated once and committed; no build plugin).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C shim: oneDNN (Debian's libdnnl-dev), nothing else in it.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CFreeType", path: "Sources/CFreeType", pkgConfig: "freetype2",
                       providers: [.apt(["libfreetype-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", providers: [.apt(["libpng-dev"])]),
        // libxml2 for VOC annotations (Foundation's XMLParser wrapper crashes on some documents).
        .systemLibrary(name: "CLibXML2", path: "Sources/CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        // zlib (Debian's zlib1g-dev): raw inflate and CRC-32 for zip-format .pth files.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Open MPI (Debian's libopenmpi-dev): data-parallel training and evaluation over many processes.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // Reading users' files: the check every reader makes first (regular file, readable).
        .target(name: "SSDFiles"),
        // One box and one detection, from the detector to JSON, drawing and evaluation.
        .target(name: "SSDBoxes"),
        // Tensors, the backend interface over oneDNN, naive twins of every fast kernel.
        .target(name: "SSDEngine", dependencies: ["CDNNL", "CWinograd"]),
        // AVX2 + FMA Winograd tile transforms, chosen at run time (portable Swift ones elsewhere).
        .target(name: "CWinograd", path: "Sources/CWinograd"),
        // Layers with forward/backward, parameters, SGD, safetensors.
        .target(name: "SSDLayers", dependencies: ["SSDEngine", "SSDFiles"]),
        // Priors, box coding, matching, MultiBox loss, the SSD300 assembly.
        .target(name: "SSDDetection", dependencies: ["SSDBoxes", "SSDEngine", "SSDLayers"]),
        // VOC, COCO and Create ML data, reference-format lists, image I/O, transforms, loader, synthetic sets.
        .target(name: "SSDData", dependencies: ["SSDBoxes", "SSDEngine", "SSDFiles", "CTurboJPEG", "CPNG", "CLibXML2"]),
        // PyTorch .pth reading (zip and legacy formats) with a restricted unpickler; VGG16 import.
        .target(name: "SSDInterop", dependencies: ["SSDEngine", "SSDLayers", "SSDDetection", "CZlib", "SSDFiles"]),
        // Average precision: VOC07 11-point (the reference's), VOC12 area, COCO 0.50:0.95.
        .target(name: "SSDEvaluation", dependencies: ["SSDBoxes", "SSDFiles"]),
        // Drawing detections (boxes, FreeType labels) and plots (loss curves, AP bars).
        .target(name: "SSDGraphics", dependencies: ["SSDBoxes", "SSDData", "CFreeType"]),
        // The processes of a data-parallel job: a `Communicator` (one process, or MPI) with sums in rank order.
        .target(name: "SSDDistributed", dependencies: ["CMPI"]),
        // Training loop with checkpoints and exact resume; evaluation over a data set.
        .target(name: "SSDTraining", dependencies: ["SSDBoxes", "SSDDetection", "SSDData", "SSDLayers", "SSDEvaluation", "SSDEngine",
                                                     "SSDDistributed"]),
        // ONNX export: the graph walked from a model's description, encoded with ONNX's onnx.proto.
        .target(name: "SSDExport", dependencies: ["SSDDetection", "SSDLayers", "SSDEngine",
                                                  .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["Generated/README.md"]),
        .executableTarget(
            name: "ssd",
            dependencies: ["SSDBoxes", "SSDDetection", "SSDLayers", "SSDEngine", "SSDData", "SSDInterop", "SSDEvaluation", "SSDGraphics", "SSDTraining",
                           "SSDExport", "SSDFiles", "SSDDistributed",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "SSDTestSupport", dependencies: ["SSDEngine", "SSDLayers"], path: "Tests/SSDTestSupport"),
        .testTarget(name: "SSDBoxesTests", dependencies: ["SSDBoxes"]),
        .testTarget(name: "SSDEngineTests", dependencies: ["SSDEngine", "SSDTestSupport"]),
        .testTarget(name: "SSDLayersTests", dependencies: ["SSDLayers", "SSDEngine", "SSDTestSupport"]),
        .testTarget(name: "SSDDetectionTests", dependencies: ["SSDBoxes", "SSDDetection", "SSDLayers", "SSDEngine", "SSDTestSupport"]),
        .testTarget(name: "SSDDataTests", dependencies: ["SSDData", "SSDBoxes", "SSDEngine", "SSDLayers", "SSDTestSupport"]),
        .testTarget(name: "SSDEvaluationTests", dependencies: ["SSDBoxes", "SSDEvaluation", "SSDData", "SSDTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "SSDGraphicsTests", dependencies: ["SSDBoxes", "SSDGraphics", "SSDData", "SSDTestSupport"]),
        .testTarget(name: "SSDDistributedTests", dependencies: ["SSDDistributed"]),
        .testTarget(name: "SSDTrainingTests", dependencies: ["SSDBoxes", "SSDTraining", "SSDDetection", "SSDData", "SSDLayers", "SSDEngine",
                                                             "SSDEvaluation", "SSDTestSupport"]),
        // The `ssd` executable run as a user would (it is built beside the test bundle).
        .testTarget(name: "SSDCommandTests", dependencies: ["ssd", "SSDData", "SSDLayers", "SSDTestSupport"]),
        .testTarget(name: "SSDExportTests", dependencies: ["SSDExport", "SSDDetection", "SSDLayers", "SSDEngine",
                                                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "SSDInteropTests", dependencies: ["SSDInterop", "SSDDetection", "SSDLayers", "SSDEngine", "SSDTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
