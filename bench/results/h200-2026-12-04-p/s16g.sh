#!/usr/bin/env bash
# old = HEAD; new = hurried reads; new4 = hurried reads + one instance, each replay's checks copied out.
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
OLD=$L/old/lib/liblanes.so NEW=$L/new/lib/liblanes.so NEW4=$L/new4/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW4
t0=$SECONDS
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for i in 1 2 3; do timeout 60 $B test test/compile.test.ts -t "take index is out of range" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$" | tr '\n' ' '; done; echo "take at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 150 $S --rounds 3 --modes compiled --loop pipelined --libs $OLD,$NEW4 > $OUT/pipelined.log 2>&1; tail -4 $OUT/pipelined.log
timeout 150 $S --rounds 3 --modes compiled,eager --loop generate --libs $OLD,$NEW4 > $OUT/generate.log 2>&1; tail -5 $OUT/generate.log
timeout 100 $S --rounds 2 --modes compiled --loop batch --libs $OLD,$NEW4 > $OUT/batch.log 2>&1; tail -3 $OUT/batch.log
timeout 60 $S --rounds 2 --modes compiled --loop generate-serial --libs $NEW4 > $OUT/gen-serial.log 2>&1; tail -2 $OUT/gen-serial.log
echo "decode at $((SECONDS-t0))"
for i in 1 2; do timeout 50 $B bench/compile-host.ts > $OUT/toy-$i.log 2>&1; tail -2 $OUT/toy-$i.log; done
timeout 60 $B .device/prof2.ts /tmp/m.gguf 2>&1 | grep -E "round|plan_run" | tail -2
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout $((590 - (SECONDS - t0))) $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
