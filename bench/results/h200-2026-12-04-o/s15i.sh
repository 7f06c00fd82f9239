#!/bin/bash
# Fifteenth session, ninth call: the final library (ff04f72): GPU suite, the take test, decode loops.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
export LANES_LIBRARY_PATH=$PWD/.device/new/lib/liblanes.so
bash bench/h200.sh "$out/h" warm tests
for r in 1 2; do LANES_BACKEND=cuda timeout 60 "$bun" test test/compile.test.ts -t "take index is out of range" 2>&1 | grep -E "^\(fail|pass$|fail$" | head -3; done
"$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
for loop in generate; do
  echo "== loop $loop"
  LANES_BACKEND=cuda timeout 100 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled,eager --loop $loop 2>&1 | tail -2
done
