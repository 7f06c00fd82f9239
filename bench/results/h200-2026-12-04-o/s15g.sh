#!/bin/bash
# Fifteenth session, seventh call: a stream keeping four plan instances (new) against two (two),
# alternated in child processes: decode loops pipelined, generate, batch; then the GPU suite and
# the take test on two.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
four=$PWD/.device/new/lib/liblanes.so two=$PWD/.device/two/lib/liblanes.so
LANES_LIBRARY_PATH=$two bash bench/h200.sh "$out/h" warm
"$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
for loop in pipelined generate batch pipelined; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled --libs $four,$two --loop $loop 2>&1 | tail -2
done
LANES_LIBRARY_PATH=$two bash bench/h200.sh "$out/h" tests
for r in 1 2; do LANES_LIBRARY_PATH=$two LANES_BACKEND=cuda timeout 60 "$bun" test test/compile.test.ts -t "take index is out of range" 2>&1 | grep -E "^\(fail|pass$|fail$" | head -3; done
