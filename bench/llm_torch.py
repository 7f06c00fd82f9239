"""PyTorch reference for bench/llm-cuda.ts: a Llama GGUF's weights dequantized to bfloat16 (or
float32 with --dtype float32), B chats decoded greedily in lockstep as one batch, eagerly and as a
captured CUDA graph replayed per step (PyTorch at its best for small-batch decode). Each step's B
tokens are read on the host, as a serving loop streams them. Prints one JSON line per (mode, B).

  python3 bench/llm_torch.py MODEL.gguf [--chats 1,8,32] [--prompt 32] [--tokens 64]
                                        [--device cuda] [--dtype bfloat16] [--modes eager,graph]
  python3 bench/llm_torch.py MODEL.gguf --device cpu --dtype float32 --prompt-ids 1,2,3 --tokens 8
      prints the greedy continuation's ids (checks this forward pass against lanes/llama.cpp)

Needs only torch and numpy: the GGUF reader below covers F32, F16, BF16, Q8_0, Q4_0 and Q4_1."""
import argparse
import json
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.data[self.at : self.at + n]).decode("utf-8", "replace")
        self.at += n
        return s

    def value(self, kind):
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item, n = self.take("<I"), self.take("<Q")
            return [self.value(item) for _ in range(n)]
        return self.take(SCALARS[kind])


def read_gguf(path):
    data = memoryview(open(path, "rb").read())
    r = Reader(data)
    if bytes(data[:4]) != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    r.at = 4
    r.take("<I")
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, dims[::-1], r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (r.at + align - 1) // align * align
    tensors = {name: dequantize(kind, data[base + off :], int(np.prod(shape))).reshape(shape) for name, shape, kind, off in infos}
    return meta, tensors


def dequantize(kind, raw, count):
    if kind == F32:
        return np.frombuffer(raw, "<f4", count).copy()
    if kind == F16:
        return np.frombuffer(raw, "<f2", count).astype(np.float32)
    if kind == BF16:
        return (np.frombuffer(raw, "<u2", count).astype(np.uint32) << 16).view(np.float32)
    blocks = count // 32
    if kind == Q8_0:
        b = np.frombuffer(raw, [("d", "<f2"), ("q", "i1", 32)], blocks)
        return (b["d"].astype(np.float32)[:, None] * b["q"]).reshape(-1)
    if kind in (Q4_0, Q4_1):
        fields = [("d", "<f2")] + ([("m", "<f2")] if kind == Q4_1 else []) + [("q", "u1", 16)]
        b = np.frombuffer(raw, fields, blocks)
        nibbles = np.concatenate([b["q"] & 15, b["q"] >> 4], axis=1).astype(np.float32)
        d = b["d"].astype(np.float32)[:, None]
        return (d * nibbles + b["m"].astype(np.float32)[:, None] if kind == Q4_1 else d * (nibbles - 8)).reshape(-1)
    raise SystemExit(f"tensor type {kind} is not supported")


