#!/usr/bin/env python3
"""Side-by-side benchmark: our `ssd bench` against PyTorch, ONNX Runtime and OpenVINO.

Runs the same workloads (one network with 21 classes, f32, random images; inference at batch 1
and 8, a training step at batch 8) on the same machine in the same run, each in its own process
(so peak memory is per workload), and prints every figure as a ratio against ours, with the CPU it
ran on. The peers come from PyPI into a virtual environment (`--venv`, default bench/.venv) that
this script creates on first use.

    python3 bench/peers.py [--model ssd300] [--threads 2] [--repeats 3] [--json bench/peers.json]

Per model (each takes our binary's `ssd bench --model NAME`; default: .build/release/ssd, or `--binary`):

    python3 bench/peers.py --model ssd300      # 300x300, 8732 priors (the default)
    python3 bench/peers.py --model ssd512      # 512x512, 24564 priors
    python3 bench/peers.py --model ssdlite320  # 320x320, 3234 anchors; needs torchvision in the venv

ssd300 / ssd512: the PyTorch model here is written from the reference tutorial's description
(VGG16 base with pool3 in ceil mode, pool5 3x3/1/1, conv6 dilated 6, conv7 1x1, auxiliary
convolutions, L2-normalised conv4_3 with learnable scales, loc/class heads), and the MultiBox loss
from its definition (matching, hard negatives 3:1, L1 localisation), so each peer runs the workload
the reference runs. SSD512 is the same conventions with the paper's 512 layout (auxiliary
conv8_1 ... conv12_2, conv12_2 4x4 pad 1; seven sources with 4,6,6,6,6,4,4 boxes; prior scales
0.07 ... 0.90), as in shared/fixtures/README.md.

ssdlite320: torchvision's `ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
num_classes=21)`, timed as ours is: inference is backbone + head (bbox_regression, cls_logits) in
evaluation mode on already-normalised 320x320 inputs (torchvision's GeneralizedRCNNTransform and
post-processing are bypassed); a training step is training mode, backbone + head, torchvision's
matching and `compute_loss` (as `SSD.forward` calls them), backward and an SGD step (lr 1e-3,
momentum 0.9, weight decay 5e-4), at batch 8. ONNX Runtime and OpenVINO run the inference module
exported to ONNX. On first use of this model the script installs torchvision (`TORCHVISION` below)
and pillow into the venv with `pip install --no-deps`, so that it brings no torch of its own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_PACKAGES = ["torch", "onnxruntime", "openvino", "onnx", "numpy"]
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "ssd")


# ----------------------------------------------------------------------------- workers
# Everything below `worker_*` runs inside the virtual environment, one workload per process.

R3, R5 = [1., 2., 0.5], [1., 2., 3., 0.5, .333]

# The tutorial-convention models: input side, auxiliary convolutions (name, in, out, kernel, stride,
# padding), sources (name, channels, boxes per location) and prior maps (size, scale, ratios).
VGG_MODELS = {
    "ssd300": dict(
        side=300,
        aux=[("conv8_1", 1024, 256, 1, 1, 0), ("conv8_2", 256, 512, 3, 2, 1), ("conv9_1", 512, 128, 1, 1, 0),
             ("conv9_2", 128, 256, 3, 2, 1), ("conv10_1", 256, 128, 1, 1, 0), ("conv10_2", 128, 256, 3, 1, 0),
             ("conv11_1", 256, 128, 1, 1, 0), ("conv11_2", 128, 256, 3, 1, 0)],
        sources=[("conv4_3", 512, 4), ("conv7", 1024, 6), ("conv8_2", 512, 6), ("conv9_2", 256, 6),
                 ("conv10_2", 256, 4), ("conv11_2", 256, 4)],
        maps=[(38, 0.1, R3), (19, 0.2, R5), (10, 0.375, R5), (5, 0.55, R5), (3, 0.725, R3), (1, 0.9, R3)]),
    "ssd512": dict(
        side=512,
        aux=[("conv8_1", 1024, 256, 1, 1, 0), ("conv8_2", 256, 512, 3, 2, 1), ("conv9_1", 512, 128, 1, 1, 0),
             ("conv9_2", 128, 256, 3, 2, 1), ("conv10_1", 256, 128, 1, 1, 0), ("conv10_2", 128, 256, 3, 2, 1),
             ("conv11_1", 256, 128, 1, 1, 0), ("conv11_2", 128, 256, 3, 2, 1), ("conv12_1", 256, 128, 1, 1, 0),
             ("conv12_2", 128, 256, 4, 1, 1)],
        sources=[("conv4_3", 512, 4), ("conv7", 1024, 6), ("conv8_2", 512, 6), ("conv9_2", 256, 6),
                 ("conv10_2", 256, 6), ("conv11_2", 256, 4), ("conv12_2", 256, 4)],
        maps=[(64, 0.07, R3), (32, 0.15, R5), (16, 0.30, R5), (8, 0.45, R5), (4, 0.60, R5), (2, 0.75, R3),
              (1, 0.90, R3)]),
}
MODELS = list(VGG_MODELS) + ["ssdlite320"]
SIDES = dict({name: c["side"] for name, c in VGG_MODELS.items()}, ssdlite320=320)
TORCHVISION = "torchvision==0.29.*"  # the release the ssdlite320 fixtures come from; pairs with torch 2.14+


def build_model(name="ssd300", n_classes=21):
    """The tutorial's SSD (VGG base, auxiliary convolutions, heads) in the layout `VGG_MODELS[name]` gives."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    config = VGG_MODELS[name]

    class Holder(nn.Module):
        pass

    class SSD(nn.Module):
        def __init__(self):
            super().__init__()
            self.rescale_factors = nn.Parameter(torch.full((1, 512, 1, 1), 20.0))
            self.base = Holder()
            base = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
                    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
                    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
                    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]
            for layer, i, o in base:
                setattr(self.base, layer, nn.Conv2d(i, o, 3, padding=1))
            self.base.conv6 = nn.Conv2d(512, 1024, 3, padding=6, dilation=6)
            self.base.conv7 = nn.Conv2d(1024, 1024, 1)
            self.aux_convs = Holder()
            self.aux = [layer for layer, *_ in config["aux"]]
            for layer, i, o, k, s, p in config["aux"]:
                setattr(self.aux_convs, layer, nn.Conv2d(i, o, k, stride=s, padding=p))
            self.pred_convs = Holder()
            self.sources = config["sources"]
            for source, c, boxes in self.sources:
                setattr(self.pred_convs, "loc_" + source, nn.Conv2d(c, boxes * 4, 3, padding=1))
                setattr(self.pred_convs, "cl_" + source, nn.Conv2d(c, boxes * n_classes, 3, padding=1))
            self.n_classes = n_classes

        def forward(self, x):
            b = self.base
            for layer in ["conv1_1", "conv1_2"]:
                x = F.relu(getattr(b, layer)(x))
            x = F.max_pool2d(x, 2, 2)
            for layer in ["conv2_1", "conv2_2"]:
                x = F.relu(getattr(b, layer)(x))
            x = F.max_pool2d(x, 2, 2)
            for layer in ["conv3_1", "conv3_2", "conv3_3"]:
                x = F.relu(getattr(b, layer)(x))
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for layer in ["conv4_1", "conv4_2", "conv4_3"]:
                x = F.relu(getattr(b, layer)(x))
            conv4_3 = x
            x = F.max_pool2d(x, 2, 2)
            for layer in ["conv5_1", "conv5_2", "conv5_3"]:
                x = F.relu(getattr(b, layer)(x))
            x = F.max_pool2d(x, 3, 1, 1)
            x = F.relu(b.conv6(x))
            x = F.relu(b.conv7(x))
            features = {"conv7": x}
            norm = conv4_3.pow(2).sum(dim=1, keepdim=True).sqrt()
            features["conv4_3"] = conv4_3 / norm * self.rescale_factors
            for layer in self.aux:
                x = F.relu(getattr(self.aux_convs, layer)(x))
                features[layer] = x
            n = x.size(0)
            locs, scores = [], []
            for source, _, _ in self.sources:
                f = features[source]
                locs.append(getattr(self.pred_convs, "loc_" + source)(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
                scores.append(getattr(self.pred_convs, "cl_" + source)(f).permute(0, 2, 3, 1).reshape(n, -1, self.n_classes))
            return torch.cat(locs, 1), torch.cat(scores, 1)

    return SSD()


def make_priors(name="ssd300"):
    """The tutorial's priors (centre-size, fractional) for `VGG_MODELS[name]`'s maps."""
    import math
    import torch
    maps = VGG_MODELS[name]["maps"]
    out = []
    for k, (size, scale, ratios) in enumerate(maps):
        for i in range(size):
            for j in range(size):
                cx, cy = (j + 0.5) / size, (i + 0.5) / size
                for r in ratios:
                    out.append([cx, cy, scale * math.sqrt(r), scale / math.sqrt(r)])
                    if r == 1.:
                        extra = math.sqrt(scale * maps[k + 1][1]) if k + 1 < len(maps) else 1.
                        out.append([cx, cy, extra, extra])
    return torch.FloatTensor(out).clamp_(0, 1)


def build_ssdlite(n_classes=21):
    """torchvision's SSDLite320-MobileNetV3-Large, and the module that runs what ours times at inference:
    backbone + head on normalised images, returning (bbox_regression, cls_logits)."""
    import torch.nn as nn
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    detector = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n_classes)

    class BackboneAndHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.detector = detector

        def forward(self, x):
            features = list(self.detector.backbone(x).values())
            head = self.detector.head(features)
            return head["bbox_regression"], head["cls_logits"]

    return detector, BackboneAndHead()


def multibox_loss(locs, scores, boxes, labels, priors_cxcy):
    """The MultiBox loss as the reference defines it (per-image matching, 3:1 hard negatives, L1)."""
    import torch
    import torch.nn.functional as F
    priors_xy = torch.cat([priors_cxcy[:, :2] - priors_cxcy[:, 2:] / 2, priors_cxcy[:, :2] + priors_cxcy[:, 2:] / 2], 1)
    n, n_priors, n_classes = scores.shape
    true_locs = torch.zeros((n, n_priors, 4))
    true_classes = torch.zeros((n, n_priors), dtype=torch.long)
    for i in range(n):
        b = boxes[i]
        lower = torch.max(b[:, None, :2], priors_xy[None, :, :2])
        upper = torch.min(b[:, None, 2:], priors_xy[None, :, 2:])
        inter = (upper - lower).clamp(min=0).prod(2)
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        area_p = (priors_xy[:, 2] - priors_xy[:, 0]) * (priors_xy[:, 3] - priors_xy[:, 1])
        overlap = inter / (area_b[:, None] + area_p[None, :] - inter)
        best_overlap, best_object = overlap.max(0)
        _, best_prior = overlap.max(1)
        best_object[best_prior] = torch.arange(b.size(0))
        best_overlap[best_prior] = 1.
        cls = labels[i][best_object]
        cls[best_overlap < 0.5] = 0
        true_classes[i] = cls
        matched = b[best_object]
        cxcy = torch.cat([(matched[:, 2:] + matched[:, :2]) / 2, matched[:, 2:] - matched[:, :2]], 1)
        true_locs[i] = torch.cat([(cxcy[:, :2] - priors_cxcy[:, :2]) / (priors_cxcy[:, 2:] / 10),
                                  torch.log(cxcy[:, 2:] / priors_cxcy[:, 2:]) * 5], 1)
    positive = true_classes != 0
    loc_loss = F.l1_loss(locs[positive], true_locs[positive])
    n_pos = positive.sum(1)
    conf_all = F.cross_entropy(scores.view(-1, n_classes), true_classes.view(-1), reduction="none").view(n, n_priors)
    conf_pos = conf_all[positive]
    conf_neg = conf_all.clone()
    conf_neg[positive] = 0.
    conf_neg, _ = conf_neg.sort(1, descending=True)
    hard = torch.arange(n_priors)[None, :] < 3 * n_pos[:, None]
    conf_loss = (conf_neg[hard].sum() + conf_pos.sum()) / n_pos.sum().float()
    return conf_loss + loc_loss


def random_truth(n, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.rand(2, generator=g) * 0.5
        wh = 0.1 + torch.rand(2, generator=g) * 0.4
        boxes.append(torch.cat([xy, xy + wh])[None, :])
        labels.append(torch.randint(1, 21, (1,), generator=g))
    return boxes, labels


def timed(fn, repeats):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ssdlite_train_step(detector, x, targets, anchors, opt):
    """One training step of torchvision's SSD on already-transformed images: backbone + head, matching
    and `compute_loss` as `SSD.forward` does them, backward, SGD step."""
    from torchvision.ops import boxes as box_ops
    opt.zero_grad()
    features = list(detector.backbone(x).values())
    head_outputs = detector.head(features)
    matched_idxs = []
    for anchors_per_image, targets_per_image in zip(anchors, targets):
        match_quality_matrix = box_ops.box_iou(targets_per_image["boxes"], anchors_per_image)
        matched_idxs.append(detector.proposal_matcher(match_quality_matrix))
    losses = detector.compute_loss(targets, head_outputs, anchors, matched_idxs)
    sum(losses.values()).backward()
    opt.step()


def ssdlite_anchors(detector, x):
    """The anchors (pixels, xyxy, one copy per image) `SSD.forward` makes for these images: the same each step,
    so made once, as our model's are."""
    import torch
    from torchvision.models.detection.image_list import ImageList
    training = detector.training
    detector.eval()  # only the feature maps' sizes matter; a batch of 1 can't run batch norm in training mode
    with torch.no_grad():
        features = list(detector.backbone(x[:1]).values())
    detector.train(training)
    side = x.shape[-1]
    return detector.anchor_generator(ImageList(x, [(side, side)] * x.size(0)), features)


def worker(kind, args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    side = SIDES[args.model]
    if args.model == "ssdlite320":
        detector, model = build_ssdlite()
    else:
        model = build_model(args.model)
    out = {}
    if kind == "torch-inference":
        model.eval()
        for batch in (1, 8):
            x = torch.randn(batch, 3, side, side)
            with torch.no_grad():
                seconds = timed(lambda: model(x), args.repeats)
            out["inference_bs%d_img_per_s" % batch] = batch / seconds
    elif kind == "torch-train":
        batch = 8
        x = torch.randn(batch, 3, side, side)
        boxes, labels = random_truth(batch, 1)
        if args.model == "ssdlite320":
            detector.train()
            anchors = ssdlite_anchors(detector, x)
            targets = [{"boxes": b * side, "labels": l} for b, l in zip(boxes, labels)]
            opt = torch.optim.SGD(detector.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
            step = lambda: ssdlite_train_step(detector, x, targets, anchors, opt)
        else:
            priors = make_priors(args.model)
            biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
            others = [p for n, p in model.named_parameters() if not n.endswith(".bias")]
            opt = torch.optim.SGD([{"params": biases, "lr": 2e-3}, {"params": others}], lr=1e-3, momentum=0.9,
                                  weight_decay=5e-4)

            def step():
                opt.zero_grad()
                locs, scores = model(x)
                multibox_loss(locs, scores, boxes, labels, priors).backward()
                opt.step()
        seconds = timed(step, args.repeats)
        out["train_bs8_img_per_s"] = batch / seconds
        out["peak_rss_train_bs8_mb"] = peak_rss_mb()
    elif kind in ("onnxruntime", "openvino-f32", "openvino-bf16"):
        import numpy as np
        path = os.path.join(args.workdir, "%s.onnx" % args.model)
        if not os.path.exists(path):
            model.eval()
            export_kwargs = dict(input_names=["images"], output_names=["locs", "scores"],
                                 dynamic_axes={"images": {0: "n"}, "locs": {0: "n"}, "scores": {0: "n"}}, opset_version=17)
            try:
                torch.onnx.export(model, torch.randn(1, 3, side, side), path, dynamo=False, **export_kwargs)
            except TypeError:
                torch.onnx.export(model, torch.randn(1, 3, side, side), path, **export_kwargs)
        if kind == "onnxruntime":
            import onnxruntime as ort
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            run = lambda x: session.run(None, {"images": x})
        else:
            import openvino as ov
            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": args.threads,
                      "INFERENCE_PRECISION_HINT": "bf16" if kind.endswith("bf16") else "f32"}
            compiled = core.compile_model(core.read_model(path), "CPU", config)
            run = lambda x: compiled(x)
        for batch in ((1,) if kind.endswith("bf16") else (1, 8)):
            x = np.random.default_rng(0).standard_normal((batch, 3, side, side), dtype=np.float32)
            seconds = timed(lambda: run(x), args.repeats)
            out["inference_bs%d_img_per_s" % batch] = batch / seconds
    print(json.dumps(out))


# ----------------------------------------------------------------------------- driver

def ensure_venv(venv):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print("creating %s and installing %s from PyPI (a few GB; once)" % (venv, " ".join(PEER_PACKAGES)), flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([python, "-m", "pip", "install", "-q"] + PEER_PACKAGES)
    return python


def ensure_torchvision(python):
    """SSDLite comes from torchvision: installed on demand, without dependencies (it would otherwise
    bring its own torch), with pillow, which it imports."""
    if subprocess.run([python, "-c", "import torchvision"], capture_output=True).returncode != 0:
        print("installing %s and pillow into the venv (once)" % TORCHVISION, flush=True)
        subprocess.check_call([python, "-m", "pip", "install", "-q", "--no-deps", TORCHVISION, "pillow"])


def run_json(cmd, env):
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def ours(args, env):
    binary = args.binary
    if not os.path.exists(binary):
        if binary != DEFAULT_BINARY:
            sys.exit("no binary at %s" % binary)
        subprocess.check_call(["swift", "build", "-c", "release", "--product", "ssd"], cwd=ROOT)
    figures = {}
    for workload in ("inference", "train"):
        out = os.path.join(args.workdir, "ours-%s-%s.json" % (args.model, workload))
        subprocess.check_call([binary, "bench", "--model", args.model, "--workload", workload, "--repeats", str(args.repeats),
                               "--threads", str(args.threads), "--json", out], env=env, stdout=subprocess.DEVNULL)
        with open(out) as f:
            figures.update(json.load(f))
    return figures


def host():
    """The CPU and the dispatch cap the figures were measured under."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    avx512 = False
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = " avx512f " in f.read()
    except OSError:
        pass
    return {"cpu": model, "avx512": avx512, "cores": os.cpu_count(),
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(native)")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="ssd300", help="the network to time (21 classes)")
    parser.add_argument("--binary", default=DEFAULT_BINARY,
                        help="our `ssd` binary (built with `swift build -c release --product ssd` if missing)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--venv", default=os.environ.get("SSD_PEERS_VENV", os.path.join(HERE, ".venv")))
    parser.add_argument("--workdir", default=os.path.join(HERE, ".work"))
    parser.add_argument("--json", help="write all figures and ratios here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.worker:
        return worker(args.worker, args)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    python = ensure_venv(args.venv)
    if args.model == "ssdlite320":
        ensure_torchvision(python)
    results = {"ours": ours(args, env)}
    for kind in ("torch-inference", "torch-train", "onnxruntime", "openvino-f32", "openvino-bf16"):
        print("running %s ..." % kind, flush=True)
        worker_args = ["--worker", kind, "--model", args.model, "--threads", str(args.threads),
                       "--repeats", str(args.repeats), "--workdir", args.workdir]
        figures = run_json([python, os.path.abspath(__file__)] + worker_args, env)
        peer = {"torch-inference": "pytorch", "torch-train": "pytorch"}.get(kind, kind)
        results.setdefault(peer, {}).update(figures or {})

    keys = [("inference_bs1_img_per_s", "inference batch 1, img/s", True),
            ("inference_bs8_img_per_s", "inference batch 8, img/s", True),
            ("train_bs8_img_per_s", "training step batch 8, img/s", True),
            ("peak_rss_train_bs8_mb", "peak RSS batch-8 training, MiB", False)]
    peers = [p for p in ("pytorch", "onnxruntime", "openvino-f32", "openvino-bf16") if results.get(p)]
    print("\nmodel: %s (21 classes, f32, %dx%d)" % (args.model, SIDES[args.model], SIDES[args.model]))
    print("host: %s" % host())
    print("\n| workload | ours | " + " | ".join(peers) + " |")
    print("|---|---|" + "---|" * len(peers))
    ratios = {}
    for key, label, higher_is_better in keys:
        mine = results["ours"].get(key)
        cells = []
        for p in peers:
            theirs = results[p].get(key)
            if mine is None or theirs is None:
                cells.append("—")
                continue
            ratio = mine / theirs if higher_is_better else theirs / mine
            ratios["%s/%s" % (key, p)] = ratio
            cells.append("%.2f (ours %.2f×)" % (theirs, ratio))
        print("| %s | %s | %s |" % (label, "—" if mine is None else "%.2f" % mine, " | ".join(cells)))
    print("\n(ratio = how many times better ours is: throughput ours/peer; memory peer/ours)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "figures": results, "ratios": ratios, "threads": args.threads,
                       "host": host()}, f, indent=1,
                      sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
