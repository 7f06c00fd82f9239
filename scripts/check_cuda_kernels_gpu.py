"""GPU half of cuda/check_kernels.py --run: launches the quantized-weight kernels through the
CUDA driver API (ctypes) and checks them with numpy (see check_kernels.py for what is checked)."""
import ctypes
import math

import numpy as np

BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34}
THREADS = 256
U = 2.0 ** -24


class Driver:
    def __init__(self, ptx):
        self.cu = ctypes.CDLL("libcuda.so.1")
        self.check(self.cu.cuInit(0), "cuInit")
        dev, self.ctx, self.module = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
        self.check(self.cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        self.check(self.cu.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), dev), "cuDevicePrimaryCtxRetain")
        self.check(self.cu.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        self.check(self.cu.cuModuleLoadData(ctypes.byref(self.module), ptx.encode() + b"\0"), "cuModuleLoadData")

    def check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"{what} failed with CUDA error {rc}")

    def upload(self, array):
        ptr = ctypes.c_uint64()
        self.check(self.cu.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(max(array.nbytes, 1))), "cuMemAlloc")
        if array.nbytes:
            self.check(self.cu.cuMemcpyHtoD_v2(ptr, array.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(array.nbytes)), "HtoD")
        return ptr

    def download(self, ptr, like):
        out = np.empty_like(like)
        self.check(self.cu.cuMemcpyDtoH_v2(out.ctypes.data_as(ctypes.c_void_p), ptr, ctypes.c_size_t(out.nbytes)), "DtoH")
        return out

    def free(self, *ptrs):
        for p in ptrs:
            self.cu.cuMemFree_v2(p)

    def launch(self, name, grid, args):
        fn = ctypes.c_void_p()
        self.check(self.cu.cuModuleGetFunction(ctypes.byref(fn), self.module, name.encode()), name)
        holders = [a if isinstance(a, (ctypes.c_uint64, ctypes.c_int64)) else ctypes.c_int64(a) for a in args]
        params = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
        self.check(self.cu.cuLaunchKernel(fn, grid, 1, 1, THREADS, 1, 1, 0, None, params, None), "launch " + name)
        self.check(self.cu.cuCtxSynchronize(), "sync " + name)


# ---- the block layouts -------------------------------------------------------------------------

def random_blocks(rng, qtype, count):
    """count blocks of random quants; float16 scales mostly ordinary, some extreme."""
    bb = BLOCK_BYTES[qtype]
    raw = rng.integers(0, 256, size=(count, bb), dtype=np.uint8)
    def scales():
        kind = rng.integers(0, 20, size=count)
        bits = ((rng.integers(5, 17, size=count) << 10) | rng.integers(0, 1024, size=count)).astype(np.uint16)
        bits[kind == 0] = rng.integers(1, 1024, size=int((kind == 0).sum()))  # subnormal
        bits[kind == 1] = 0x7BFF
        bits[kind == 2] = 0
        return bits | (rng.integers(0, 2, size=count).astype(np.uint16) << 15)
    raw[:, 0:2] = scales().view(np.uint8).reshape(count, 2)
    if qtype == "q4_1":
        raw[:, 2:4] = scales().view(np.uint8).reshape(count, 2)
    return raw


def decode(qtype, raw):
    """(int weights (count, 32), d (count,), min (count,) or None) in float32."""
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    if qtype == "q8_0":
        return raw[:, 2:34].view(np.int8).astype(np.int64), d, None
    qs = raw[:, 2:18] if qtype == "q4_0" else raw[:, 4:20]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int64)
    if qtype == "q4_0":
        return q - 8, d, None
    return q, d, raw[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1)


def dequant_reference(qtype, raw):
    q, d, mn = decode(qtype, raw)
    v = q.astype(np.float32) * d[:, None]  # float32 product, one rounding
    if mn is not None:
        v = v + mn[:, None]  # then the add, one rounding
    return v.reshape(-1).astype(np.float32)


def to_bf16_bits(f32):
    u = f32.view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


# ---- the 8-bit activation scheme in float64 ----------------------------------------------------

def half_precision(v):
    """float32 values at float16 precision where float16 has a normal number for them."""
    h = v.astype(np.float16)
    a = np.abs(h.astype(np.float32))
    normal = np.isfinite(a) & (a >= 2.0 ** -14)
    return np.where(normal, h.astype(np.float32), v).astype(np.float64)


