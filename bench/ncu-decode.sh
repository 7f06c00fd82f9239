#!/usr/bin/env bash
# Kernel durations of one compiled decode step of a GGUF on CUDA, with Nsight Compute: the run
# is profiled twice, with 1 and with 3 decode steps after the prefill, and the difference is two
# steps' kernels; the last of them are reported by kernel name. By default the caches stay warm
# and the clocks free, as in a replay; `cold` keeps ncu's own defaults (L2 flushed before each
# kernel, base clock locked). ncu serializes kernels either way. Needs $BUN.
#   bash bench/ncu-decode.sh MODEL.gguf OUTDIR [prompt] [warm|cold]
model=$1 out=$2 prompt=${3:-200} mode=${4:-warm}
NCU=/usr/local/cuda/bin/ncu
flags="--cache-control none --clock-control none"
[ "$mode" = cold ] && flags=""
mkdir -p "$out"
for steps in 1 3; do
  LANES_BACKEND=cuda timeout 200 $NCU $flags --metrics gpu__time_duration.sum --csv \
    $BUN bench/decode-steps.ts --model "$model" --prompt "$prompt" --steps $steps > "$out/ncu-$steps.csv" 2> "$out/ncu-$steps.err"
  echo "ncu $steps steps: rc $?"; tail -2 "$out/ncu-$steps.err"
done
python3 - "$out/ncu-1.csv" "$out/ncu-3.csv" <<'PY'
import csv, sys, collections
def rows(path):
    rs = [r for r in csv.reader(open(path)) if len(r) > 10]
    h = rs[0]; ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
    scale = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}
    return [(r[ki][:80], float(r[vi].replace(",", "")) * scale[r[ui]]) for r in rs[1:]]
one, three = rows(sys.argv[1]), rows(sys.argv[2])
per_step = (len(three) - len(one)) // 2
step = three[-per_step:]
tot = collections.defaultdict(float); cnt = collections.Counter()
for k, v in step: tot[k] += v; cnt[k] += 1
for k in sorted(tot, key=lambda k: -tot[k]): print(f"{tot[k] / 1e3:9.1f} us {cnt[k]:4d}x  {k}")
print(f"one decode step: {per_step} kernels, {sum(v for _, v in step) / 1e3:.1f} us of kernel time")
PY