class Llama:
    def __init__(self, meta, tensors, device, dtype, max_len):
        g = lambda k, d=None: meta.get(f"llama.{k}", d)
        self.dim, self.layers = g("embedding_length"), g("block_count")
        self.heads, self.kv_heads = g("attention.head_count"), g("attention.head_count_kv", g("attention.head_count"))
        self.head_dim = self.dim // self.heads
        self.eps = g("attention.layer_norm_rms_epsilon")
        rope_dims = g("rope.dimension_count", self.head_dim)
        w = lambda name: torch.from_numpy(tensors[name]).to(device=device, dtype=dtype)
        self.embed = w("token_embd.weight")
        self.head = w("output.weight") if "output.weight" in tensors else self.embed
        self.norm = w("output_norm.weight")
        self.blocks = [
            {k: w(f"blk.{i}.{k}.weight") for k in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            for i in range(self.layers)
        ]
        inv = g("rope.freq_base", 10000.0) ** (-torch.arange(0, rope_dims, 2, dtype=torch.float64) / rope_dims)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = angles.cos().to(device=device, dtype=torch.float32)
        self.sin = angles.sin().to(device=device, dtype=torch.float32)
        self.rope_dims, self.max_len, self.device, self.dtype = rope_dims, max_len, device, dtype

    def new_cache(self, batch):
        shape = (batch, self.kv_heads, self.max_len, self.head_dim)
        return [(torch.zeros(shape, device=self.device, dtype=self.dtype), torch.zeros(shape, device=self.device, dtype=self.dtype)) for _ in range(self.layers)]

    def rope(self, x, positions):
        # Adjacent feature pairs rotate together (llama.cpp's "normal" mode for GGUF llamas).
        rot, rest = x[..., : self.rope_dims].float(), x[..., self.rope_dims :]
        cos, sin = self.cos[positions][None, None], self.sin[positions][None, None]
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
        return torch.cat((out.to(x.dtype), rest), dim=-1)

    def forward(self, ids, start, cache):
        """Logits of the last position for ids [B, L] at positions start..start+L-1 (start: a
        0-d long tensor on the device, so a captured step advances without the host)."""
        B, L = ids.shape
        positions = start + torch.arange(L, device=self.device)
        keys = torch.arange(self.max_len, device=self.device)
        mask = keys[None, :] <= positions[:, None]
        x = self.embed[ids]
        for blk, (kc, vc) in zip(self.blocks, cache):
            h = F.rms_norm(x, (self.dim,), blk["attn_norm"], self.eps)
            q = (h @ blk["attn_q"].T).view(B, L, self.heads, self.head_dim).transpose(1, 2)
            k = (h @ blk["attn_k"].T).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)
            v = (h @ blk["attn_v"].T).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, positions), self.rope(k, positions)
            kc.index_copy_(2, positions, k)
            vc.index_copy_(2, positions, v)
            a = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(B, L, self.dim) @ blk["attn_output"].T
            h = F.rms_norm(x, (self.dim,), blk["ffn_norm"], self.eps)
            x = x + (F.silu(h @ blk["ffn_gate"].T) * (h @ blk["ffn_up"].T)) @ blk["ffn_down"].T
        return F.rms_norm(x[:, -1], (self.dim,), self.norm, self.eps).float() @ self.head.float().T


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def generate(model, prompt, batch, tokens, mode):
    """B chats of `prompt` decoded greedily for `tokens` steps; returns (ids per step, seconds)."""
    device = model.device
    cache = model.new_cache(batch)
    ids = torch.tensor([prompt] * batch, device=device)
    start = torch.zeros((), dtype=torch.long, device=device)
    sync(device)
    t0 = time.perf_counter()
    nxt = model.forward(ids, start, cache).argmax(-1)
    out = [nxt.cpu()]
    pos = torch.full((), len(prompt), dtype=torch.long, device=device)
    token = nxt.view(batch, 1).clone()
    if mode == "graph":
        graph = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture, as CUDA graphs require
            scratch = [(k.clone(), v.clone()) for k, v in cache]
            model.forward(token, pos, scratch)
            del scratch
        torch.cuda.current_stream().wait_stream(side)
        capture = time.perf_counter()
        with torch.cuda.graph(graph):
            step = model.forward(token, pos, cache).argmax(-1)
            token.copy_(step.view(batch, 1))
            pos.add_(1)
        sync(device)
        t0 += time.perf_counter() - capture  # a server captures once per batch size: not counted
        for _ in range(tokens - 1):
            graph.replay()
            out.append(token.view(batch).cpu())
    else:
        for _ in range(tokens - 1):
            token = model.forward(token, pos, cache).argmax(-1).view(batch, 1)
            pos = pos + 1
            out.append(token.view(batch).cpu())
    sync(device)
    return torch.stack(out, 1), time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--chats", default="1,8,32")
    p.add_argument("--prompt", type=int, default=32, help="prompt length in tokens (ids 1000, 1001, ...)")
    p.add_argument("--prompt-ids", default="")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--modes", default="eager,graph")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    prompt = [int(t) for t in a.prompt_ids.split(",")] if a.prompt_ids else list(range(1000, 1000 + a.prompt))
    meta, tensors = read_gguf(a.model)
    model = Llama(meta, tensors, a.device, getattr(torch, a.dtype), len(prompt) + a.tokens)
    if a.prompt_ids:
        ids, _ = generate(model, prompt, 1, a.tokens, "eager")
        print(json.dumps({"ids": ids[0].tolist()}))
        return
    for mode in a.modes.split(","):
        for batch in (int(b) for b in a.chats.split(",")):
            best = float("inf")
            for _ in range(a.rounds):
                _, seconds = generate(model, prompt, batch, a.tokens, mode)
                best = min(best, seconds)
            print(json.dumps({"engine": f"torch-{mode}", "torch": torch.__version__, "dtype": a.dtype, "chats": batch, "prompt": len(prompt), "tokens": a.tokens, "seconds": best, "tokens_per_s": batch * a.tokens / best}), flush=True)


if __name__ == "__main__":
    main()
