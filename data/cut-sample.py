#!/usr/bin/env python3
"""Cut the embedded Fashion-MNIST sample from Debian's dataset-fashion-mnist.

The sample is the first 12,000 training and the first 2,000 test images,
with their labels, in the original IDX format, gzip-compressed. It is
compiled into the `fusion` binary so that the main job runs on a machine
with nothing installed. The output is byte-for-byte reproducible (gzip
mtime 0, fixed level), so re-running this script changes nothing in git.

    apt-get install -y dataset-fashion-mnist
    python3 data/cut-sample.py [SOURCE_DIR] [OUT_DIR]
"""
import gzip
import struct
import sys
from pathlib import Path

SOURCE = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent / "fashion-mnist-sample")
CUTS = {"train": 12_000, "t10k": 2_000}


def cut(name: str, count: int) -> None:
    """Write the first `count` items of one IDX file, keeping its header format."""
    raw = gzip.decompress((SOURCE / f"{name}.gz").read_bytes())
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = list(struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]))
    if dims[0] < count:
        sys.exit(f"{name}: holds {dims[0]} items, fewer than the {count} asked for")
    item = 1
    for d in dims[1:]:
        item *= d
    start = 4 + 4 * ndim
    body = raw[start : start + count * item]
    header = struct.pack(">I", magic) + struct.pack(f">{ndim}I", count, *dims[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.gz", "wb") as f:
        f.write(gzip.compress(header + body, compresslevel=9, mtime=0))
    print(f"{OUT / (name + '.gz')}: {count} of {dims[0]} items")


for split, count in CUTS.items():
    kind = "images-idx3-ubyte"
    cut(f"{split}-{kind}", count)
    cut(f"{split}-labels-idx1-ubyte", count)
