#!/usr/bin/env bash
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$L/tr/lib/liblanes.so
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 60 $B .device/prof2.ts /tmp/m.gguf 2>&1 | grep -v "^  lanes_array_[a-qs-z]" | tail -14
