import SSDDetection

/// `Detector.detectObjects` as ONNX nodes appended after the network, for any
/// `DetectionSettings` (the tutorial's and torchvision's conventions alike):
///
/// 1. softmax over the classes of `class_logits`;
/// 2. the offsets decoded against the priors (a constant) with the settings' `coding`, then
///    clipped to [0, 1] when `clipToImage`;
/// 3. per image and non-background class, ONNX `NonMaxSuppression` with score threshold
///    `minScore` (kept when strictly above, as `ssd`), IoU threshold `maxOverlap` (suppressed
///    when strictly above, as `ssd`) and at most min(`topK`, priors) boxes per class; with
///    `candidatesPerClass` (torchvision), only the class's best that many boxes meet NMS
///    (a `TopK` per image and class first, each (image, class) then one NMS batch);
/// 4. per image, the best `topK` detections of all classes (scores sorted with `TopK`, then each
///    detection's rank within its image counted with a running sum).
///
/// Outputs: `detection_boxes` (D, 4) float32 x_min, y_min, x_max, y_max as fractions of the
/// image; `detection_labels` (D) int64, 1…classes−1; `detection_scores` (D) float32;
/// `detection_batch_index` (D) int64 — D detections of the whole batch, sorted by descending
/// score, each naming its image. An image with nothing found has no rows (`ssd`'s placeholder
/// detection, label 0, is not produced).
///
/// Where the two can differ: the order of exactly equal scores within a class (ONNX leaves it
/// open), and IoUs within rounding of `maxOverlap` or scores within rounding of `minScore` or of
/// an image's `topK`-th score (the arithmetic is the same, the rounding need not be). A box of
/// zero or negative area never suppresses nor is suppressed in ONNX Runtime; in `ssd` its IoU is
/// 0 or NaN, which does not suppress either.
enum PostProcessingGraph {
    /// Output names.
    static let boxes = "detection_boxes", labels = "detection_labels", scores = "detection_scores"
    static let batchIndex = "detection_batch_index"

    /// The settings as JSON-ready values, for the model's metadata.
    static func describe(_ s: DetectionSettings) -> [String: Any] {
        var d: [String: Any] = ["min_score": Double(s.minScore), "max_overlap": Double(s.maxOverlap), "top_k": s.topK,
                                "clip_to_image": s.clipToImage]
        if let c = s.candidatesPerClass { d["candidates_per_class"] = c }
        switch s.coding {
        case .tutorial: d["box_coding"] = "tutorial"
        case let .torchvision(coder):
            d["box_coding"] = "torchvision"
            d["box_coder_weights"] = coder.weights.map(Double.init)
            d["box_coder_max_log_scale"] = Double(coder.maxLogScale)
        }
        return d
    }

    /// Throws unless ONNX can express `settings` for `classCount` classes.
    static func validate(_ s: DetectionSettings, classCount: Int) throws {
        guard classCount >= 2 else { throw ExportError.invalidSettings("post-processing needs at least one class besides the background") }
        guard s.minScore.isFinite else { throw ExportError.invalidSettings("min score must be finite, got \(s.minScore)") }
        guard (0...1).contains(s.maxOverlap) else { throw ExportError.invalidSettings("max overlap must be in [0, 1], got \(s.maxOverlap)") }
        guard s.topK >= 1 else { throw ExportError.invalidSettings("top k must be at least 1, got \(s.topK)") }
        if let c = s.candidatesPerClass, c < 1 {
            throw ExportError.invalidSettings("candidates per class must be at least 1, got \(c)")
        }
    }

