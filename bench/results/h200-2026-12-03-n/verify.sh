#!/bin/bash
# GPU suite and decode steps; one step's kernels under ncu (warm); the quantized kernels' own
# check; the matvec's two builds timed alone.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu warm"; bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
echo "== check_cuda_kernels --run"; timeout 150 python3 scripts/check_cuda_kernels.py --run 2>&1 | tail -3
echo "== time"; timeout 150 python3 scripts/check_cuda_kernels.py --run --time-only --grids 132,264,528 2>&1 | grep "^time" | grep "m=1 " | sed 's/quantized_matvec_//'
