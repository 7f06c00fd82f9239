#!/usr/bin/env bash
# 9ab7a4b (the last code): the GPU suite and the fold tests.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$PWD/.device/last/lib/liblanes.so
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 220 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $?"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
