"""PyTorch baselines for bench/cuda.ts, printed as JSON: the same kernels and the same
small-graph concurrency test as lanes, on the same GPU in the same run.
  python3 bench/torch_baseline.py kernels|scaling"""
import json
import sys
import threading
import time

import torch


def timed(fn, repeat):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def kernels():
    torch.backends.cuda.matmul.allow_tf32 = False  # lanes' default: full float32
    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    g = torch.Generator(device="cuda").manual_seed(0)
    for dtype, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        for n in (1024, 2048, 4096, 8192):
            a = torch.randn(n, n, device="cuda", generator=g).to(dtype)
            b = torch.randn(n, n, device="cuda", generator=g).to(dtype)
            t = timed(lambda: a @ b, max(3, min(50, int(4e11 / (2 * n**3)))))
            out[f"matmul_{name}_{n}"] = 2 * n**3 / t / 1e12
        rows = cols = 8192
        x = torch.randn(rows, cols, device="cuda", generator=g).to(dtype)
        y = torch.randn(rows, cols, device="cuda", generator=g).to(dtype)
        w = torch.randn(cols, device="cuda", generator=g).to(dtype)
        nbytes = x.numel() * x.element_size()
        out[f"softmax_{name}"] = 2 * nbytes / timed(lambda: torch.softmax(x, -1), 20) / 1e9
        out[f"rmsnorm_{name}"] = 2 * nbytes / timed(lambda: torch.nn.functional.rms_norm(x, (cols,), w, 1e-5), 20) / 1e9
        out[f"add_{name}"] = 3 * nbytes / timed(lambda: x + y, 20) / 1e9
    # Host <-> device copies of 256 MB, from and into ordinary (pageable) host memory, as a
    # Bun program's typed arrays are.
    host = torch.randn(64 << 20).numpy()
    dev = torch.randn(64 << 20, device="cuda")
    nbytes = host.nbytes
    out["upload"] = nbytes / timed(lambda: torch.from_numpy(host).to("cuda"), 5) / 1e9
    out["download"] = nbytes / timed(lambda: dev.cpu(), 5) / 1e9
    # The serving loop's round trip: a small graph, then its result on the host.
    x = torch.randn(64, 64, device="cuda")
    w = torch.randn(64, 64, device="cuda")
    out["read_roundtrip_us"] = timed(lambda: torch.softmax(x @ w, -1).cpu(), 500) * 1e6
    print(json.dumps(out))


def roundtrip():
    """The serving loop's round trip alone: a small graph, then its result on the host."""
    x = torch.randn(64, 64, device="cuda")
    w = torch.randn(64, 64, device="cuda")
    print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
                      "read_roundtrip_us": timed(lambda: torch.softmax(x @ w, -1).cpu(), 500) * 1e6}))


def small_graph(x, w, b):
    h = x
    for _ in range(7):
        h = torch.clamp_min(h @ w + b, 0) * 0.125
    return torch.softmax(h, -1)


def scaling(mode="eager"):
    """Graphs/s of Python threads, each on its own torch.cuda.Stream running the 29-kernel graph.
    eager: the graph built and launched each time, synchronized after each; graph: one
    CUDAGraph captured per thread and stream, replayed and synchronized after each; pipelined:
    replayed `graphs` times, synchronized once."""
    graphs = 200 if mode == "eager" else 2000
    out = {}
    for threads in (1, 2, 4, 8, 16):
        barrier = threading.Barrier(threads)
        times = [0.0] * threads
        setup = threading.Lock()  # one thread at a time captures: a capture fails if another thread allocates meanwhile

        def run(i):
            setup.acquire()
            s = torch.cuda.Stream()
            with torch.cuda.stream(s):
                x = torch.randn(64, 64, device="cuda")
                w = torch.randn(64, 64, device="cuda") * 0.1
                b = torch.randn(1, 64, device="cuda")
                g = None
                # Warm up first (cuBLAS handle of this thread and stream, lazily loaded
                # kernels): without it a 1-thread run times its own start-up.
                for _ in range(20):
                    small_graph(x, w, b)
                s.synchronize()
                if mode != "eager":
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, stream=s, capture_error_mode="thread_local"):
                        small_graph(x, w, b)
                s.synchronize()
                setup.release()
                barrier.wait()
                t = time.perf_counter()
                for _ in range(graphs):
                    if g is None:
                        small_graph(x, w, b)
                    else:
                        g.replay()
                    if mode != "pipelined":
                        s.synchronize()
                s.synchronize()
                times[i] = time.perf_counter() - t

        pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for p in pool:
            p.start()
        for p in pool:
            p.join()
        out[threads] = threads * graphs / max(times)
    print(json.dumps({"torch": torch.__version__, "mode": mode, "throughput": out}))


if __name__ == "__main__":
    {"kernels": kernels, "roundtrip": roundtrip, "scaling": lambda: scaling(sys.argv[2] if len(sys.argv) > 2 else "eager")}[sys.argv[1]]()
