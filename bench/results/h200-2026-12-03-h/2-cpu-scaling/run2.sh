#!/usr/bin/env bash
# Device run 2: CPU scaling on the host's cores (a plain-JS ceiling, lanes per-stream and global, new and old library), then the CUDA read round trip.
set -u
out=$1; mkdir -p $out
B=$PWD/.device/bun; N=$PWD/.device/zig-out/lib/liblanes.so; O=$PWD/.device/old/lib/liblanes.so
lscpu > $out/lscpu.txt; nproc >> $out/lscpu.txt
export LANES_BACKEND=cpu LANES_SCALING_WORKERS=1,2,4,8,16
for r in 1 2; do
  echo "== round $r js";               LANES_LIBRARY_PATH=$N timeout 60 $B bench/scaling.ts js eager 2000 2>&1 | tail -1
  echo "== round $r new per-stream";   LANES_LIBRARY_PATH=$N timeout 60 $B bench/scaling.ts small eager 2000 2>&1 | tail -1
  echo "== round $r new global";       LANES_LOCKING=global LANES_LIBRARY_PATH=$N timeout 60 $B bench/scaling.ts small eager 2000 2>&1 | tail -1
  echo "== round $r old per-stream";   LANES_LIBRARY_PATH=$O timeout 60 $B bench/scaling.ts small eager 2000 2>&1 | tail -1
done
unset LANES_SCALING_WORKERS
echo "== read latency (cuda)"; LANES_BACKEND=cuda LANES_LIBRARY_PATH=$N timeout 90 $B bench/read-latency.ts 2>&1 | tail -12
