"""Copies a safetensors weights file, multiplying the class heads' final weights by FACTOR.

    python spread_scores.py IN OUT FACTOR

An untrained ssdlite320 (torchvision's N(0, 0.03²) head initialisation) gives every prior a
class score of about 1/classes: a sea of near-exact ties that NMS and top-k may break either way,
which tests nothing. Scaling the last convolution of each class head spreads the scores so that
the detections are decided by the graph, not by rounding. Every other tensor and the metadata
(model kind, class names) are copied unchanged.
"""

import json
import re
import struct
import sys

import numpy as np

HEAD = re.compile(r"^head\.classification_head\.module_list\.\d+\.1\.weight$")


def main():
    source, target, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with open(source, "rb") as f:
        data = bytearray(f.read())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    scaled = 0
    for name, entry in header.items():
        if name != "__metadata__" and HEAD.match(name):
            if entry["dtype"] != "F32":
                sys.exit(f"{source}: {name} is {entry['dtype']}, not F32")
            start, end = (base + o for o in entry["data_offsets"])
            values = np.frombuffer(bytes(data[start:end]), dtype="<f4") * np.float32(factor)
            data[start:end] = values.astype("<f4").tobytes()
            scaled += 1
    if scaled == 0:
        sys.exit(f"{source}: no class head weights (head.classification_head.module_list.*.1.weight)")
    with open(target, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
