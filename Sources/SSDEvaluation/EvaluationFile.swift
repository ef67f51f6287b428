import Foundation
import SSDBoxes
import SSDFiles

/// The JSON exchange format of `ssd map` (that of the fixture `map_case.json`): per image lists
/// `true_boxes`, `true_labels`, `true_difficulties`, `det_boxes`, `det_labels`, `det_scores`.
public struct EvaluationFile {
    public var truths: [EvaluationTruth]
    /// Per image, its detections.
    public var detections: [[Detection]]

    public init(truths: [EvaluationTruth], detections: [[Detection]]) {
        self.truths = truths
        self.detections = detections
    }

    /// Parses the file at `url`; errors name the file and the field.
    public init(url: URL) throws {
        if let problem = RegularFile.problem(url.path) { throw EvaluationError.invalid("\(url.path): cannot read: \(problem)") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw EvaluationError.invalid("\(url.path): cannot read (\(error.localizedDescription))")
        }
        try self.init(data: data, path: url.path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw EvaluationError.invalid("\(path): not a JSON object")
        }
        func list(_ key: String) throws -> [Any] {
            guard let value = object[key] as? [Any] else { throw EvaluationError.invalid("\(path): missing list '\(key)'") }
            return value
        }
        func boxes(_ key: String, _ image: Int, _ value: Any) throws -> [Box] {
            guard let rows = value as? [[Any]] else { throw EvaluationError.invalid("\(path): '\(key)'[\(image)] is not a list of boxes") }
            return try rows.enumerated().map { j, row in
                let numbers = row.compactMap { ($0 as? NSNumber)?.floatValue }
                guard row.count == 4, let box = try? Box(validating: numbers) else {
                    throw EvaluationError.invalid("\(path): '\(key)'[\(image)][\(j)] is not four numbers")
                }
                return box
            }
        }
        func numbers(_ key: String, _ image: Int, _ value: Any) throws -> [Double] {
            guard let row = value as? [Any] else { throw EvaluationError.invalid("\(path): '\(key)'[\(image)] is not a list") }
            return try row.enumerated().map { j, v in
                guard let n = v as? NSNumber else {
                    throw EvaluationError.invalid("\(path): '\(key)'[\(image)][\(j)] is not a number")
                }
                return n.doubleValue
            }
        }
        // Labels are class indices: whole numbers, read exactly (1.7 is not label 1, 1e300 is
        // not a label at all), 1… for ground truth; detections may carry the reference's
        // "nothing found" placeholder 0.
        func labels(_ key: String, _ image: Int, _ value: Any, lowest: Int) throws -> [Int] {
            try numbers(key, image, value).enumerated().map { j, v in
                guard let label = Int(exactly: v), label >= lowest else {
                    throw EvaluationError.invalid("\(path): '\(key)'[\(image)][\(j)]: \(v) is not a label (a whole number ≥ \(lowest))")
                }
                return label
            }
        }
        func flags(_ key: String, _ image: Int, _ value: Any) throws -> [Bool] {
            try numbers(key, image, value).enumerated().map { j, v in
                guard v == 0 || v == 1 else { throw EvaluationError.invalid("\(path): '\(key)'[\(image)][\(j)]: \(v) is neither 0 nor 1") }
                return v == 1
            }
        }
        func scores(_ key: String, _ image: Int, _ value: Any) throws -> [Float] {
            try numbers(key, image, value).enumerated().map { j, v in
                guard v.isFinite else { throw EvaluationError.invalid("\(path): '\(key)'[\(image)][\(j)]: \(v) is not a finite score") }
                return Float(v)
            }
        }
        let keys = ["true_boxes", "true_labels", "true_difficulties", "det_boxes", "det_labels", "det_scores"]
        let lists = try keys.map(list)
        guard Set(lists.map(\.count)).count == 1 else {
            throw EvaluationError.invalid("\(path): the lists \(keys.joined(separator: ", ")) must have one entry per image")
        }
        var truths: [EvaluationTruth] = [], detections: [[Detection]] = []
        for i in 0..<lists[0].count {
            let t = EvaluationTruth(boxes: try boxes(keys[0], i, lists[0][i]), labels: try labels(keys[1], i, lists[1][i], lowest: 1),
                                    difficult: try flags(keys[2], i, lists[2][i]))
            let detBoxes = try boxes(keys[3], i, lists[3][i]), detLabels = try labels(keys[4], i, lists[4][i], lowest: 0)
            let detScores = try scores(keys[5], i, lists[5][i])
            guard t.boxes.count == t.labels.count, t.labels.count == t.difficult.count else {
                throw EvaluationError.invalid("\(path): image \(i): true_boxes, true_labels and true_difficulties differ in length")
            }
            guard detBoxes.count == detLabels.count, detLabels.count == detScores.count else {
                throw EvaluationError.invalid("\(path): image \(i): det_boxes, det_labels and det_scores differ in length")
            }
            truths.append(t)
            detections.append(detBoxes.indices.map { Detection(box: detBoxes[$0], label: detLabels[$0], score: detScores[$0]) })
        }
        self.truths = truths
        self.detections = detections
    }

    /// Throws, naming the first entry, unless every label is at most `maximum` (the number of
    /// classes without background).
    public func requireLabels(atMost maximum: Int, path: String) throws {
        for (i, t) in truths.enumerated() {
            if let j = t.labels.firstIndex(where: { $0 > maximum }) {
                throw EvaluationError.invalid("\(path): 'true_labels'[\(i)][\(j)]: label \(t.labels[j]) but only \(maximum) classes (labels 1…\(maximum); use --classes)")
            }
        }
        for (i, d) in detections.enumerated() {
            if let j = d.firstIndex(where: { $0.label > maximum }) {
                throw EvaluationError.invalid("\(path): 'det_labels'[\(i)][\(j)]: label \(d[j].label) but only \(maximum) classes (labels 1…\(maximum); use --classes)")
            }
        }
    }
}
