#!/bin/bash
# Where the CPU backend's multi-Worker efficiency goes on the H200 host: the cores' topology,
# CPU time per graph at 1 and 8 Workers, and the 64x64 eager graph's scaling with the compute
# pool off, with JSC's concurrent GC off, compiled instead of eager, beside plain JS.
#   BUN=... bash probe.sh OUTDIR
set -u
out=$1
bun=${BUN:-bun}
mkdir -p "$out"
{ nproc; lscpu; } > "$out/cpu-topology.txt" 2>&1
scale() {
  local name=$1; shift
  echo "== $name"
  env "$@" LANES_BACKEND=cpu timeout 90 "$bun" bench/scaling.ts ${KIND:-small} ${MODE:-eager} 2000
}
TIMEFORMAT='real %R user %U sys %S'
for w in 1 8; do
  echo "== cpu time, $w Workers (2 s window, startup included)"
  { time env LANES_BACKEND=cpu LANES_SCALING_WORKERS=$w timeout 60 "$bun" bench/scaling.ts small eager 2000 ; } 2>&1
done
export LANES_SCALING_WORKERS=1,2,4,8
KIND=js scale "plain js"
scale "eager, default"
scale "eager, LANES_CPU_THREADS=1" LANES_CPU_THREADS=1
scale "eager, BUN_JSC_useConcurrentGC=0" BUN_JSC_useConcurrentGC=0
MODE=compiled scale "compiled, default"
scale "eager, default again"
