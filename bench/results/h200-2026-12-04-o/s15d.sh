#!/bin/bash
# Fifteenth session, fourth call: GPU suite, then the service's batched decode path (DecodeBatch,
# one row, greedy) with and without the step ahead, generate() both ways, and the pipelined
# bound, alternated twice.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests
"$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
for r in 1 2; do
  for loop in batch batch-serial; do
    echo "== loop $loop"
    LANES_BACKEND=cuda timeout 100 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled --loop $loop 2>&1 | tail -1
  done
  for loop in generate generate-serial pipelined; do
    echo "== loop $loop"
    LANES_BACKEND=cuda timeout 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -2
  done
done
for r in 1 2; do LANES_BACKEND=cuda timeout 60 "$bun" bench/compile-host.ts 2>&1 | tail -1; done
