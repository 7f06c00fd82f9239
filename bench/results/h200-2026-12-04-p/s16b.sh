#!/usr/bin/env bash
# A/B/C: HEAD (old), hurried reads (new), hurried reads + one instance with per-replay check words (new2).
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
OLD=$L/old/lib/liblanes.so NEW=$L/new/lib/liblanes.so NEW2=$L/new2/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW2
t0=$SECONDS
timeout 120 $B bench/warm-kernels.ts > $OUT/warm.log 2>&1; echo "warm rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 100 $B test test/compile.test.ts -t "take index is out of range" > $OUT/take.log 2>&1; echo "take rc $? at $((SECONDS-t0))"; grep -E "^\s*[0-9]+ (pass|fail)$" $OUT/take.log
timeout 150 $S --rounds 2 --modes compiled --loop pipelined --libs $OLD,$NEW,$NEW2 > $OUT/pipelined.log 2>&1; echo "pipelined rc $? at $((SECONDS-t0))"
tail -4 $OUT/pipelined.log
timeout 150 $S --rounds 2 --modes compiled --loop generate --libs $OLD,$NEW,$NEW2 > $OUT/generate.log 2>&1; echo "generate rc $? at $((SECONDS-t0))"
tail -4 $OUT/generate.log
timeout 100 $S --rounds 2 --modes compiled,eager --loop generate --libs $NEW2 > $OUT/generate-eager.log 2>&1; echo "generate-eager rc $? at $((SECONDS-t0))"
tail -3 $OUT/generate-eager.log
timeout 100 $S --rounds 2 --modes compiled --loop batch --libs $NEW,$NEW2 > $OUT/batch.log 2>&1; echo "batch rc $? at $((SECONDS-t0))"
tail -3 $OUT/batch.log
timeout 60 $B .device/prof.ts /tmp/m.gguf > $OUT/prof.log 2>&1; echo "prof rc $?"; cat $OUT/prof.log
timeout 50 $B bench/compile-host.ts > $OUT/toy-new2.log 2>&1; tail -2 $OUT/toy-new2.log
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout $((590 - (SECONDS - t0))) $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
