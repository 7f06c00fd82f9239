#!/usr/bin/env bash
# Contiguous views as plain plan operands (the first layer's and the head's norms fold into their
# matvecs): the GPU suite, kernels per step, decode loops against the pair-epilogue library.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun PAIR=$PWD/.device/pair/lib/liblanes.so NEW=$PWD/.device/view/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
timeout 120 $B test test/compile.test.ts -t "rmsNorm that alone feeds|pair epilogue" 2>&1 | grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)|rror|Expected|Received" | head
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 220 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $PAIR $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done; echo "kcount at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 100 $S --rounds 3 --modes compiled --loop pipelined --libs $PAIR,$NEW > $OUT/pipelined.log 2>&1; tail -3 $OUT/pipelined.log
timeout 150 $S --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
for i in 1; do timeout 90 $B bench/compile-host.ts > $OUT/toy-$i.log 2>&1; tail -2 $OUT/toy-$i.log; done
echo "done at $((SECONDS-t0))"
