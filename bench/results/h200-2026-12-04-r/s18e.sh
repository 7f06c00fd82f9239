#!/usr/bin/env bash
# The final library (16-warp few-column matvecs, shuffle group folds, batched extreme
# reductions): outputs against w16's, kernels per step, SmolLM2-shaped decode compiled against
# eager under generate(), the GPU suite, the toy decode.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun NEW=$PWD/.device/fin/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 60 $B .device/bits.ts /tmp/m.gguf > $OUT/bits-fin.txt 2>&1
if cmp -s .device/bits-w16.txt $OUT/bits-fin.txt; then echo "bits: identical to w16's and 9ab7a4b's"; else echo "bits: DIFFER"; fi
timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; echo "kcount at $((SECONDS-t0))"
timeout 160 $B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64 --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -3 $OUT/generate.log
echo "decode at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 200 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
timeout 60 $B bench/compile-host.ts > $OUT/toy.log 2>&1; tail -2 $OUT/toy.log
echo "done at $((SECONDS-t0))"
