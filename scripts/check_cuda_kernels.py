"""Checks of the CUDA kernels (cuda/kernels.cu and cuda/quant_kernels.cu).

Without a GPU (default): builds the source the backend compiles at run time (the op codes of
ffi/include/lanes_table.def, then both files) and compiles it to PTX for sm_90 with libnvrtc
(PyPI nvidia-cuda-nvrtc-cu12, pinned in test/support/requirements-gguf.txt, in the venv scripts/setup.sh makes, or LANES_NVRTC=path) through
ctypes, once per LANES_FAMILY_* the source uses, as the backend does. Fails on any NVRTC error
or warning, or a missing entry point.

With --run on a machine with an NVIDIA GPU: also launches every kernel through the CUDA driver
API (ctypes, libcuda) on random blocks and checks, with numpy:
  - dequantize_*_to_f32 bit for bit against the layout (products rounded, then Q4_1's min
    added), dequantize_*_to_bf16 bit for bit against that rounded to nearest even;
  - quantized_matvec_* against a float64 evaluation of the 8-bit activation scheme (the CPU
    kernels' definition, written here again), within float32 accumulation error, for m up to
    64, k up to 4096 (two shared-memory tiles) and padded activation rows;
  - bitwise equal results for three grid sizes.

    python3 scripts/check_cuda_kernels.py [--ptx OUT.ptx] [--run]   (in ~/.cache/lanes/gguf-py)
"""
import argparse
import concurrent.futures
import ctypes
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
ENTRY_POINTS = [f"quantized_matvec_{e}{t}{b}" for e in ("", "epilogue_", "norm_") for t in ("q4_0", "q4_1", "q8_0") for b in ("", "_few")] + [f"quantized_matvec_{e}{t}" for e in ("pair_", "norm_pair_") for t in ("q4_0", "q4_1", "q8_0")] + [
    f"dequantize_{t}_to_{o}" for t in ("q4_0", "q4_1", "q8_0") for o in ("f32", "bf16")]


def load_nvrtc():
    candidates = [os.environ["LANES_NVRTC"]] if os.environ.get("LANES_NVRTC") else []
    try:
        import nvidia.cuda_nvrtc
        for root in nvidia.cuda_nvrtc.__path__:
            candidates += sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    candidates = [f for f in candidates if "builtins" not in f and ".alt." not in os.path.basename(f)]
    if not candidates:
        sys.exit("libnvrtc not found: run scripts/setup.sh (test/support/requirements-gguf.txt) or set LANES_NVRTC")
    return ctypes.CDLL(candidates[0])


def compile_ptx(nvrtc, source, name, options):
    prog = ctypes.c_void_p()
    check(nvrtc, nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None), "create")
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    rc = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    ptx = ""
    if rc == 0:
        nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetPTX(prog, buf)
        ptx = buf.value.decode()
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc, log.value.decode().strip(), ptx


def read(path):
    return open(os.path.join(ROOT, path)).read()


def op_constants():
    """The #defines the backend puts ahead of its kernels (ffi/src/gpu/kernel_layout.cpp)."""
    table = read("ffi/include/lanes_table.def")
    lines = []
    for macro, prefix in (("UNARY", "OP_"), ("BINARY", "OP_"), ("REDUCE", "R_"), ("RANDOM", "RANDOM_")):
        for code, name in re.findall(rf"^LANES_{macro}\((\d+), (\w+),", table, re.M):
            lines.append(f"#define {prefix}{name} {code}\n")
    command = read("ffi/src/command.hpp")
    for define, constant in (("FUSED_STEPS", "kMaxFusedSteps"), ("FUSED_DIMS", "kMaxFusedDims"), ("FUSED_INPUTS", "kMaxFusedInputs")):
        value = re.search(constant + r" = (\d+);", command).group(1)
        lines.append(f"#define {define} {value}\n")
    return "".join(lines)


def check(nvrtc, rc, what):
    if rc != 0:
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        sys.exit(f"NVRTC {what}: {nvrtc.nvrtcGetErrorString(rc).decode()}")


MEMORY_ACCESS = re.compile(r"^\s*(?:@!?%p\d+\s+)?(?:ld|ldu|st|atom|red|cp|call)\b(?!\.(?:param|shared|local|const)\b)", re.M)


def entries_touching_memory_before_waiting(ptx):
    """Entry points whose PTX accesses memory (or calls a function) before its first
    griddepcontrol.wait: a compiled plan may start them while the previous kernel still runs
    (programmatic dependent launch), so such an access could read data not yet written."""
    bad = []
    for chunk in ptx.split(".entry ")[1:]:
        name = chunk.split("(", 1)[0].strip()
        body = chunk.split("{", 1)[1] if "{" in chunk else ""
        wait = body.find("griddepcontrol.wait")
        access = MEMORY_ACCESS.search(body)
        if wait < 0 or (access and access.start() < wait):
            bad.append(name)
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ptx", help="write the PTX of the plain compile here")
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--run", action="store_true", help="also run the kernels on the GPU")
    parser.add_argument("--time", action="store_true", help="with --run: also time the matvec")
    parser.add_argument("--time-only", action="store_true", help="with --run: time, skip the GPU checks")
    parser.add_argument("--define", action="append", default=[], help="NAME=VALUE for NVRTC (tuning)")
    parser.add_argument("--threads", type=int, default=256, help="threads per block for --run")
    parser.add_argument("--grids", default="528,1056", help="with --time: the grid sizes tried")
    args = parser.parse_args()
    nvrtc = load_nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    source = op_constants() + read("cuda/kernels.cu") + "\n" + read("cuda/quant_kernels.cu")
    families = sorted(set(re.findall(r"LANES_FAMILY_(\w+)", source)))
    failures = 0
    plain_ptx = ""

    def compile_family(family):
        options = [f"-arch={args.arch}", "-std=c++17"] + [f"-D{d}" for d in args.define]
        options += [f"-DLANES_FAMILY_{family}"] if family else []
        return compile_ptx(nvrtc, source, "lanes_quant.cu", options)

    # NVRTC compiles separate programs concurrently, and ctypes lets go of the GIL meanwhile.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        compiled = list(pool.map(compile_family, families))
    for family, (rc, log, ptx) in zip(families, compiled):
        label = f"NVRTC {major.value}.{minor.value} {args.arch} family={family or '-'}"
        missing = [e for e in ENTRY_POINTS if f".entry {e}(" not in ptx] if family == "QUANT" else []
        early = entries_touching_memory_before_waiting(ptx)
        entries = ptx.count(".entry ")
        if rc != 0 or log or missing or early or entries == 0:
            failures += 1
            print(f"FAIL {label}: rc={rc} missing={missing} touching memory before griddepcontrol.wait={early}\n{log}")
        else:
            print(f"ok   {label}: {entries} entry points, each waiting before it touches memory, {len(ptx)} bytes of PTX")
        if family == "QUANT":
            plain_ptx = ptx
            if args.ptx:
                open(args.ptx, "w").write(ptx)
    passed = len(families) - failures
    if args.run and plain_ptx:
        import check_cuda_kernels_gpu as check_kernels_gpu  # beside this file; needs numpy and a GPU
        check_kernels_gpu.THREADS = args.threads
        check_kernels_gpu.GRIDS = tuple(int(g) for g in args.grids.split(","))
        run_passed, run_failed = (0, 0) if args.time_only else check_kernels_gpu.run_all(plain_ptx)
        if args.time or args.time_only:
            check_kernels_gpu.time_all(plain_ptx)
        passed, failures = passed + run_passed, failures + run_failed
    print(f"{passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
