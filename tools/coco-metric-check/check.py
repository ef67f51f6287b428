#!/usr/bin/env python3
"""Compares `ssd map --metric coco` with pycocotools' COCOeval (iouType "bbox", default
parameters; stats[0] = AP@[.50:.95], area "all", maxDets 100) on the same ground truth and
detections.

Cases: the shared map_case.json with its difficult flags cleared, the same file with its
difficult flags passed to pycocotools as iscrowd, seeded random cases, and whole data sets end
to end: `ssd synthesize --format coco` test sets (some objects marked iscrowd) turned into lists
by `ssd create-data-lists --coco-test`, scored by `ssd eval --metric coco --coco-results` with the
trained models/shapes-compact.safetensors, and the results file scored by pycocotools against
the set's own test.json (`ssd detect --coco-results` output is loaded by pycocotools too). Exits 1 when any
mAP or per-class AP differs by more than --tolerance, 2 on a usage or setup error.

To add a data set, build its COCO ground truth and result list and call `compare(...)`: the
comparison only needs the COCO json forms (`coco_to_map_case` derives what ssd reads).

With --write-fixture PATH it instead writes a few generated cases with pycocotools' answers
(the fixture of SSDEvaluationTests, see its Fixtures/README.md).
"""

import argparse
import contextlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np
from importlib.metadata import version
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


# --- pycocotools -----------------------------------------------------------------------------

