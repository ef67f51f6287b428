"""Checks an ONNX model written by `ssd export onnx` against `ssd`'s own outputs.

    python check.py MODEL.onnx SAMPLE.safetensors [--runtimes onnxruntime,openvino] [--tolerance 1e-4]

SAMPLE is what `ssd export onnx --write-sample SAMPLE IMAGES...` wrote: the preprocessed input
batch `images` and ssd's outputs on it (`locs`, `class_logits` and, for a model exported with
--with-postprocess, `detection_*`). Each runtime runs the model on the first image alone (batch
1) and on the whole batch (the batch dimension is dynamic), and is compared with ssd:

- raw outputs (`locs`, `class_logits`): per tensor, max|runtime - ssd| / max|ssd| <= tolerance;
- detections, as sets per image: every detection of one side must have a partner on the other
  with the same label, every box coordinate within `tolerance` (boxes are fractions of the
  image) and the score within `tolerance`. A detection without a partner is excused only as a
  near-tie, and the excuses are counted and shown: its score is within `tolerance` of the min
  score, or of the class's candidates cut (torchvision's candidates per class), or at or between
  the two sides' top-k cuts (the lowest score kept when an image has top-k detections; the cuts
  agree unless near-ties above them differ); its IoU with a higher-scoring box of its class (on
  either side) is within 1e-3 of the NMS threshold; it overlaps a box of its class whose score is
  within `tolerance` of its own (which one NMS meets first is a tie); or it overlaps a box of its
  class already excused (a near-tie changes what NMS keeps after it). More near-ties than
  --max-near-ties (a fraction of ssd's detections, default 0.2) fail: the sets would say little.

Exits 1 with a message naming the model, runtime, batch and output at fault; 0 when all agree.
"""

import argparse
import json
import struct
import sys

import numpy as np
import onnx

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    """The tensors and metadata of a safetensors file (F32 and I64 only)."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", {})
    base = 8 + length
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[base + start : base + end], dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors, metadata


def run_onnxruntime(path):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {"images": images})))


def run_openvino(path):
    import openvino as ov

    # OpenVINO's CPU plugin computes in bf16 by default on CPUs that have it: ask for f32, as ssd.
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(images):
        result = compiled(images)
        return {out.get_any_name(): np.asarray(result[out]) for out in compiled.outputs}

    return run


RUNTIMES = {"onnxruntime": run_onnxruntime, "openvino": run_openvino}


def iou(a, b):
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detections(outputs, image):
    """[(label, box, score)] of one image, best first."""
    keep = outputs["detection_batch_index"] == image
    rows = zip(outputs["detection_labels"][keep], outputs["detection_boxes"][keep], outputs["detection_scores"][keep])
    return sorted(((int(l), np.asarray(b, np.float64), float(s)) for l, b, s in rows), key=lambda r: -r[2])


def candidate_cuts(logits, settings):
    """Per label, the lowest score that enters NMS when only the best `candidates_per_class`
    boxes of a class do (torchvision), from ssd's logits of one image; {} without such a cut."""
    k = settings.get("candidates_per_class")
    if k is None or k >= logits.shape[0]:
        return {}
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return {label: float(np.sort(p[:, label])[-k]) for label in range(1, logits.shape[1])}


def compare_detections(ours, theirs, settings, tolerance, class_cuts):
    """(matched, excused notes, unexcused notes) between two lists of one image; `class_cuts`
    maps labels to their candidates cut (see `candidate_cuts`)."""
    used = [False] * len(theirs)
    unmatched_ours = []
    for d in ours:
        partner = None
        for j, e in enumerate(theirs):
            if not used[j] and e[0] == d[0] and abs(e[2] - d[2]) <= tolerance and np.max(np.abs(e[1] - d[1])) <= tolerance:
                partner = j
                break
        if partner is None:
            unmatched_ours.append(("ssd", d))
        else:
            used[partner] = True
    unmatched = unmatched_ours + [("runtime", e) for j, e in enumerate(theirs) if not used[j]]
    matched = len(ours) - len(unmatched_ours)
    top_k, min_score, overlap = settings["top_k"], settings["min_score"], settings["max_overlap"]
    cuts = [side[-1][2] for side in (ours, theirs) if len(side) >= top_k]
    everything = ours + theirs
    reasons = {}

    def reason(u):
        label, box, score = u[1]
        if abs(score - min_score) <= tolerance:
            return f"score at the min score {min_score}"
        # Both cuts agree when everything above them matched; near-ties above move one of them.
        if cuts and min(cuts) - tolerance <= score <= max(cuts) + tolerance:
            return "score at or between the two sides' top-k cuts"
        if label in class_cuts and abs(score - class_cuts[label]) <= tolerance:
            return "score at the class's candidates-per-class cut"
        for l, b, s in everything:
            if l != label or np.array_equal(b, box):
                continue
            o = iou(box, b)
            if abs(o - overlap) <= 1e-3 and s > score - tolerance:
                return f"IoU {o:.4f} with a better box, at the NMS threshold {overlap}"
            if o > overlap - 1e-3 and abs(s - score) <= tolerance:
                return f"overlaps a box of equal score (within {tolerance}): NMS order is a tie"
        for k, v in enumerate(unmatched):
            if k in reasons and v[1][0] == label and v[1][2] > score - tolerance and iou(box, v[1][1]) > overlap - 1e-3:
                return f"overlaps a near-tie's box (score {v[1][2]:.6f}) that one side kept and the other not"
        return None

    # Fixed point: a near-tie may change which boxes NMS keeps after it (of its class, overlapping it).
    changed = True
    while changed:
        changed = False
        for k, u in enumerate(unmatched):
            if k not in reasons:
                r = reason(u)
                if r is not None:
                    reasons[k] = r
                    changed = True
    excused, unexcused = [], []
    for k, (side, (label, box, score)) in enumerate(unmatched):
        text = f"{side} only: label {label} score {score:.6f} box {np.round(box, 6).tolist()}"
        (excused if k in reasons else unexcused).append(text + (f" ({reasons[k]})" if k in reasons else ""))
    return matched, excused, unexcused


