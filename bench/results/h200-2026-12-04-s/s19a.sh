#!/usr/bin/env bash
# The rope and a decode step's two cache writes as one kernel (translate_rope_updates), and
# 32-bit index division in the strided kernels: outputs against the last kernels' (att),
# kernels and ms per step alternated with att, per-kernel times, the GPU suite.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun NEW=$PWD/.device/rope/lib/liblanes.so OLD=$PWD/.device/att/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
LANES_LIBRARY_PATH=$OLD timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm old rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 30 $B bench/output-hashes.ts /tmp/m.gguf > $OUT/hashes-rope.txt 2>&1
if cmp -s .device/bits-w16.txt $OUT/hashes-rope.txt; then echo "hashes: identical to att's, fin's and 9ab7a4b's"; else echo "hashes: DIFFER"; diff .device/bits-w16.txt $OUT/hashes-rope.txt | head -6; fi
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 100 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -10
BUN=$B timeout 60 bash bench/ncu-decode.sh /tmp/m.gguf $OUT/ncu-rope 200 warm 2>&1 | tail -14; echo "ncu at $((SECONDS-t0))"
for lib in $NEW $OLD $NEW $OLD; do echo "== $lib"; LANES_LIBRARY_PATH=$lib timeout 25 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done
echo "done at $((SECONDS-t0))"
