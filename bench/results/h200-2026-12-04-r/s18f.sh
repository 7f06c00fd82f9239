#!/usr/bin/env bash
# Attention: a block of one chunk reads the query with its key loads instead of staging it first;
# the row's records are combined 16 at a time. Outputs against fin's, per-kernel times, GPU
# suite, kernels and ms per step.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun NEW=$PWD/.device/att/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 100 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 30 $B bench/output-hashes.ts /tmp/m.gguf > $OUT/hashes-att.txt 2>&1
if cmp -s .device/bits-w16.txt $OUT/hashes-att.txt; then echo "hashes: identical to fin's, w16's and 9ab7a4b's"; else echo "hashes: DIFFER"; diff .device/bits-w16.txt $OUT/hashes-att.txt | head -6; fi
BUN=$B timeout 60 bash bench/ncu-decode.sh /tmp/m.gguf $OUT/ncu-att 200 warm 2>&1 | tail -12; echo "ncu at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 80 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -10
timeout 25 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2
echo "done at $((SECONDS-t0))"
