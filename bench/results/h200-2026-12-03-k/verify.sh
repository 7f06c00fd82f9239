#!/bin/bash
# GPU suite, decode steps compiled against eager, and one decode step's kernels under ncu.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu decode"
bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
