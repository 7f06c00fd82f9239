"""What each piece of a lanes epoch's tail costs around PyTorch's own CUDA-graph replay of the
29-kernel 64x64 graph, on one stream: a copy in and out (as a compiled lanes replay copies its
input into the plan's arena and its output out), two cuStreamWriteValue64 (the stream's
counter and its host mirror), and a cuLaunchHostFunc (which lanes used to end every epoch
with). Each configuration is timed pipelined (200 replays, one synchronize) and synchronized
after each replay; the best of 5 rounds after a warm-up round.

    python3 bench/torch_graph_epoch_tail.py
"""
import ctypes as C
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from torch_baseline import small_graph  # noqa: E402

cu = C.CDLL("libcuda.so.1")
cu.cuStreamWriteValue64_v2.argtypes = [C.c_void_p, C.c_uint64, C.c_uint64, C.c_uint]
cu.cuLaunchHostFunc.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p]
host_function = C.cast(C.CDLL(None).free, C.c_void_p)  # free(NULL): a host function that does nothing

stream = torch.cuda.Stream()
raw_stream = C.c_void_p(stream.cuda_stream)
torch.cuda.set_stream(stream)
x = torch.randn(64, 64, device="cuda")
w = torch.randn(64, 64, device="cuda") * 0.1
b = torch.randn(1, 64, device="cuda")
x_in, out = x.clone(), torch.empty_like(x)
for _ in range(20):
    small_graph(x, w, b)
stream.synchronize()
graph = torch.cuda.CUDAGraph()
with torch.cuda.graph(graph, stream=stream):
    y = small_graph(x, w, b)
counter = torch.zeros(1, dtype=torch.int64, device="cuda")
mirror = torch.zeros(1, dtype=torch.int64).pin_memory()


def epoch(i: int, copies: bool, writes: bool, host: bool) -> None:
    if copies:
        x.copy_(x_in)
    graph.replay()
    if copies:
        out.copy_(y)
    if writes:
        assert cu.cuStreamWriteValue64_v2(raw_stream, counter.data_ptr(), i, 0) == 0
        assert cu.cuStreamWriteValue64_v2(raw_stream, mirror.data_ptr(), i, 0) == 0
    if host:
        assert cu.cuLaunchHostFunc(raw_stream, host_function, None) == 0


for config in [(False, False, False), (True, False, False), (False, True, False), (False, False, True), (True, True, True)]:
    for sync in (False, True):
        best = float("inf")
        for round_ in range(6):
            t = time.perf_counter()
            for i in range(200):
                epoch(i, *config)
                if sync:
                    stream.synchronize()
            stream.synchronize()
            if round_:
                best = min(best, (time.perf_counter() - t) / 200)
        name = ", ".join(n for n, on in zip(["copies", "counter writes", "host function"], config) if on) or "graph alone"
        print(f"{name:45s} {'sync each' if sync else 'pipelined':9s} {best * 1e6:6.1f} us", flush=True)
