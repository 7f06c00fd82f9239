"""Reads a GGUF file with llama.cpp's gguf-py, the reference for test/gguf.test.ts.

usage: gguf_reference.py FILE OUTDIR [TENSOR ...]
Writes each tensor (all, or those named) dequantized by gguf.quants to OUTDIR/<i>.f32 (float32,
row-major) and prints JSON: {"metadata": {key: {"types": [...], "value": ...}}, "tensors": [...]}.
Integers beyond 2**53 are printed as strings so JSON.parse keeps them exact.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v) if abs(int(v)) < 2**53 else str(int(v))
    if isinstance(v, (float, np.floating)):
        return float(v)
    return v


def main():
    path, out, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
    reader = GGUFReader(path)
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        metadata[key] = {"types": [t.name for t in field.types], "value": plain(field.contents())}
    tensors = []
    for t in reader.tensors:
        if wanted and t.name not in wanted:
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        values.tofile(f"{out}/{len(tensors)}.f32")
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape)],
            "offset": int(t.data_offset),
            "count": int(values.size),
        })
    print(json.dumps({"metadata": metadata, "tensors": tensors}))


main()
