#!/bin/bash
# Where a compiled decode step's time goes on the GPU machine: the decode loop three ways
# (greedy / fixed token / pipelined), then an nsys timeline of 16 steps if nsys is there.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
for loop in greedy fixed pipelined; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 120 "$bun" bench/llm-steps.ts --model /tmp/s.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -3
done
NSYS=$(ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}"; ls /usr/local/cuda/ | tr '\n' ' '; echo
if [ -n "$NSYS" ]; then
  LANES_BACKEND=cuda timeout 150 "$NSYS" profile --cuda-graph-trace=node -t cuda -o "$out/trace" "$bun" bench/decode-steps.ts --model /tmp/s.gguf --prompt 200 --steps 16 > "$out/nsys.log" 2>&1
  echo "profile rc $?"
  timeout 120 "$NSYS" stats --report cuda_gpu_trace --format csv -o "$out/gpu" "$out/trace.nsys-rep" >> "$out/nsys.log" 2>&1
  echo "stats rc $?"; ls "$out"
  python3 - "$out"/gpu*.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
k = [(int(float(r["Start (ns)"])), int(float(r["Duration (ns)"])), r["Name"][:50]) for r in rows if r.get("Duration (ns)")]
k.sort()
# the last 8 steps: from the 8th-to-last argmax reduce on
red = [i for i, x in enumerate(k) if x[2].startswith("reduce_")]
start = red[-8] if len(red) >= 8 else 0
seg = k[start:]
span = seg[-1][0] + seg[-1][1] - seg[0][0]
busy = sum(d for _, d, _ in seg)
gaps = [(seg[i + 1][0] - (seg[i][0] + seg[i][1]), seg[i][2], seg[i + 1][2]) for i in range(len(seg) - 1)]
print(f"last 8 steps: {len(seg)} ops, span {span/8e3:.1f} us/step, busy {busy/8e3:.1f} us/step, gaps {(span-busy)/8e3:.1f} us/step")
for lo, hi in [(-10**9, 0), (0, 1000), (1000, 2000), (2000, 5000), (5000, 20000), (20000, 10**12)]:
    g = [x for x, _, _ in gaps if lo <= x < hi]
    print(f"  gaps in [{lo/1e3:g}, {hi/1e3:g}) us: {len(g)/8:.1f}/step, {sum(g)/8e3:.1f} us/step")
big = sorted(gaps, reverse=True)[:12]
for g, a, b in big: print(f"  {g/1e3:8.1f} us  after {a}  before {b}")
PY
fi
