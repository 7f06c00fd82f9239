#!/bin/bash
# GPU suite and decode steps (attention chunks combined by the last block in plans, norms and SwiGLU folded into matvecs), one step's kernels
# under ncu (warm), then the quantized kernels' own check.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu warm"; bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
echo "== check_cuda_kernels --run"; timeout 120 python3 scripts/check_cuda_kernels.py --run 2>&1 | tail -8
