#!/usr/bin/env bash
# c9641f0's library (the final code): the pair test, the GPU suite, SmolLM2-shaped decode under
# generate() against eager (five rounds) and against 9098b8a queued back to back.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun OLD=$PWD/.device/new5/lib/liblanes.so NEW=$PWD/.device/final/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
timeout 120 $B test test/compile.test.ts -t "pair epilogue" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)|rror" | head; echo "pair test at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 220 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 150 $S --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
timeout 80 $S --rounds 2 --modes compiled --loop pipelined --libs $OLD,$NEW > $OUT/pipelined.log 2>&1; tail -3 $OUT/pipelined.log
echo "done at $((SECONDS-t0))"
