#!/bin/bash
# GPU suite + decode (compiled vs eager), the matvec's staging A/B (QMV_STAGE_GROUP 4 vs 1,
# standalone timing), and ncu's warp-state sections for the decode's matvecs.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== check_cuda_kernels --run"; timeout 120 python3 scripts/check_cuda_kernels.py --run 2>&1 | tail -3
for g in 4 1 4 1; do
  echo "== time QMV_STAGE_GROUP=$g"
  timeout 100 python3 scripts/check_cuda_kernels.py --time-only --define QMV_STAGE_GROUP=$g 2>&1 | grep "^time" | grep "k=576 n=576\|k=576 n=1536\|k=1536 n=576\|n=49152" | grep "m=1 "
done
NCU=/usr/local/cuda/bin/ncu
for k in quantized_matvec_norm_q4_1 quantized_matvec_epilogue_q4_1; do
  echo "== ncu $k"
  LANES_BACKEND=cuda timeout 120 $NCU --cache-control none --clock-control none --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats --section SpeedOfLight \
    -k regex:$k --launch-skip 40 -c 1 "$bun" bench/decode-steps.ts --model /tmp/s.gguf --prompt 200 --steps 2 > "$out/ncu-$k.txt" 2>&1
  grep -E "Duration|Warp Cycles Per|Stall|Achieved Occupancy|Theoretical Occupancy|Registers Per|Issued Warp|No Eligible|Active Warps Per|Eligible Warps|Block Limit|Grid Size|Memory Throughput|DRAM Throughput" "$out/ncu-$k.txt" | head -40
done
