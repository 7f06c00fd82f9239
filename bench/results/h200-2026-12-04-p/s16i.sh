#!/usr/bin/env bash
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device NEW=$L/new4/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 60 $B .device/prof.ts /tmp/m.gguf 2>&1 | tail -4
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 200 $S --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate5.log 2>&1; cat $OUT/generate5.log
