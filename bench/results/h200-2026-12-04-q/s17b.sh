#!/usr/bin/env bash
# d28f485's library: the 16 host cores' CPU-backend scaling (issue 13's targets there, two
# rounds), SmolLM2-shaped decode compiled against eager under generate() (five rounds), the toy
# decode with bench/compile-host.ts's alternated rounds (twice).
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun NEW=$PWD/.device/pair/lib/liblanes.so
export LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
nproc; lscpu | grep -E "Model name|^CPU\(s\)"
BUN=$B bash bench/h200.sh $OUT/scaling cpu-scaling 2>&1 | grep -E "^==|throughput"
echo "scaling at $((SECONDS-t0))"
export LANES_BACKEND=cuda
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 200 $B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64 --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
echo "decode at $((SECONDS-t0))"
for i in 1 2; do timeout 90 $B bench/compile-host.ts > $OUT/toy-$i.log 2>&1; tail -2 $OUT/toy-$i.log; done
echo "done at $((SECONDS-t0))"
