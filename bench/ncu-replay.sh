#!/usr/bin/env bash
# Kernel durations of a lanes compiled replay and of PyTorch's captured graph of the same
# 29-kernel graph, with Nsight Compute (ncu serializes kernels and locks clocks: compare the two
# with each other, not with wall time). Needs $BUN and a CUDA lanes library.
#   bash bench/ncu-replay.sh OUTDIR
out=$1
NCU=/usr/local/cuda/bin/ncu
LANES_BACKEND=cuda timeout 150 $NCU --metrics gpu__time_duration.sum --csv -s 600 -c 93 $BUN bench/cuda-profile.ts 20 > $out/ncu-lanes.csv 2> $out/ncu-lanes.err
echo "ncu lanes rc $?"; tail -3 $out/ncu-lanes.err
timeout 100 $NCU --metrics gpu__time_duration.sum --csv -s 600 -c 58 python3 bench/torch_graph_replay.py > $out/ncu-torch.csv 2> $out/ncu-torch.err
echo "ncu torch rc $?"; tail -3 $out/ncu-torch.err
for f in lanes torch; do echo "== $f"; python3 - "$out/ncu-$f.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("no rows"); sys.exit()
h = rows[0]; ki = h.index("Kernel Name"); vi = h.index("Metric Value"); ui = h.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    v = float(r[vi].replace(",", "")) * {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}[r[ui]]
    tot[r[ki][:70]] += v; cnt[r[ki][:70]] += 1
for k in sorted(tot, key=lambda k: -tot[k]): print(f"{tot[k]:9.0f} ns {cnt[k]:4d}x  {k}")
print(f"total {sum(tot.values()):.0f} ns over {sum(cnt.values())} kernels")
PY
done