def check_graph(path):
    """The model is valid ONNX (full check with shape inference), opset >= 13, N dynamic."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    metadata = {p.key: p.value for p in model.metadata_props}
    problems = []
    if opset < 13:
        problems.append(f"opset {opset} < 13")
    if model.graph.input[0].name != "images" or dims[0].dim_param != "N":
        problems.append("input is not images with a dynamic batch N")
    for key in ("ssd.model", "ssd.classes", "ssd.input_mean", "ssd.input_std", "ssd.input_size"):
        if key not in metadata:
            problems.append(f"metadata {key} missing")
    return opset, metadata, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("sample")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--max-near-ties", type=float, default=0.2,
                        help="fail when more than this fraction of ssd's detections are excused near-ties: "
                             "the comparison would then test little")
    args = parser.parse_args()

    opset, metadata, failures = check_graph(args.model)
    failures = [f"{args.model}: {p}" for p in failures]
    sample, sample_metadata = read_safetensors(args.sample)
    images = np.ascontiguousarray(sample["images"])
    side = int(metadata.get("ssd.input_size", 0))
    if images.shape[1:] != (3, side, side) or sample_metadata.get("ssd.model") != metadata.get("ssd.model"):
        sys.exit(f"{args.sample}: a sample of {sample_metadata.get('ssd.model')} images {list(images.shape)} does not fit "
                 f"{args.model} ({metadata.get('ssd.model')}, input (N, 3, {side}, {side})): write both with one ssd export onnx")
    settings = json.loads(metadata["ssd.postprocess"]) if "ssd.postprocess" in metadata else None
    name = f"{metadata.get('ssd.model', '?')} {args.model.rsplit('/', 1)[-1]}"
    print(f"{name}: opset {opset}, {images.shape[0]} images"
          + (f", post-processing {json.dumps(settings, sort_keys=True)}" if settings else ""))
    for runtime in args.runtimes.split(","):
        run = RUNTIMES[runtime](args.model)
        for batch in sorted({1, images.shape[0]}):
            outputs = run(images[:batch])
            where = f"{name}, {runtime}, batch {batch}"
            report = []
            for key in ("locs", "class_logits"):
                ours, theirs = sample[key][:batch], outputs[key]
                if theirs.shape != ours.shape:
                    failures.append(f"{where}: {key} has shape {theirs.shape}, ssd's {ours.shape}")
                    continue
                error = float(np.max(np.abs(theirs.astype(np.float64) - ours)) / max(np.max(np.abs(ours)), 1e-30))
                report.append(f"{key} {error:.2e}")
                if not error <= args.tolerance:
                    failures.append(f"{where}: {key} differs by {error:.3e} relative (max|diff| / max|ssd|) > {args.tolerance}")
            if settings is not None:
                if "detection_scores" not in sample:
                    failures.append(f"{args.sample}: no detections in the sample (write it with --with-postprocess)")
                    break
                matched = total_ours = total_theirs = excused_total = 0
                for image in range(batch):
                    ours, theirs = detections(sample, image), detections(outputs, image)
                    total_ours += len(ours)
                    total_theirs += len(theirs)
                    cuts = candidate_cuts(sample["class_logits"][image], settings)
                    m, excused, unexcused = compare_detections(ours, theirs, settings, args.tolerance, cuts)
                    matched += m
                    excused_total += len(excused)
                    for note in excused[:3]:
                        print(f"  {where}, image {image}: near-tie, excused: {note}")
                    if len(excused) > 3:
                        print(f"  {where}, image {image}: … and {len(excused) - 3} more near-ties")
                    failures += [f"{where}, image {image}: {note}" for note in unexcused]
                if excused_total > args.max_near_ties * max(total_ours, 1):
                    failures.append(f"{where}: {excused_total} near-ties for {total_ours} detections: more than "
                                    f"{args.max_near_ties:.0%}, the sets say little (inputs or weights with fewer ties?)")
                report.append(f"detections: {matched} matched of ssd's {total_ours} / the runtime's {total_theirs}, "
                              f"{excused_total} near-ties")
            print(f"  {runtime:11s} batch {batch}: " + ", ".join(report))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
