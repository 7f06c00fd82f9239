#!/usr/bin/env bash
# The pair epilogue (gate and up sums in one matvec, SwiGLU applied as they are stored): pair
# test, GPU suite, kernels per step and decode loops against the sixteenth session's library.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
OLD=$L/new5/lib/liblanes.so NEW=$L/pair/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > $OUT/warm.log 2>&1; echo "warm rc $? at $((SECONDS-t0))"
timeout 100 $B test test/compile.test.ts -t "pair epilogue|norm that alone feeds|quantized products' epilogues" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)|rror" | head; echo "pair test at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done; echo "kcount at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 100 $S --rounds 3 --modes compiled --loop pipelined --libs $OLD,$NEW > $OUT/pipelined.log 2>&1; tail -3 $OUT/pipelined.log
timeout 100 $S --rounds 3 --modes compiled --loop generate --libs $OLD,$NEW > $OUT/generate-ab.log 2>&1; tail -3 $OUT/generate-ab.log
timeout 150 $S --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
echo "decode at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 200 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
for i in 1 2; do timeout 50 $B bench/compile-host.ts > $OUT/toy-$i.log 2>&1; tail -1 $OUT/toy-$i.log; done
echo "done at $((SECONDS-t0))"
