import ArgumentParser
import Foundation
import SSDInterop

/// `ssd convert`: PyTorch `.pth` files → safetensors, without Python.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert PyTorch .pth files to safetensors (no Python needed; pickles are never executed).",
        subcommands: [StateDictFile.self, Checkpoint.self, VGG16.self])

    struct Files: ParsableArguments {
        @Argument(help: "The PyTorch file to read.")
        var input: String

        @Option(name: .shortAndLong, help: "The safetensors file to write (atomically).")
        var output: String
    }

    /// Runs a conversion, printing one line on success and one clear error line on failure.
    static func run(_ files: Files, _ what: String, _ body: (URL, URL) throws -> Int) throws {
        do {
            let count = try body(URL(fileURLWithPath: files.input), URL(fileURLWithPath: files.output))
            print("wrote \(count) \(what) to \(files.output)")
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
}
