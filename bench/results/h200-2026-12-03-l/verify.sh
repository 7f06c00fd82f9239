#!/bin/bash
# GPU suite, decode steps compiled against eager (SmolLM2-shaped, then the toy), and one decode
# step's kernels under ncu with warm caches.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu warm"; bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
