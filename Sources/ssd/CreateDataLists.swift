import ArgumentParser
import Foundation
import SSDData

/// `ssd create-data-lists`: the reference's create_data_lists.py, for Pascal VOC, COCO and
/// Create ML data sets.
struct CreateDataLists: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-data-lists",
        abstract: "Make the training and test lists (the reference's JSON files) from a Pascal VOC, COCO or Create ML data set.",
        discussion: """
            Pascal VOC (--voc07, --voc12): training is the trainval split of --voc07 and --voc12, test the test split of \
            --voc07 — the reference's 07+12 setting. Any VOC-layout folder works: its classes are the 20 VOC ones unless \
            --classes names them or --gather-classes collects them. An image is JPEGImages/ID.jpg, else the annotation's \
            <filename>, else ID.jpeg or ID.png in any case.

            COCO (--coco, --coco-test): instances-style JSON; the classes are its categories in file order, crowd regions \
            become difficult objects, and source_ids.json beside the lists keeps the COCO image and category ids (for \
            `ssd eval --coco-results`).

            Create ML (--createml, --createml-test): a JSON list of {"image", "annotations": [{"label", "coordinates": \
            {x, y, width, height}}]} with centre-anchored pixel boxes; the classes are the labels found, sorted, unless \
            --classes names them.

            Image names in COCO and Create ML files are relative to --images (--images-test), by default the annotation \
            file's folder. Images without objects are kept: they are negatives.

            Every image is checked: its annotation must be well-formed with known classes, and the image a complete JPEG or \
            PNG of the annotation's size, with every box inside it. An image that fails is skipped and printed with its \
            reason (with --strict, the first problem is an error); in COCO and Create ML files, a box of zero area or lying \
            outside its image leaves out that object alone. A malformed COCO or Create ML file (a missing field, an unknown \
            id, a negative size, a missing image file) is an error naming the file, the entry and the field. A list left with \
            no images or no objects is an error that counts the skipped images by reason. Nothing is written unless all \
            lists can be made, and existing lists are replaced only with --overwrite.
            """)

    @Option(help: "A VOC2007-layout folder (Annotations/, JPEGImages/, ImageSets/Main/).") var voc07: String?
    @Option(help: "A VOC2012-layout folder whose trainval split is added to training.") var voc12: String?
    @Option(help: "A COCO annotation file for the training list.") var coco: String?
    @Option(help: "A COCO annotation file for the test list.") var cocoTest: String?
    @Option(help: "A Create ML annotation file for the training list.") var createml: String?
    @Option(help: "A Create ML annotation file for the test list.") var createmlTest: String?
    @Option(help: "The folder the training file's image names are relative to (default: the file's folder).") var images: String?
    @Option(help: "The folder the test file's image names are relative to (default: the file's folder).") var imagesTest: String?
    @Option(help: "Where to write TRAIN_images.json, TRAIN_objects.json, TEST_*.json and label_map.json.") var output: String
    @Option(help: "Comma-separated class names (labels 1…n in this order) instead of the VOC classes or the labels found.") var classes: String?
    @Flag(help: "Use the sorted class names found in the annotations (VOC).") var gatherClasses = false
    @Option(help: "Training split name (VOC).") var trainSplit: String = "trainval"
    @Option(help: "Test split name (VOC).") var testSplit: String = "test"
    @Flag(help: "Fail on the first problem instead of skipping the image.") var strict = false
    @Flag(help: "Replace lists already in --output.") var overwrite = false

    func validate() throws {
        let families = [voc07 != nil || voc12 != nil, coco != nil || cocoTest != nil, createml != nil || createmlTest != nil]
        guard families.filter({ $0 }).count == 1 else {
            throw ValidationError("give one data set: --voc07 (with --voc12), --coco/--coco-test, or --createml/--createml-test")
        }
        if voc12 != nil && voc07 == nil { throw ValidationError("--voc12 adds to --voc07's lists: give --voc07 too") }
        if classes != nil && gatherClasses { throw ValidationError("--classes and --gather-classes contradict each other") }
        if families[1] && (classes != nil || gatherClasses) {
            throw ValidationError("a COCO file names its classes (its categories): --classes and --gather-classes do not apply")
        }
        if families[2] && gatherClasses { throw ValidationError("Create ML sets gather their classes already; --gather-classes is not needed") }
        if families[0] && (images != nil || imagesTest != nil) {
            throw ValidationError("--images and --images-test are for COCO and Create ML files; a VOC folder holds its images")
        }
        if images != nil && coco == nil && createml == nil { throw ValidationError("--images goes with --coco or --createml") }
        if imagesTest != nil && cocoTest == nil && createmlTest == nil {
            throw ValidationError("--images-test goes with --coco-test or --createml-test")
        }
    }

    var classSource: ClassSource? {
        classes.map { .given($0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }) }
    }

    /// The annotation file `file` with its images folder (given, or the file's own).
    func annotated(_ file: String?, images: String?, what: String) throws -> AnnotatedFolder? {
        guard let file else { return nil }
        try requireExisting(file, what: what)
        if let images { try requireExisting(images, what: what == "--coco" || what == "--createml" ? "--images" : "--images-test", folder: true) }
        let url = URL(fileURLWithPath: file)
        return AnnotatedFolder(annotations: url, images: images.map { URL(fileURLWithPath: $0) } ?? url.deletingLastPathComponent())
    }

    func run() throws {
        let show: (SkippedItem) -> Void = { printError("skipped \($0)") }
        let report: DataListsReport
        if let voc07 {
            try requireExisting(voc07, what: "--voc07", folder: true)
            if let voc12 { try requireExisting(voc12, what: "--voc12", folder: true) }
            let source: ClassSource = gatherClasses ? .gathered : classSource ?? .voc
            let roots = [voc07] + (voc12.map { [$0] } ?? [])
            report = try DataLists.build(trainRoots: roots.map { URL(fileURLWithPath: $0) }, testRoots: [URL(fileURLWithPath: voc07)],
                                         classes: source, trainSplit: trainSplit, testSplit: testSplit, strict: strict, onSkip: show)
        } else if coco != nil || cocoTest != nil {
            report = try DataLists.build(coco: try annotated(coco, images: images, what: "--coco"),
                                         test: try annotated(cocoTest, images: imagesTest, what: "--coco-test"),
                                         strict: strict, onSkip: show)
        } else {
            report = try DataLists.build(createML: try annotated(createml, images: images, what: "--createml"),
                                         test: try annotated(createmlTest, images: imagesTest, what: "--createml-test"),
                                         classes: classSource ?? .gathered, strict: strict, onSkip: show)
        }
        let folder = URL(fileURLWithPath: output)
        let existing = DataLists.fileNames(for: report).filter {
            FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path)
        }
        if !existing.isEmpty && !overwrite {
            throw UserError("\(output) already holds \(existing.joined(separator: ", ")); nothing written (--overwrite replaces them)")
        }
        try makeFolder(output)
        try DataLists.write(report, to: folder)
        for (name, list, present) in [("training", report.train, report.hasTrain), ("test", report.test, report.hasTest)] where present {
            let negatives = list.objects.filter { $0.count == 0 }.count
            print("\(name): \(list.images.count) images, \(list.objectCount) objects"
                  + (negatives > 0 ? " (\(negatives) without objects)" : ""))
        }
        print("classes: \(report.labelMap.classes.joined(separator: ", "))")
        if !report.skipped.isEmpty {
            let images = report.skipped.filter { $0.scope == .image }.count
            print("skipped: \(images) images, \(report.skipped.count - images) objects "
                  + "(\(DataLists.countsByReason(report.skipped)); reasons above)")
        }
        print("lists written to \(output)")
    }
}
