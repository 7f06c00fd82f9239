# The 29-kernel 64x64 graph captured as a PyTorch CUDA graph and replayed 50 times, for
# bench/ncu-replay.sh to time its kernels one by one.
import torch

from torch_baseline import small_graph

s = torch.cuda.Stream()
with torch.cuda.stream(s):
    x = torch.randn(64, 64, device="cuda"); w = torch.randn(64, 64, device="cuda") * 0.1; b = torch.randn(1, 64, device="cuda")
    for _ in range(20): small_graph(x, w, b)
    s.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        small_graph(x, w, b)
    s.synchronize()
    for _ in range(50): g.replay()
    s.synchronize()
