#!/usr/bin/env bash
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$L/trA/lib/liblanes.so
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in trA trB; do echo "== $lib"; LANES_LIBRARY_PATH=$L/$lib/lib/liblanes.so timeout 60 $B .device/prof2.ts /tmp/m.gguf 2>&1 | grep -E "trace|round|plan_run" | tail -6; done
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 100 $S --rounds 2 --modes compiled --loop pipelined --libs $L/trA/lib/liblanes.so,$L/trB/lib/liblanes.so 2>&1 | tail -3
