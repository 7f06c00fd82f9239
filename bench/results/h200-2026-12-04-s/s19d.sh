#!/usr/bin/env bash
# The compile test's rope-and-cache-writes case with the caches as the first outputs (so that a
# bfloat16 cache's writes follow the rope too, and rope_store_pair_f32_bf16 runs), on CUDA.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$PWD/.device/rope/lib/liblanes.so
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
timeout 120 $B test test/compile.test.ts test/llama.test.ts > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)|rope over its q" $OUT/tests.log | head -10
