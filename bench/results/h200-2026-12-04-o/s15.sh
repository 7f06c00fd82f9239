#!/bin/bash
# Fifteenth session: GPU suite (warm), decode compiled against eager, then the decode loop
# greedy against pipelined (donated caches written in place while earlier steps still run).
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
for loop in pipelined greedy; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -4
done
