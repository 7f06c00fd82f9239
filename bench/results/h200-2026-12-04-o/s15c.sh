#!/bin/bash
# Fifteenth session, third call: GPU suite, then decode loops compiled against eager: the
# library's generate() one step ahead and not, the bench's greedy and pipelined loops; the toy.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests
"$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
for loop in generate generate-serial greedy pipelined generate generate-serial; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -4
done
for r in 1 2; do LANES_BACKEND=cuda timeout 60 "$bun" bench/compile-host.ts 2>&1 | tail -2; done
