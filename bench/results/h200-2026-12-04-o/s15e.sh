#!/bin/bash
# Fifteenth session, fifth call: the plan instance taken in turn. The new compile test (a replay
# with an out-of-range take, the next replay queued before it completes) on the previous library
# and on the new one, three times each, then the GPU suite and the decode loops on the new one.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
old=$PWD/.device/zig-out/lib/liblanes.so new=$PWD/.device/new/lib/liblanes.so
LANES_LIBRARY_PATH=$new bash bench/h200.sh "$out/h" warm
for r in 1 2 3; do
  for lib in old new; do
    echo "== $lib library, round $r"
    LANES_LIBRARY_PATH=${!lib} LANES_BACKEND=cuda timeout 60 "$bun" test test/compile.test.ts -t "take index is out of range" 2>&1 | grep -E "^\(|pass$|fail$|round|Expected|Received" | head -8
  done
done
export LANES_LIBRARY_PATH=$new
bash bench/h200.sh "$out/h" tests
"$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
for loop in batch batch-serial; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 100 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled --loop $loop 2>&1 | tail -1
done
for loop in generate pipelined; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -2
done
