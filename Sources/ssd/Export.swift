import ArgumentParser
import Foundation
import SSDData
import SSDDetection
import SSDEngine
import SSDExport
import SSDFiles
import SSDLayers
import SSDTraining

/// `ssd export`: a trained model in another format.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a model for other runtimes.",
        subcommands: [ONNX.self])

    /// `ssd export onnx`: the network (and optionally its post-processing) as an ONNX model.
    struct ONNX: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "onnx",
            abstract: "Write a model as ONNX (opset \(ONNXExport.opset)): images → locs and class logits, optionally boxes, labels and scores.",
            discussion: """
                Input `images`: (N, 3, S, S) float32, N dynamic; RGB in [0, 1] resized to S×S (bilinear) and normalised \
                per channel as (x − mean) / std. S, mean, std, the model kind and the class names are in the model's \
                metadata_props (ssd.input_size, ssd.input_mean, ssd.input_std, ssd.model, ssd.classes). Outputs `locs` \
                (N, priors, 4) and `class_logits` (N, priors, classes), the scores before softmax, as `ssd` computes them; \
                class 0 is the background. Batch normalisation is kept as BatchNormalization over the weights' own \
                tensors (runtimes fold it).

                --with-postprocess adds the model's post-processing (softmax, decoding against the priors, per-class \
                NonMaxSuppression, the best --top-k per image) with outputs detection_boxes (D, 4: x_min, y_min, x_max, \
                y_max as fractions of the image), detection_labels (D, int64, 1…classes−1), detection_scores (D) and \
                detection_batch_index (D, int64: the image of each detection), sorted by descending score. Thresholds \
                default to `ssd detect`'s.

                --write-sample FILE IMAGE… writes what `ssd` itself computes on those images, to check any runtime \
                against: a safetensors file with `images` (the preprocessed input batch), `locs`, `class_logits` and, \
                with --with-postprocess, the detections under the ONNX output names (labels and batch indices I64).
                """)

        @OptionGroup var engine: EngineOptions
        @Option(help: "Weights or checkpoint (safetensors); they say which model they are.") var weights: String
        @Option(name: .shortAndLong, help: "The ONNX file to write (atomically).") var output: String
        @Flag(help: "Decode, NMS and keep the best detections inside the graph.") var withPostprocess = false
        @Option(parsing: .unconditional, help: "With --with-postprocess: minimum class score (default the model's detect setting: 0.2).")
        var minScore: Float?
        @Option(parsing: .unconditional, help: "With --with-postprocess: NMS overlap threshold (default the model's).") var maxOverlap: Float?
        @Option(parsing: .unconditional, help: "With --with-postprocess: detections kept per image (default the model's).") var topK: Int?
        @Flag(help: "Replace --output (and --write-sample) if they exist.") var overwrite = false
        @Option(help: "Also write ssd's own input batch and outputs on IMAGES to this safetensors file.") var writeSample: String?
        @Argument(help: "With --write-sample: the photos (JPEG or PNG) of the sample batch, in order.") var images: [String] = []

        func validate() throws {
            if let minScore, !(0..<1).contains(minScore) { throw ValidationError("--min-score must be in [0, 1)") }
            if let maxOverlap, !(0...1).contains(maxOverlap) { throw ValidationError("--max-overlap must be in [0, 1]") }
            if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1") }
            if !withPostprocess && (minScore != nil || maxOverlap != nil || topK != nil) {
                throw ValidationError("--min-score, --max-overlap and --top-k set the post-processing: give --with-postprocess too")
            }
            if writeSample == nil && !images.isEmpty {
                throw ValidationError("images are for --write-sample FILE; give it, or no images")
            }
            if writeSample != nil && images.isEmpty { throw ValidationError("--write-sample needs at least one image") }
            if let writeSample, URL(fileURLWithPath: writeSample).standardized == URL(fileURLWithPath: output).standardized {
                throw ValidationError("--write-sample and --output name the same file")
            }
        }

        func run() throws {
            engine.apply()
            // Outputs are checked first, so a typo costs no model loading.
            let onnxURL = try target(output, what: "--output")
            let sampleURL = try writeSample.map { try target($0, what: "--write-sample") }
            for path in images { try requireExisting(path, what: "image") }
            let (model, names) = try loadModel(weights, algorithm: engine.algorithm)
            model.isTraining = false
            let settings = withPostprocess
                ? detectionSettings(model.architecture.demoDetection, minScore: minScore, maxOverlap: maxOverlap, topK: topK) : nil
            let export: ONNXExport
            do { export = try ONNXExport(model: model, classNames: names, postProcessing: settings) } catch {
                throw UserError("\(weights): cannot export: \(error)")
            }
            let data = try export.serializedData()
            // The sample is computed before anything is written: a photo that cannot be read leaves no file behind.
            let sample = try writeSample.map { _ in try Self.sample(model: model, images: images, settings: settings) }
            try writeAtomically(data, to: onnxURL)
            var summary = "wrote \(output): \(model.kind) (\(model.classCount) classes), \(export.nodeCount) nodes, "
                + "\(export.parameterCount) weights, opset \(ONNXExport.opset), " + String(format: "%.1f MB", Double(data.count) / 1e6)
            if let s = settings {
                summary += String(format: ", post-processing: min score %g, NMS %g, top %d", s.minScore, s.maxOverlap, s.topK)
            }
            print(summary)
            if let sampleURL, let path = writeSample, let sample {
                try writeAtomically(sample.data, to: sampleURL)
                print("wrote \(path): \(images.count) images, ssd's outputs" + (settings == nil ? "" : " and \(sample.detections) detections"))
            }
        }

        /// A file this command will write: writable, and not already there unless --overwrite.
        private func target(_ path: String, what: String) throws -> URL {
            if !overwrite && FileManager.default.fileExists(atPath: path) {
                throw UserError("\(path): already exists (\(what)); give --overwrite to replace it, or choose another name")
            }
            return try outputFile(path, what: what)
        }

        /// Runs `model` as `ssd detect` does on `images` (decode, bilinear resize, normalise, one
        /// forward of the whole batch, the detector with `settings`); returns a safetensors file
        /// of the input batch, the raw outputs and, with `settings`, the detections (placeholders
        /// dropped, sorted by descending score), and the number of detections.
        static func sample(model: SSDModel, images: [String], settings: DetectionSettings?) throws -> (data: Data, detections: Int) {
            let format = model.inputFormat, side = format.side, plane = 3 * side * side
            let batch = Tensor(shape: [images.count, 3, side, side])
            for (i, path) in images.enumerated() {
                let image: RGBImage
                do { image = try ImageCodec.load(URL(fileURLWithPath: path)) } catch {
                    let text = "\(error)"
                    throw UserError(text.contains(path) ? text : "\(path): \(text)")
                }
                format.normalization.normalize(Resampler.resizeBilinear(image, width: side, height: side), into: batch.data + i * plane)
            }
            let (locs, logits) = try model.forward(batch)
            guard locs.isFinite && logits.isFinite else {
                throw UserError("the model's outputs are not finite on these images (are the weights sane?); nothing written")
            }
            var entries = [("images", batch), ("locs", locs), ("class_logits", logits)].map { name, t in
                SafetensorsWriter.Entry(name: name, dtype: .float32, shape: t.shape, byteCount: 4 * t.count) {
                    $0.append(UnsafeBufferPointer(start: t.data, count: t.count))
                }
            }
            var metadata = ["ssd.model": model.kind.rawValue, "images": jsonText(images)]
            var detectionCount = 0
            if let settings {
                let found = try Detector.detectObjects(locs: locs, scores: logits, priorsCxcy: model.priorsCxcy, settings: settings)
                // Label 0 is the reference's "nothing found" placeholder: no detection.
                var rows = found.enumerated().flatMap { image, list in list.filter { $0.label != 0 }.map { (image, $0) } }
                rows.sort { $0.1.score > $1.1.score }
                detectionCount = rows.count
                entries += [
                    floats("detection_boxes", rows.flatMap { $0.1.box.array }, shape: [rows.count, 4]),
                    integers("detection_labels", rows.map { $0.1.label }),
                    floats("detection_scores", rows.map { $0.1.score }, shape: [rows.count]),
                    integers("detection_batch_index", rows.map { $0.0 }),
                ]
                metadata["ssd.postprocess"] = String(format: "min_score=%g max_overlap=%g top_k=%d", settings.minScore,
                                                     settings.maxOverlap, settings.topK)
            }
            return (try SafetensorsWriter.encode(entries: entries, metadata: metadata), detectionCount)
        }

        private static func floats(_ name: String, _ values: [Float], shape: [Int]) -> SafetensorsWriter.Entry {
            SafetensorsWriter.Entry(name: name, dtype: .float32, shape: shape, byteCount: 4 * values.count) { data in
                values.withUnsafeBufferPointer { data.append($0) }
            }
        }

        private static func integers(_ name: String, _ values: [Int]) -> SafetensorsWriter.Entry {
            let little = values.map { Int64($0).littleEndian }
            return SafetensorsWriter.Entry(name: name, dtype: .int64, shape: [values.count], byteCount: 8 * values.count) { data in
                little.withUnsafeBufferPointer { data.append($0) }
            }
        }

        private static func jsonText(_ strings: [String]) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: strings, options: [.withoutEscapingSlashes])) ?? Data("[]".utf8)
            return String(decoding: data, as: UTF8.self)
        }
    }
}
