#!/usr/bin/env bash
# The review commit's library (new5): take test, GPU suite, decode loops against old.
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
OLD=$L/old/lib/liblanes.so NEW=$L/new5/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
for i in 1 2 3; do timeout 60 $B test test/compile.test.ts -t "take index is out of range" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$" | tr '\n' ' '; done; echo "take at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 200 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 150 $S --rounds 3 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; cat $OUT/generate.log
timeout 80 $S --rounds 2 --modes compiled --loop pipelined --libs $OLD,$NEW > $OUT/pipelined.log 2>&1; tail -3 $OUT/pipelined.log
timeout 80 $S --rounds 2 --modes compiled --loop batch --libs $OLD,$NEW > $OUT/batch.log 2>&1; tail -3 $OUT/batch.log
for i in 1 2; do timeout 50 $B bench/compile-host.ts > $OUT/toy-$i.log 2>&1; tail -1 $OUT/toy-$i.log; done
echo "done at $((SECONDS-t0))"
