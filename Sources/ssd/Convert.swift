import ArgumentParser
import Foundation
import SSDInterop

/// `ssd convert`: PyTorch `.pth` files → safetensors, without Python.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert PyTorch .pth files to safetensors (no Python needed; pickles are never executed).",
        subcommands: [StateDictFile.self, Checkpoint.self, VGG16.self, MobileNetV3Large.self, SSDLite320.self])

    struct Files: ParsableArguments {
        @Argument(help: "The PyTorch file to read.")
        var input: String

        @Option(name: .shortAndLong, help: "The safetensors file to write (atomically).")
        var output: String
    }

    /// Runs a conversion, printing one line on success and one clear error line on failure.
    static func run(_ files: Files, _ what: String, _ body: (URL, URL) throws -> Int) throws {
        try run(files, what) { ConversionSummary(count: try body($0, $1)) }
    }

    /// Runs a conversion, printing one line on success (its notes on stderr, each a line) and
    /// one clear error line on failure.
    static func run(_ files: Files, _ what: String, _ body: (URL, URL) throws -> ConversionSummary) throws {
        do {
            let summary = try body(URL(fileURLWithPath: files.input), URL(fileURLWithPath: files.output))
            for note in summary.notes { printError("note: \(note)") }
            print("wrote \(summary.count) \(what) to \(files.output)")
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    struct StateDictFile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pth", abstract: "Any state-dict-like file: every tensor under its dotted key, dtypes preserved.")
        @OptionGroup var files: Files
        func run() throws { try Convert.run(files, "tensors", TorchConversion.convertStateDict) }
    }

    struct Checkpoint: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A reference checkpoint ({'epoch', 'model', 'optimizer'} or a state dict) → SSD300 weights with the reference names.")
        @OptionGroup var files: Files
        func run() throws { try Convert.run(files, "model tensors", TorchConversion.convertCheckpoint) }
    }

    struct VGG16: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "vgg16", abstract: "torchvision's ImageNet VGG16 → the SSD300 base (conv1_1…conv7, fc6/fc7 decimated).")
        @OptionGroup var files: Files
        func run() throws { try Convert.run(files, "base tensors", VGGImport.convertFile) }
    }

    struct MobileNetV3Large: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mobilenet-v3-large",
            abstract: "torchvision's ImageNet mobilenet_v3_large → the ssdlite320 backbone (for ssd train --model ssdlite320 --weights).",
            discussion: """
                The ImageNet weights are the full-tail network (160 / 960 channels after the C4 block); ssdlite320 is \
                torchvision's reduced-tail one (80 / 480). What is the same in both (features.0 … features.13.block.2) is \
                imported; the full tail's tensors are not, and are listed in a note (and in the file's metadata). A \
                reduced-tail state dict is imported whole. classifier.* and num_batches_tracked are not used.
                """)
        @OptionGroup var files: Files
        func run() throws { try Convert.run(files, "backbone tensors", MobileNetV3Import.convertFile) }
    }

    struct SSDLite320: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ssdlite320",
            abstract: "torchvision's ssdlite320_mobilenet_v3_large checkpoint (e.g. its COCO weights) → ssdlite320 weights for ssd detect / eval / train.",
            discussion: """
                Reads a state dict or a {'model': state_dict, …} checkpoint of torchvision's reference scripts. The class \
                count comes from the class head; every name and shape is checked. Class names: --class-names, else \
                torchvision's COCO categories for 91 classes, else none (ssd detect then needs 21 classes: VOC's).
                """)
        @OptionGroup var files: Files
        @Option(help: "Class names for labels 1…n−1: a JSON array or one a line (a leading __background__ entry is dropped).")
        var classNames: String?
        func run() throws {
            try Convert.run(files, "model tensors") { input, output in
                try SSDLiteCheckpoint.convertFile(input: input, output: output, classNamesFile: classNames.map { URL(fileURLWithPath: $0) })
            }
        }
    }
}
