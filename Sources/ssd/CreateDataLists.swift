import ArgumentParser
import Foundation
import SSDData

/// `ssd create-data-lists`: the reference's create_data_lists.py.
struct CreateDataLists: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-data-lists",
        abstract: "Make the training and test lists (the reference's JSON files) from Pascal VOC folders.",
        discussion: """
            Training: the trainval split of --voc07 and --voc12; test: the test split of --voc07 — the reference's \
            07+12 setting. Any VOC-layout folder works: its classes are the 20 VOC ones unless --classes names them \
            or --gather-classes collects them from the annotations.

            Every listed image is checked: its annotation must be well-formed XML with plain decimal numbers and \
            known classes, and the image must be a complete JPEG or PNG of the annotation's <size>, with every box \
            inside it. An image that fails is skipped with its reason printed (with --strict, the first problem is an \
            error). An id listed twice is kept once, the repeat reported (an error with --strict). A list left with \
            no images or no objects is an error that counts the skipped images by reason.
            """)

    @Option(help: "A VOC2007-layout folder (Annotations/, JPEGImages/, ImageSets/Main/).") var voc07: String
    @Option(help: "A VOC2012-layout folder whose trainval split is added to training.") var voc12: String?
    @Option(help: "Where to write TRAIN_images.json, TRAIN_objects.json, TEST_*.json and label_map.json.") var output: String
    @Option(help: "Comma-separated class names (labels 1…n in this order) instead of the VOC classes.") var classes: String?
    @Flag(help: "Use the sorted class names found in the annotations.") var gatherClasses = false
    @Option(help: "Training split name.") var trainSplit: String = "trainval"
    @Option(help: "Test split name.") var testSplit: String = "test"
    @Flag(help: "Fail on the first problem instead of skipping the image.") var strict = false

    func validate() throws {
        if classes != nil && gatherClasses { throw ValidationError("--classes and --gather-classes contradict each other") }
    }

    func run() throws {
        try requireExisting(voc07, what: "--voc07", folder: true)
        if let voc12 { try requireExisting(voc12, what: "--voc12", folder: true) }
        let source: ClassSource = gatherClasses ? .gathered
            : classes.map { .given($0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }) } ?? .voc
        let roots = [voc07] + (voc12.map { [$0] } ?? [])
        let report = try DataLists.build(trainRoots: roots.map { URL(fileURLWithPath: $0) }, testRoots: [URL(fileURLWithPath: voc07)],
                                         classes: source, trainSplit: trainSplit, testSplit: testSplit, strict: strict)
        for item in report.skipped { printError("skipped \(item)") }
        try DataLists.write(report, to: URL(fileURLWithPath: output))
        print("training: \(report.train.images.count) images, \(report.train.objectCount) objects")
        print("test: \(report.test.images.count) images, \(report.test.objectCount) objects")
        print("classes: \(report.labelMap.classes.joined(separator: ", "))")
        if !report.skipped.isEmpty {
            var counts: [String: Int] = [:]
            for item in report.skipped { counts[item.category, default: 0] += 1 }
            let reasons = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.value) \($0.key)" }
            print("skipped: \(report.skipped.count) (\(reasons.joined(separator: ", ")); reasons above)")
        }
        print("lists written to \(output)")
    }
}
