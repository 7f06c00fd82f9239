#!/bin/bash
# GPU suite and decode steps on the committed code, then one decode-step attention call under
# ncu with its launch, occupancy, warp-state and memory sections.
set -u
out=$1; bun=${BUN:-bun}; mkdir -p "$out"
bash bench/h200.sh "$out/h" warm tests decode
"$bun" bench/llm-synthetic.ts /tmp/s.gguf > /dev/null
echo "== ncu attention detail"
LANES_BACKEND=cuda timeout 200 /usr/local/cuda/bin/ncu --cache-control none --clock-control none -k regex:attention --launch-skip 45 --launch-count 1 \
  --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats \
  "$bun" bench/decode-steps.ts --model /tmp/s.gguf --prompt 200 --steps 1 > "$out/ncu-attention.txt" 2>&1
grep -v "^==PROF==" "$out/ncu-attention.txt" | grep -E "Duration|Registers|Threads|Block Size|Grid Size|Achieved Occupancy|Theoretical Occupancy|Stall|Warp Cycles|Memory Throughput|DRAM Throughput|L1|L2 Hit|Local|Shared Memory|Waves|Issued|Eligible|Executed Ipc|Compute \(SM\)|Elapsed Cycles|SM Frequency" | head -60