def quantize_activations(x, nb):
    xb = x.reshape(x.shape[0], nb, 32)
    amax = np.abs(xb).max(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (amax / np.float32(127)).astype(np.float32)
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint((xb * inv[:, :, None]).astype(np.float32)).astype(np.int64)  # half to even
    s = half_precision((d * q.sum(axis=2).astype(np.float32)).astype(np.float32))
    return q, half_precision(d), s


def matvec_reference(qtype, x, raw, n, k):
    nb = k // 32
    wq, dw, mw = decode(qtype, raw)
    wq, dw = wq.reshape(n, nb, 32), dw.reshape(n, nb).astype(np.float64)
    xq, dh, s = quantize_activations(x, nb)
    dots = np.einsum("ibe,jbe->ijb", xq.astype(np.float64), wq.astype(np.float64))
    adots = np.einsum("ibe,jbe->ijb", np.abs(xq).astype(np.float64), np.abs(wq).astype(np.float64))
    scale = dh[:, None, :] * dw[None, :, :]
    want = (scale * dots).sum(axis=2)
    magnitude = (np.abs(scale) * adots).sum(axis=2)
    if mw is not None:
        mins = s[:, None, :] * mw.reshape(n, nb).astype(np.float64)[None, :, :]
        want += mins.sum(axis=2)
        magnitude += np.abs(mins).sum(axis=2)
    return want, magnitude


# ---- the checks ----------------------------------------------------------------------------------

def run_all(ptx):
    drv = Driver(ptx)
    rng = np.random.default_rng(20261201)
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(("ok   " if ok else "FAIL ") + what)

    for qtype in BLOCK_BYTES:
        count = 4099
        raw = random_blocks(rng, qtype, count)
        want = dequant_reference(qtype, raw)
        w = drv.upload(raw)
        out = drv.upload(np.zeros(count * 32 + 1, np.float32))
        drv.launch(f"dequantize_{qtype}_to_f32", 97, [out, w, count * 32])
        got = drv.download(out, np.zeros(count * 32 + 1, np.float32))
        report(np.array_equal(got[:-1].view(np.uint32), want.view(np.uint32)) and got[-1] == 0,
               f"dequantize_{qtype}_to_f32: {count} blocks bit for bit")
        out16 = drv.upload(np.zeros(count * 32 + 1, np.uint16))
        drv.launch(f"dequantize_{qtype}_to_bf16", 97, [out16, w, count * 32])
        got16 = drv.download(out16, np.zeros(count * 32 + 1, np.uint16))
        report(np.array_equal(got16[:-1], to_bf16_bits(want)) and got16[-1] == 0,
               f"dequantize_{qtype}_to_bf16: {count} blocks bit for bit")
        drv.free(w, out, out16)

        for m in (1, 2, 3, 7, 8, 9, 64):
            for k in (32, 64, 576, 1536, 2080, 4096):
                for n in (1, 5, 576, 1536):
                    if m * n * k > 64 * 1536 * 1536 and k > 1536:
                        continue
                    stride = k + 3
                    scale = 10.0 ** rng.integers(-4, 4, size=(m, k // 32, 1))
                    x = np.full((m, stride), -12345, np.float32)
                    x[:, :k] = (rng.standard_normal((m, k // 32, 32)) * scale).reshape(m, k).astype(np.float32)
                    x[m - 1, :32] = 0  # an all-zero block
                    raw = random_blocks(rng, qtype, n * k // 32)
                    want, magnitude = matvec_reference(qtype, x[:, :k], raw, n, k)
                    # Each output: per lane at most ceil(nb/16) adds of terms rounded 3 times, a
                    # 5-level warp tree, one add per 2048-column tile: well inside nb + 16 roundings.
                    tol = (k // 32 + 16) * U * magnitude * 1.01
                    xd, wd = drv.upload(x), drv.upload(raw)
                    results = []
                    # Both builds (one or four activation blocks staged at a time) at three grids.
                    for build in ("", "_few"):
                        for grid in (1, 7, max(1, min(528, math.ceil(n / (THREADS // 32))))):
                            yd = drv.upload(np.full(m * n, np.nan, np.float32))
                            drv.launch(f"quantized_matvec_{qtype}{build}", grid, [yd, xd, m, k, stride, wd, n])
                            results.append(drv.download(yd, np.zeros(m * n, np.float32)).reshape(m, n))
                            drv.free(yd)
                    drv.free(xd, wd)
                    err = np.abs(results[0].astype(np.float64) - want)
                    worst = float(np.max(err / np.maximum(tol, 1e-300)))
                    same = all(np.array_equal(r.view(np.uint32), results[0].view(np.uint32)) for r in results)
                    report(bool(np.all(err <= tol)) and same,
                           f"quantized_matvec_{qtype} m={m} k={k} n={n}: worst error/bound {worst:.3f}, "
                           f"grids 1/7/{max(1, min(528, math.ceil(n / 8)))}, both builds {'bitwise equal' if same else 'DIFFER'}")
    return passed, failed


GRIDS = (528, 1056)  # --grids: the grid sizes time_all tries (each at most a column per warp)
BUILDS = ("", "_few")


def time_all(ptx):
    """Prints µs per call and weight GB/s of quantized_matvec (not a check)."""
    drv = Driver(ptx)
    cu = drv.cu
    rng = np.random.default_rng(7)
    start, stop = ctypes.c_void_p(), ctypes.c_void_p()
    drv.check(cu.cuEventCreate(ctypes.byref(start), 0), "cuEventCreate")
    drv.check(cu.cuEventCreate(ctypes.byref(stop), 0), "cuEventCreate")

    def best_us(name, grid, holders):
        """The best of 5 runs of 200 back-to-back launches, in µs a call."""
        fn = ctypes.c_void_p()
        drv.check(cu.cuModuleGetFunction(ctypes.byref(fn), drv.module, name.encode()), "fn")
        params = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
        best = float("inf")
        for _ in range(5):
            calls = 200
            cu.cuEventRecord(start, None)
            for _ in range(calls):
                cu.cuLaunchKernel(fn, grid, 1, 1, THREADS, 1, 1, 0, None, params, None)
            cu.cuEventRecord(stop, None)
            drv.check(cu.cuEventSynchronize(stop), "sync")
            ms = ctypes.c_float()
            cu.cuEventElapsedTime(ctypes.byref(ms), start, stop)
            best = min(best, ms.value * 1e3 / calls)
        return best

    for qtype, k, n in (("q4_1", 576, 576), ("q4_1", 576, 1536), ("q4_1", 1536, 576), ("q8_0", 576, 49152),
                        ("q4_1", 4096, 14336), ("q4_0", 4096, 14336), ("q8_0", 4096, 14336)):
        raw = random_blocks(rng, qtype, n * k // 32)
        raw[:, 1] &= 0x3B  # finite, moderate scales
        wd = drv.upload(raw)
        for m in (1, 8):
            xd = drv.upload(rng.standard_normal((m, k)).astype(np.float32))
            yd = drv.upload(np.zeros(m * n, np.float32))
            for build in BUILDS:
                for grid in sorted({max(1, min(g, math.ceil(n / (THREADS // 32)))) for g in GRIDS}):
                    name = f"quantized_matvec_{qtype}{build}"
                    best = best_us(name, grid, [yd, xd, ctypes.c_int64(m), ctypes.c_int64(k), ctypes.c_int64(k), wd, ctypes.c_int64(n)])
                    print(f"time {name} m={m} k={k} n={n} grid={grid}: {best:.2f} us/call, "
                          f"{raw.nbytes / best / 1e3:.0f} GB/s of weights")
            if m == 1 and k <= 2048:  # with a folded rmsNorm, as in a decode step
                grid = max(1, min(GRIDS[0], math.ceil(n / (THREADS // 32))))
                name = f"quantized_matvec_norm_{qtype}_few"
                nw = drv.upload(rng.standard_normal(k).astype(np.float32))
                best = best_us(name, grid, [yd, xd, ctypes.c_int64(m), ctypes.c_int64(k), wd, ctypes.c_int64(n), nw, ctypes.c_double(1e-5)])
                print(f"time {name} m={m} k={k} n={n} grid={grid}: {best:.2f} us/call")
                drv.free(nw)
            drv.free(xd, yd)
        drv.free(wd)
