#!/usr/bin/env bash
# The rope library (s19a): the 16 host cores' CPU-backend scaling (issue 13's targets there, two
# rounds); SmolLM2-shaped decode under generate() one step ahead against generate-serial (each
# step read before the next: the service engine's loop before runGeneration became generate());
# compiled against eager under generate() again (five rounds); the toy decode.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun NEW=$PWD/.device/rope/lib/liblanes.so
export LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
nproc; lscpu | grep -E "Model name|^CPU\(s\)"
BUN=$B bash bench/h200.sh $OUT/scaling cpu-scaling 2>&1 | grep -E "^==|throughput|efficiency|per-stream"
echo "scaling at $((SECONDS-t0))"
export LANES_BACKEND=cuda
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for loop in generate generate-serial generate generate-serial; do
  timeout 60 $B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64 --rounds 3 --modes compiled --loop $loop --libs $NEW > $OUT/$loop.log 2>&1; echo -n "$loop: "; tail -1 $OUT/$loop.log
done
timeout 200 $B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64 --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate-eager.log 2>&1; tail -3 $OUT/generate-eager.log
echo "decode at $((SECONDS-t0))"
timeout 90 $B bench/compile-host.ts > $OUT/toy.log 2>&1; tail -2 $OUT/toy.log
echo "done at $((SECONDS-t0))"