    /// Appends the post-processing to `g`, reading `images` (for the batch size), `locs` and
    /// `logits`; returns the four outputs' value infos.
    static func append(to g: inout GraphBuilder, images: String, locs: String, logits: String, priorsCxcy: [Float],
                       classCount: Int, settings s: DetectionSettings) throws -> [Onnx_ValueInfoProto] {
        try validate(s, classCount: classCount)
        let priors = priorsCxcy.count / 4, foreground = classCount - 1
        let probabilities = g.op("Softmax", [logits], ["axis": .int(-1)], hint: "probabilities")
        var decoded = decode(&g, locs, priorsCxcy: priorsCxcy, coding: s.coding)
        if s.clipToImage { decoded = g.op("Clip", [decoded, g.scalar(0, hint: "zero"), g.scalar(1, hint: "one")], hint: "clipped") }
        // (N, P, C) → (N, C, P), background dropped: NonMaxSuppression's (batch, class, box) scores.
        let transposed = g.op("Transpose", [probabilities], ["perm": .ints([0, 2, 1])])
        let classScores = slice(&g, transposed, axis: 1, from: 1, to: classCount)
        let perClass = min(s.topK, priors)

        // (K) batch index, foreground class index (label − 1), score, and (K, 4) box of every NMS survivor.
        var batch: String, label: String, score: String, box: String
        if let candidates = s.candidatesPerClass {
            // Each (image, class) is one NMS batch over its best k0 boxes.
            let k0 = min(candidates, priors)
            let top = g.node("TopK", [classScores, g.constant(int64: [k0], hint: "k")], ["axis": .int(2)], outputs: 2, hint: "candidates")
            // boxes[n, index[n, c, k]] for every (c, k): (N, (C−1)·k0, 4), then one row of k0 per (n, c).
            let flatIndex = g.op("Reshape", [top[1], g.constant(int64: [0, -1, 1], hint: "shape")])
            let gathered = g.op("GatherND", [decoded, flatIndex], ["batch_dims": .int(1)])
            let candidateBoxes = g.op("Reshape", [gathered, g.constant(int64: [-1, k0, 4], hint: "shape")])
            let candidateScores = g.op("Reshape", [top[0], g.constant(int64: [-1, 1, k0], hint: "shape")])
            let selected = nms(&g, candidateBoxes, candidateScores, perClass: min(perClass, k0), settings: s)
            let group = column(&g, selected, 0), k = column(&g, selected, 2)  // (K, 1) each
            let pairs = g.op("Concat", [group, k], ["axis": .int(1)])
            score = g.op("GatherND", [g.op("Reshape", [candidateScores, g.constant(int64: [-1, k0], hint: "shape")]), pairs])
            box = g.op("GatherND", [candidateBoxes, pairs])
            let groupFlat = flatten(&g, group), classesConstant = g.scalar(int64: foreground, hint: "foreground")
            batch = g.op("Div", [groupFlat, classesConstant])
            label = g.op("Mod", [groupFlat, classesConstant])
        } else {
            let selected = nms(&g, decoded, classScores, perClass: perClass, settings: s)
            score = g.op("GatherND", [classScores, selected])
            let image = column(&g, selected, 0)
            box = g.op("GatherND", [decoded, g.op("Concat", [image, column(&g, selected, 2)], ["axis": .int(1)])])
            batch = flatten(&g, image)
            label = flatten(&g, column(&g, selected, 1))
        }
        label = g.op("Add", [label, g.scalar(int64: 1, hint: "one")])

        // Sort by descending score (ties: lower index first), then keep each image's best topK:
        // rank within the image = running count of that image's detections in score order.
        let count = g.op("Shape", [score])
        let order = g.node("TopK", [score, count], ["axis": .int(0)], outputs: 2, hint: "ordered")
        let sortedBatch = g.op("Gather", [batch, order[1]])
        let n = g.op("Gather", [g.op("Shape", [images]), g.scalar(int64: 0, hint: "zero")])
        let imageRange = g.op("Range", [g.scalar(int64: 0, hint: "zero"), n, g.scalar(int64: 1, hint: "one")])
        let axis1 = g.constant(int64: [1], hint: "axis")
        let batchColumn = g.op("Unsqueeze", [sortedBatch, axis1])  // (K, 1)
        let oneHot = g.op("Cast", [g.op("Equal", [batchColumn, imageRange])], ["to": .int(Onnx_TensorProto.DataType.int64.rawValue)])
        let running = g.op("CumSum", [oneHot, g.scalar(int64: 0, hint: "zero")])  // (K, N)
        let rank = g.op("GatherElements", [running, batchColumn], ["axis": .int(1)])  // (K, 1), 1-based
        let keep = g.op("Squeeze", [g.op("LessOrEqual", [rank, g.constant(int64: [s.topK], hint: "top_k")]), axis1])
        func select(_ value: String, named: String) -> String {
            g.op("Compress", [g.op("Gather", [value, order[1]], ["axis": .int(0)]), keep], ["axis": .int(0)], named: named)
        }
        _ = select(box, named: boxes)
        _ = select(label, named: labels)
        _ = g.op("Compress", [order[0], keep], ["axis": .int(0)], named: scores)
        _ = g.op("Compress", [sortedBatch, keep], ["axis": .int(0)], named: batchIndex)
        let d = Dimension.named("detections")
        return [valueInfo(boxes, elementType: .float, dims: [d, .fixed(4)]), valueInfo(labels, elementType: .int64, dims: [d]),
                valueInfo(scores, elementType: .float, dims: [d]), valueInfo(batchIndex, elementType: .int64, dims: [d])]
    }

