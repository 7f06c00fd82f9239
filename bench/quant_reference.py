"""Checks lanes' CPU dequantization of Q4_0, Q4_1 and Q8_0 blocks against llama.cpp's own
gguf-py (gguf.quants, numpy), bit for bit, on random blocks with ordinary and extreme float16
scales. This is what shows that our reading of the block layouts is llama.cpp's.

    python3 bench/quant_reference.py            # builds ffi/test/quant_test.cpp with g++
    python3 bench/quant_reference.py --dump DIR # uses the files of `quant_test dump DIR`

Versions are pinned in bench/requirements.txt.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {"q4_0": GGMLQuantizationType.Q4_0, "q4_1": GGMLQuantizationType.Q4_1, "q8_0": GGMLQuantizationType.Q8_0}
SOURCES = ["ffi/test/quant_test.cpp", "cpu/quant.cpp", "cpu/compute_pool.cpp",
           "cpu/cpu_features.cpp", "ffi/src/config.cpp"]


def dump_with_test_binary(directory):
    exe = os.path.join(directory, "quant_test")
    subprocess.run(["g++", "-std=c++20", "-O2", "-Iffi/src", *SOURCES, "-pthread", "-o", exe], cwd=ROOT, check=True)
    subprocess.run([exe, "dump", directory], check=True)


def check(directory):
    failures = 0
    for name, qtype in TYPES.items():
        blocks = np.fromfile(os.path.join(directory, name + ".blocks"), dtype=np.uint8)
        ours = np.fromfile(os.path.join(directory, name + ".f32"), dtype=np.float32)
        theirs = quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
        same = ours.shape == theirs.shape and np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
        differing = int(np.count_nonzero(ours.view(np.uint32) != theirs.view(np.uint32))) if ours.shape == theirs.shape else -1
        print(f"{name}: {ours.size} weights from {blocks.size} bytes: {'bitwise equal' if same else f'{differing} differ'}"
              f" (nonzero |values| from {np.nanmin(np.abs(theirs[theirs != 0])):.3g} .. {np.nanmax(np.abs(theirs)):.3g})")
        failures += 0 if same else 1
    print(f"{len(TYPES) - failures} passed, {failures} failed")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", help="directory written by `quant_test dump DIR`")
    args = parser.parse_args()
    if args.dump:
        return 1 if check(args.dump) else 0
    with tempfile.TemporaryDirectory() as directory:
        dump_with_test_binary(directory)
        return 1 if check(directory) else 0


if __name__ == "__main__":
    sys.exit(main())
