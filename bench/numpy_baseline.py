"""numpy (OpenBLAS) baselines for the lanes benchmarks, printed as one line of JSON.

  python numpy_baseline.py sgemm 64 256 1024     float32 square matmul, GFLOP/s per size
  python numpy_baseline.py stream ROWS COLS      softmax, sum, add and memcpy GB/s

The caller sets OPENBLAS_NUM_THREADS to lanes' thread count and leaves OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset: they slow a current OpenBLAS down on AMD Zen 4 (this script refuses to
run with them, since OpenBLAS reads them when numpy is imported)."""
import json
import os
import sys
import time

for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    if name in os.environ:
        sys.exit(f"numpy_baseline.py: unset {name} (it changes OpenBLAS's kernel choice)")

import numpy as np  # noqa: E402


def best(fn, min_runs=5, budget_s=0.5):
    """Smallest wall time of fn over at least min_runs runs and budget_s seconds, after a warm-up."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def describe():
    out = {"numpy": np.__version__, "threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    try:
        config = np.show_config(mode="dicts")
        out["blas"] = config["Build Dependencies"]["blas"].get("openblas configuration", config["Build Dependencies"]["blas"]["name"])
    except Exception:  # noqa: BLE001 - the description is informative only
        pass
    return out


def sgemm(sizes):
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out[str(n)] = 2 * n**3 / best(lambda: a @ b, 3 if n >= 2048 else 5) / 1e9
    return out


def stream(rows, cols):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    y = rng.standard_normal((rows, cols), dtype=np.float32)
    nbytes = x.nbytes

    def softmax():
        m = x.max(axis=-1, keepdims=True)
        e = np.exp(x - m)
        return e / e.sum(axis=-1, keepdims=True)

    dst = np.empty_like(x)
    return {
        "softmax_GBps": 2 * nbytes / best(softmax) / 1e9,
        "sum_GBps": nbytes / best(lambda: x.sum(axis=-1)) / 1e9,
        "add_GBps": 3 * nbytes / best(lambda: np.add(x, y, out=dst)) / 1e9,
        "memcpy_GBps": 2 * nbytes / best(lambda: np.copyto(dst, x)) / 1e9,
    }


def main():
    out = describe()
    if sys.argv[1] == "sgemm":
        out["sgemm_GFLOPs"] = sgemm([int(n) for n in sys.argv[2:]])
    elif sys.argv[1] == "stream":
        out.update(stream(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit(f"numpy_baseline.py: unknown mode {sys.argv[1]!r}")
    print(json.dumps(out))


main()
