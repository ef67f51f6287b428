"""Writes COUNT random RGB PNG images (SIDE x SIDE, seeded) into FOLDER: inputs without flat
regions, so that a randomly initialised model gives distinct scores (no exact ties for NMS).

    python noise_png.py FOLDER COUNT SIDE
"""

import os
import struct
import sys
import zlib

import numpy as np


def write_png(path, pixels):
    """pixels: (H, W, 3) uint8."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    folder, count, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        write_png(os.path.join(folder, f"noise_{i}.png"), rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8))


if __name__ == "__main__":
    main()
