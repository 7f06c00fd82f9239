#!/bin/bash
# Decode steps compiled against eager on the H200 and on its host's cores, the GPU suite, and
# the CPU backend's scaling rounds.   BUN=... bash decode.sh OUTDIR
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
bash bench/h200.sh "$out/h" warm tests decode
echo "== cpu llm-steps prompt 200"
LANES_BACKEND=cpu timeout 100 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --decode 32 --rounds 2 --prompt 200 --modes compiled,eager
for r in 1 2; do bash bench/h200.sh "$out/h$r" cpu-scaling; done
