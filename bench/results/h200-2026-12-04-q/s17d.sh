#!/usr/bin/env bash
# The rope epilogue (the q and k heads rotated as the qkv matvec stores them) on top of the pair
# epilogue: the fold tests, the GPU suite, kernels per step, decode loops against the pair-only
# library (d28f485) and 9098b8a.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun OLD=$PWD/.device/new5/lib/liblanes.so PAIR=$PWD/.device/pair/lib/liblanes.so NEW=$PWD/.device/rope/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
timeout 120 $B test test/compile.test.ts -t "pair epilogue|rope over a one-row" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)|rror|Expected|Received" | head; echo "fold tests at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 220 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $PAIR $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done; echo "kcount at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 100 $S --rounds 3 --modes compiled --loop pipelined --libs $OLD,$PAIR,$NEW > $OUT/pipelined.log 2>&1; tail -4 $OUT/pipelined.log
timeout 100 $S --rounds 3 --modes compiled --loop generate --libs $OLD,$PAIR,$NEW > $OUT/generate-ab.log 2>&1; tail -4 $OUT/generate-ab.log
timeout 150 $S --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
echo "done at $((SECONDS-t0))"
