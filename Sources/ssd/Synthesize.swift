import ArgumentParser
import Foundation
import SSDData

extension SyntheticFormat: ExpressibleByArgument {}

/// `ssd synthesize`: writes the demo's synthetic set of shapes in any supported annotation format.
struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a small synthetic detection set (coloured shapes) in a VOC, COCO or Create ML layout.",
        discussion: """
            voc: Annotations/, JPEGImages/ID.jpg, ImageSets/Main/{trainval,test}.txt. voc-png: the same with PNG images. \
            coco: images/, train.json, test.json. createml: train/ and test/, each with its images and annotations.json. \
            Six classes: \(SyntheticVOC.classes.joined(separator: ", ")). Try a format end to end with \
            `ssd create-data-lists`, `ssd train` and `ssd eval`.
            """)

    @Option(help: "voc, voc-png, coco or createml.") var format: SyntheticFormat = .voc
    @Option(help: "The folder to write (must be empty or new).") var output: String
    @Option(help: "Training images.") var trainImages: Int = 64
    @Option(help: "Test images.") var testImages: Int = 16
    @Option(help: "Every N-th image has no object (a negative); 0: none.") var negativeEvery: Int = 0
    @Option(help: "Random seed.") var seed: UInt64 = 1

    func validate() throws {
        if trainImages < 0 || testImages < 0 || trainImages + testImages == 0 {
            throw ValidationError("--train-images and --test-images must be ≥ 0, and not both 0")
        }
        if negativeEvery < 0 { throw ValidationError("--negative-every must be ≥ 0") }
    }

    func run() throws {
        let folder = URL(fileURLWithPath: output)
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: output), !contents.isEmpty {
            throw UserError("\(output): not empty; nothing written (choose a new folder)")
        }
        var options = SyntheticVOC.Options()
        options.trainCount = trainImages
        options.testCount = testImages
        options.negativeEvery = negativeEvery
        options.seed = seed
        options.format = format
        try makeFolder(output)
        let ids = try SyntheticVOC.generate(at: folder, options: options)
        print("\(format.rawValue) set: \(ids.train.count) training and \(ids.test.count) test images in \(output)")
    }
}
