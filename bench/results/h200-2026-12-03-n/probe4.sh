#!/bin/bash
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm > /dev/null 2>&1
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu warm (QMV_STAGE_GROUP=4 in the library)"; bash bench/ncu-decode.sh /tmp/s.gguf "$out/n" 200
for su in "4 1" "1 1" "4 2" "4 3"; do
  set -- $su
  echo "== time QMV_STAGE_GROUP=$1 QMV_DOT_UNROLL=$2"
  timeout 150 python3 scripts/check_cuda_kernels.py --run --time-only --define QMV_STAGE_GROUP=$1 --define QMV_DOT_UNROLL=$2 --grids 132,264,528 2>&1 | grep "^time" | grep "m=1 " | grep -v "k=4096" | sed 's/quantized_matvec_//'
done
