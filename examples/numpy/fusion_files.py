"""The files of Fusion's trainer contract, with NumPy only.

safetensors is a small format: an 8-byte little-endian header length, a
JSON header naming each tensor's dtype, shape and byte range, then the
bytes. Reading and writing it here keeps the example free of any package
but NumPy. With PyTorch, use `safetensors.torch` instead (examples/pytorch).
"""

import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def load(path):
    """Tensors of a safetensors file, by name, as float32 arrays."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; expected a float")
        begin, end = info["data_offsets"]
        array = np.frombuffer(body[begin:end], dtype=DTYPES[info["dtype"]])
        out[name] = array.reshape(info["shape"]).astype(np.float32)
    return out


def save(path, tensors, dtype="F32"):
    """Writes `tensors` (name -> array) as safetensors, sorted by name."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype=DTYPES[dtype])
        raw = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def write_result(examples=None, metrics=None):
    """Writes $FUSION_RESULT: {"examples": N, "metrics": {...}}."""
    result = {"metrics": {k: float(v) for k, v in (metrics or {}).items()}}
    if examples is not None:
        result["examples"] = int(examples)
    with open(os.environ["FUSION_RESULT"], "w") as f:
        json.dump(result, f)


def load_split(data_dir, part):
    """Images scaled to [0, 1] ([n, channels, height, width]) and labels,
    as `fusion export-data` writes them."""
    images = np.load(os.path.join(data_dir, f"{part}-images.npy")).astype(np.float32) / 255.0
    labels = np.load(os.path.join(data_dir, f"{part}-labels.npy")).astype(np.int64)
    return images, labels


def fail(message):
    """Exits 1 with one line on stderr: the client logs it and reports the round failed."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