def pycocotools_ap(gt, results):
    """(stats[0], {category id: AP or None}) from COCOeval on a COCO ground-truth dict and a
    result list ([{image_id, category_id, bbox: [x, y, w, h], score}]). A category's AP is the
    mean of its precision over the 10 IoU thresholds and 101 recall points (area "all",
    maxDets 100); None where COCOeval leaves it at -1 (no ground truth that is not crowd)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))  # COCOeval writes into the annotations
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []}
            coco_dt.createIndex()
        evaluation = COCOeval(coco_gt, coco_dt, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    params = evaluation.params
    area = params.areaRngLbl.index("all")
    most = params.maxDets.index(100)
    per_class = {}
    for k, category in enumerate(params.catIds):
        p = evaluation.eval["precision"][:, :, k, area, most]
        per_class[category] = float(np.mean(p[p > -1])) if (p > -1).any() else None
    return float(evaluation.stats[0]), per_class


# --- conversions -----------------------------------------------------------------------------

def xywh(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def map_case_to_coco(case, class_count, crowd_from_difficult):
    """The COCO ground truth and result list of a map_case-format case (corner boxes, labels
    1…class_count; detection label 0 is the reference's "nothing found" placeholder and is
    dropped). Difficult objects become iscrowd ones, or plain ones when not
    crowd_from_difficult. Annotation ids start at 1 (COCOeval reads id 0 as "no match")."""
    images, annotations = [], []
    for i, (boxes, labels, difficult) in enumerate(zip(case["true_boxes"], case["true_labels"], case["true_difficulties"])):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for box, label, hard in zip(boxes, labels, difficult):
            x, y, w, h = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "bbox": [x, y, w, h], "area": w * h,
                                "iscrowd": int(bool(hard) and crowd_from_difficult)})
    gt = {"images": images, "annotations": annotations,
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, class_count + 1)]}
    results = []
    for i, (boxes, labels, scores) in enumerate(zip(case["det_boxes"], case["det_labels"], case["det_scores"])):
        for box, label, score in zip(boxes, labels, scores):
            if label == 0:
                continue
            results.append({"image_id": i + 1, "category_id": int(label), "bbox": xywh(box), "score": score})
    return gt, results


def coco_to_map_case(gt, results):
    """The map_case-format case of a COCO ground truth and result list (images in id order,
    crowd objects as difficult ones) and the category ids in label order (label k is the
    k-th smallest id)."""
    categories = sorted(c["id"] for c in gt["categories"])
    label = {c: k + 1 for k, c in enumerate(categories)}
    image_ids = sorted(im["id"] for im in gt["images"])
    index = {im: i for i, im in enumerate(image_ids)}
    n = len(image_ids)
    case = {key: [[] for _ in range(n)] for key in
            ["true_boxes", "true_labels", "true_difficulties", "det_boxes", "det_labels", "det_scores"]}
    for a in gt["annotations"]:
        i = index[a["image_id"]]
        x, y, w, h = a["bbox"]
        case["true_boxes"][i].append([x, y, x + w, y + h])
        case["true_labels"][i].append(label[a["category_id"]])
        case["true_difficulties"][i].append(int(a.get("iscrowd", 0)))
    for r in results:
        i = index[r["image_id"]]
        x, y, w, h = r["bbox"]
        case["det_boxes"][i].append([x, y, x + w, y + h])
        case["det_labels"][i].append(label[r["category_id"]])
        case["det_scores"][i].append(r["score"])
    return case, categories


# --- ssd -------------------------------------------------------------------------------------

def ssd_ap(ssd, case, class_count):
    """(mAP, [AP or None per label 1…class_count]) from `ssd map --metric coco`, or None when
    ssd refuses (it does when no class can be evaluated)."""
    names = [f"c{c}" for c in range(1, class_count + 1)]
    with tempfile.TemporaryDirectory() as folder:
        source, out = os.path.join(folder, "case.json"), os.path.join(folder, "ap.json")
        with open(source, "w") as f:
            json.dump(case, f)
        run = subprocess.run([ssd, "map", "--input", source, "--metric", "coco", "--classes", ",".join(names), "--json", out],
                             capture_output=True, text=True)
        if run.returncode != 0:
            return None, run.stderr.strip()
        with open(out) as f:
            written = json.load(f)
    return (written["mAP"], [written["APs"][name] for name in names]), None


# --- comparison ------------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.worst = (0.0, "none")
        self.failures = []
        self.cases = 0

    def note(self, difference, where):
        if difference > self.worst[0]:
            self.worst = (difference, where)


def compare(name, gt, results, ssd, tally, tolerance, case=None, class_count=None):
    """Scores one case with both and records the differences. `case`/`class_count`: the
    map_case-format input for ssd when it is not derived from the COCO form (so that ssd reads
    the file as given)."""
    if case is None:
        case, categories = coco_to_map_case(gt, results)
        class_count = len(categories)
    else:
        categories = list(range(1, class_count + 1))
    expected, expected_classes = pycocotools_ap(gt, results)
    ours, error = ssd_ap(ssd, case, class_count)
    tally.cases += 1
    if expected == -1:  # nothing to evaluate: pycocotools prints -1, ssd must refuse
        if ours is not None:
            tally.failures.append(f"{name}: pycocotools evaluates no class, ssd gave mAP {ours[0]}")
        return expected, ours
    if ours is None:
        tally.failures.append(f"{name}: ssd failed: {error}")
        return expected, ours
    difference = abs(ours[0] - expected)
    tally.note(difference, f"{name} mAP (ssd {ours[0]:.8f}, pycocotools {expected:.8f})")
    if difference > tolerance:
        tally.failures.append(f"{name}: mAP {ours[0]:.8f} vs pycocotools {expected:.8f} (|Δ| {difference:.2e})")
    for k, category in enumerate(categories):
        theirs, mine = expected_classes[category], ours[1][k]
        if (theirs is None) != (mine is None):
            tally.failures.append(f"{name}: class {k + 1}: ssd {mine} vs pycocotools {theirs} (evaluated or not)")
            continue
        if theirs is None:
            continue
        difference = abs(mine - theirs)
        tally.note(difference, f"{name} class {k + 1} (ssd {mine:.8f}, pycocotools {theirs:.8f})")
        if difference > tolerance:
            tally.failures.append(f"{name}: class {k + 1}: AP {mine:.8f} vs pycocotools {theirs:.8f} (|Δ| {difference:.2e})")
    return expected, ours


# --- random cases ----------------------------------------------------------------------------

def f32(x):
    """x rounded to float32: ssd reads boxes and scores as float32, pycocotools as float64, so
    generated numbers are float32 values, the same for both."""
    return struct.unpack("f", struct.pack("f", x))[0]


def random_case(rng):
    """A map_case-format case and its class count, drawn to reach pycocotools' corners: near
    duplicates, tied scores (also across images), images without ground truth or detections,
    classes without ground truth, difficult (crowd) objects, integer boxes whose IoU hits the
    thresholds exactly, inverted and empty detections, placeholders, and more than 100
    detections of one class in an image."""
    class_count = rng.randint(1, 6)
    present = rng.sample(range(1, class_count + 1), rng.randint(1, class_count))  # classes with ground truth
    images = rng.randint(1, 10)
    pixels = rng.random() < 0.5
    integer = pixels and rng.random() < 0.5
    scale = rng.choice([100.0, 640.0]) if pixels else 1.0
    tied = rng.random() < 0.4  # scores on a coarse grid: many ties
    crowd_rate = rng.choice([0.0, 0.1, 0.3])

    def coordinate(v):
        v = min(max(v, 0.0), 1.0) * scale
        return float(round(v)) if integer else f32(v)

    def box_near(box, spread):
        w, h = box[2] - box[0], box[3] - box[1]
        jitter = lambda: rng.gauss(0, spread)
        return [coordinate((box[0] + jitter() * w) / scale), coordinate((box[1] + jitter() * h) / scale),
                coordinate((box[2] + jitter() * w) / scale), coordinate((box[3] + jitter() * h) / scale)]

    def random_box():
        x0, y0 = rng.random() * 0.8, rng.random() * 0.8
        return [coordinate(x0), coordinate(y0), coordinate(x0 + 0.03 + rng.random() * 0.4), coordinate(y0 + 0.03 + rng.random() * 0.4)]

    def score():
        return rng.randint(0, 8) / 8 if tied else f32(rng.random())

    case = {key: [] for key in ["true_boxes", "true_labels", "true_difficulties", "det_boxes", "det_labels", "det_scores"]}
    crowded = rng.random() < 0.15  # one image gets > 100 detections of one class
    for i in range(images):
        boxes, labels, hard = [], [], []
        if rng.random() > 0.15:  # some images have no ground truth
            for _ in range(rng.randint(0, 7)):
                boxes.append(random_box())
                labels.append(rng.choice(present))
                hard.append(int(rng.random() < crowd_rate))
        det_boxes, det_labels, det_scores = [], [], []
        if rng.random() > 0.15:  # some images have no detections
            for box, label in zip(boxes, labels):
                for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # misses, hits, near duplicates
                    det_boxes.append(box_near(box, rng.choice([0.0, 0.03, 0.1, 0.25])))
                    det_labels.append(label if rng.random() < 0.9 else rng.randint(1, class_count))
                    det_scores.append(score())
            for _ in range(rng.randint(0, 4)):  # background detections, any class (also those without ground truth)
                det_boxes.append(random_box())
                det_labels.append(rng.randint(1, class_count))
                det_scores.append(score())
            if rng.random() < 0.05:  # an inverted and an empty box
                b = random_box()
                det_boxes += [[b[2], b[1], b[0], b[3]], [b[0], b[1], b[0], b[3]]]
                det_labels += [rng.randint(1, class_count)] * 2
                det_scores += [score(), score()]
            if rng.random() < 0.05:  # the reference's "nothing found" placeholder
                det_boxes.append([0.0, 0.0, scale, scale])
                det_labels.append(0)
                det_scores.append(0.0)
        if crowded and i == 0:
            label = rng.choice(present)
            anchor = boxes[labels.index(label)] if label in labels else random_box()
            for _ in range(rng.randint(101, 140)):
                det_boxes.append(box_near(anchor, 0.15) if rng.random() < 0.5 else random_box())
                det_labels.append(label)
                det_scores.append(score())
        # Shuffle the detections: ssd and pycocotools must both sort them.
        order = list(range(len(det_boxes)))
        rng.shuffle(order)
        case["true_boxes"].append(boxes)
        case["true_labels"].append(labels)
        case["true_difficulties"].append(hard)
        case["det_boxes"].append([det_boxes[j] for j in order])
        case["det_labels"].append([det_labels[j] for j in order])
        case["det_scores"].append([det_scores[j] for j in order])
    return case, class_count


# --- main ------------------------------------------------------------------------------------

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ssd", default=os.path.join(root, ".build", "release", "ssd"), help="the ssd executable")
    parser.add_argument("--map-case", default=os.path.join(root, "Tests", "SSDEvaluationTests", "Fixtures", "map_case.json"))
    parser.add_argument("--cases", type=int, default=300, help="random cases")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--write-fixture", metavar="PATH", help="write generated cases with pycocotools' answers and stop")
    parser.add_argument("--data-sets", type=int, default=3, help="synthetic COCO sets scored end to end by ssd eval (0: none)")
    parser.add_argument("--weights", default=os.path.join(root, "models", "shapes-compact.safetensors"),
                        help="the model ssd eval runs on the synthetic sets (trained on the same shapes)")
    args = parser.parse_args()

    if args.write_fixture:
        write_fixture(args.write_fixture, args.seed)
        return 0
    if not os.access(args.ssd, os.X_OK):
        print(f"{args.ssd}: no ssd executable (build it, or pass --ssd)", file=sys.stderr)
        return 2
    print(f"pycocotools {version('pycocotools')}, numpy {np.__version__}, ssd {args.ssd}")
    tally = Tally()

    with open(args.map_case) as f:
        shared = json.load(f)
    shared.pop("expected", None)
    classes = 20
    cleared = dict(shared, true_difficulties=[[0] * len(d) for d in shared["true_difficulties"]])
    for name, case, crowd in [("map_case, difficult cleared", cleared, False), ("map_case, difficult as iscrowd", shared, True)]:
        gt, results = map_case_to_coco(case, classes, crowd_from_difficult=crowd)
        expected, ours = compare(name, gt, results, args.ssd, tally, args.tolerance, case=case, class_count=classes)
        print(f"{name}: ssd {ours[0] if ours else None!r}, pycocotools {expected!r}")

    rng = random.Random(args.seed)
    for n in range(args.cases):
        case, class_count = random_case(rng)
        gt, results = map_case_to_coco(case, class_count, crowd_from_difficult=True)
        compare(f"random case {n} (seed {args.seed})", gt, results, args.ssd, tally, args.tolerance, case=case, class_count=class_count)
    if args.data_sets:
        data_sets(args, root, tally)
    print(f"{tally.cases} cases; worst |ssd − pycocotools|: {tally.worst[0]:.3e} at {tally.worst[1]}")
    if tally.failures:
        print(f"{len(tally.failures)} differences over {args.tolerance:g}:", file=sys.stderr)
        for line in tally.failures[:20]:
            print("  " + line, file=sys.stderr)
        return 1
    print(f"all within {args.tolerance:g}")
    return 0


def run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def data_sets(args, root, tally):
    """Synthetic COCO test sets through ssd create-data-lists and ssd eval; ssd's COCO mAP and
    per-class APs against pycocotools on the results file ssd eval wrote."""
    for n in range(args.data_sets):
        with tempfile.TemporaryDirectory() as folder:
            seed = args.seed + n
            coco = os.path.join(folder, "coco")
            run([args.ssd, "synthesize", "--format", "coco", "--output", coco, "--train-images", "1", "--test-images", "40",
                 "--negative-every", "9", "--seed", str(seed)])
            test_file = os.path.join(coco, "test.json")
            with open(test_file) as f:
                gt = json.load(f)
            for k, annotation in enumerate(gt["annotations"]):  # some crowd regions (ssd: difficult)
                annotation["iscrowd"] = 1 if k % 7 == 3 else 0
            with open(test_file, "w") as f:
                json.dump(gt, f)
            lists = os.path.join(folder, "lists")
            run([args.ssd, "create-data-lists", "--coco-test", test_file, "--output", lists])
            results_file, scores_file = os.path.join(folder, "results.json"), os.path.join(folder, "eval.json")
            run([args.ssd, "eval", "--weights", args.weights, "--data", lists, "--metric", "coco",
                 "--coco-results", results_file, "--json", scores_file])
            with open(results_file) as f:
                results = json.load(f)
            with open(scores_file) as f:
                scores = json.load(f)
            expected, expected_classes = pycocotools_ap(gt, results)
            name = f"synthetic COCO set {n} (seed {seed}, {len(gt['images'])} images, {len(results)} detections)"
            tally.cases += 1
            difference = abs(scores["mAP"] - expected)
            tally.note(difference, f"{name} mAP (ssd eval {scores['mAP']:.8f}, pycocotools {expected:.8f})")
            if difference > args.tolerance:
                tally.failures.append(f"{name}: ssd eval mAP {scores['mAP']:.8f} vs pycocotools {expected:.8f} (|Δ| {difference:.2e})")
            for category in gt["categories"]:
                mine, theirs = scores["APs"].get(category["name"]), expected_classes[category["id"]]
                if (mine is None) != (theirs is None) or (theirs is not None and abs(mine - theirs) > args.tolerance):
                    tally.failures.append(f"{name}: class {category['name']}: ssd eval {mine} vs pycocotools {theirs}")
                elif theirs is not None:
                    tally.note(abs(mine - theirs), f"{name} class {category['name']}")
            print(f"{name}: ssd eval {scores['mAP']:.8f}, pycocotools {expected:.8f}")
            # ssd detect's results file is COCO's format too: pycocotools must load and score it.
            images = [os.path.join(coco, image["file_name"]) for image in gt["images"][:5]]
            detect_file = os.path.join(folder, "detect.json")
            run([args.ssd, "detect", *images, "--weights", args.weights, "--coco", test_file, "--coco-results", detect_file])
            with open(detect_file) as f:
                detected = json.load(f)
            subset = dict(gt, images=gt["images"][:5], annotations=[a for a in gt["annotations"] if a["image_id"] in
                                                                      {i["id"] for i in gt["images"][:5]}])
            ap, _ = pycocotools_ap(subset, detected)
            print(f"  ssd detect --coco-results on 5 images: {len(detected)} detections, pycocotools AP {ap:.4f}")


def write_fixture(path, seed):
    """A few generated cases (the first of them with more than 100 detections of a class in an
    image) with pycocotools' stats[0] and per-class APs, for the Swift tests."""
    rng = random.Random(seed)
    big, small = None, []
    while big is None or len(small) < 7:
        case, class_count = random_case(rng)
        many = any(max([d.count(label) for label in set(d)] or [0]) > 100 for d in case["det_labels"])
        if (many and big is not None) or (not many and len(small) == 7):
            continue
        gt, results = map_case_to_coco(case, class_count, crowd_from_difficult=True)
        stats, per_class = pycocotools_ap(gt, results)
        if stats == -1:
            continue
        entry = dict(case, classes=class_count,
                     expected={"AP": stats, "APs": [per_class[c] for c in range(1, class_count + 1)]})
        if many:
            big = entry
        else:
            small.append(entry)
    cases = [big] + small
    with open(path, "w") as f:
        json.dump({"generator": f"tools/coco-metric-check/check.py --write-fixture (seed {seed})",
                   "pycocotools": version("pycocotools"), "numpy": np.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
