#!/usr/bin/env bash
# Kernel durations of one compiled SmolLM2-shaped decode step (warm caches, free clocks) with
# the pair epilogue (d28f485, the same native code as HEAD).
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
export BUN=$PWD/.device/bun LANES_LIBRARY_PATH=$PWD/.device/pair/lib/liblanes.so
LANES_BACKEND=cuda timeout 150 $BUN bench/warm-kernels.ts > /dev/null 2>&1
$BUN bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
bash bench/ncu-decode.sh /tmp/m.gguf $OUT 200 warm 2>&1 | tail -40
