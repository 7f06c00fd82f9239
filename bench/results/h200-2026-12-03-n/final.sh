#!/bin/bash
# The session's last code: GPU suite (after warming every kernel family, QUANT included), decode
# steps compiled against eager, one step's kernels under ncu (warm).
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu warm"; bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
