"""numpy (OpenBLAS) baselines for bench/run.ts, printed as JSON: sgemm GFLOP/s, and softmax,
sum, add and memcpy GB/s on arrays well past L2. Same thread count as lanes' pool."""
import json
import sys
import time

import numpy as np


def best(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    out = {"numpy": np.__version__}
    rng = np.random.default_rng(0)
    for n in (256, 512, 1024, 2048):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        t = best(lambda: a @ b, 3 if n >= 2048 else 5)
        out[f"sgemm_{n}"] = 2 * n**3 / t / 1e9
    rows, cols = int(sys.argv[1]), int(sys.argv[2])
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    y = rng.standard_normal((rows, cols), dtype=np.float32)
    nbytes = x.nbytes

    def softmax():
        m = x.max(axis=-1, keepdims=True)
        e = np.exp(x - m)
        return e / e.sum(axis=-1, keepdims=True)

    dst = np.empty_like(x)
    out["softmax_GBps"] = 2 * nbytes / best(softmax) / 1e9
    out["sum_GBps"] = nbytes / best(lambda: x.sum(axis=-1)) / 1e9
    out["add_GBps"] = 3 * nbytes / best(lambda: np.add(x, y, out=dst)) / 1e9
    out["memcpy_GBps"] = 2 * nbytes / best(lambda: np.copyto(dst, x)) / 1e9
    print(json.dumps(out))


main()