    /// `NonMaxSuppression` (corner boxes; ONNX's IoU does not depend on which axis comes first).
    private static func nms(_ g: inout GraphBuilder, _ boxes: String, _ scores: String, perClass: Int,
                            settings s: DetectionSettings) -> String {
        g.op("NonMaxSuppression", [boxes, scores, g.constant(int64: [perClass], hint: "max_per_class"),
                                   g.constant([s.maxOverlap], dims: [1], hint: "iou_threshold"),
                                   g.constant([s.minScore], dims: [1], hint: "score_threshold")],
             ["center_point_box": .int(0)], hint: "selected")
    }

    /// Column `c` of a (K, 3) index tensor, as (K, 1).
    private static func column(_ g: inout GraphBuilder, _ x: String, _ c: Int) -> String {
        slice(&g, x, axis: 1, from: c, to: c + 1)
    }

    /// (K, 1) → (K).
    private static func flatten(_ g: inout GraphBuilder, _ x: String) -> String {
        g.op("Reshape", [x, g.constant(int64: [-1], hint: "shape")])
    }

    private static func slice(_ g: inout GraphBuilder, _ x: String, axis: Int, from: Int, to: Int) -> String {
        g.op("Slice", [x, g.constant(int64: [from], hint: "start"), g.constant(int64: [to], hint: "end"),
                       g.constant(int64: [axis], hint: "axis")])
    }

    /// (N, P, 4) offsets → (N, P, 4) boundary boxes, in `BoxCoding.decode`'s operation order.
    private static func decode(_ g: inout GraphBuilder, _ locs: String, priorsCxcy: [Float], coding: BoxCoding) -> String {
        let p = priorsCxcy.count / 4
        var centres = [Float](), sizes = [Float]()
        centres.reserveCapacity(2 * p)
        sizes.reserveCapacity(2 * p)
        for i in 0..<p {
            centres += [priorsCxcy[4 * i], priorsCxcy[4 * i + 1]]
            sizes += [priorsCxcy[4 * i + 2], priorsCxcy[4 * i + 3]]
        }
        let priorCentres = g.constant(centres, dims: [1, p, 2], hint: "prior_centres")
        let priorSizes = g.constant(sizes, dims: [1, p, 2], hint: "prior_sizes")
        let offsetsXY = slice(&g, locs, axis: 2, from: 0, to: 2), offsetsWH = slice(&g, locs, axis: 2, from: 2, to: 4)
        let centre: String, half: String
        switch coding {
        case .tutorial:
            // (g·p_wh/10 + p_c, exp(g/5)·p_wh), then c ∓ wh/2.
            centre = g.op("Add", [g.op("Div", [g.op("Mul", [offsetsXY, priorSizes]), g.scalar(10, hint: "ten")]), priorCentres])
            let size = g.op("Mul", [g.op("Exp", [g.op("Div", [offsetsWH, g.scalar(5, hint: "five")])]), priorSizes])
            half = g.op("Div", [size, g.scalar(2, hint: "two")])
        case let .torchvision(coder):
            // (d/w_xy)·p_wh + p_c and 0.5·(exp(min(d/w_wh, clamp))·p_wh), then c ∓ half.
            let dxy = g.op("Div", [offsetsXY, g.constant(Array(coder.weights[0..<2]), dims: [2], hint: "coder_xy")])
            let dwh = g.op("Min", [g.op("Div", [offsetsWH, g.constant(Array(coder.weights[2..<4]), dims: [2], hint: "coder_wh")]),
                                   g.scalar(coder.maxLogScale, hint: "max_log_scale")])
            centre = g.op("Add", [g.op("Mul", [dxy, priorSizes]), priorCentres])
            half = g.op("Mul", [g.scalar(0.5, hint: "half"), g.op("Mul", [g.op("Exp", [dwh]), priorSizes])])
        }
        return g.op("Concat", [g.op("Sub", [centre, half]), g.op("Add", [centre, half])], ["axis": .int(2)], hint: "boxes")
    }
}
