#!/usr/bin/env bash
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$PWD/.device/new5/lib/liblanes.so
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 100 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -4
