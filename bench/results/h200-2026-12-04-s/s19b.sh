#!/usr/bin/env bash
# The rope library (s19a): SmolLM2-shaped decode compiled against eager under generate(), five
# rounds; the toy decode compiled against eager.
cd "$(dirname "$0")/../../.."
[ -x .device/bun ] || { xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz; }
B=$PWD/.device/bun NEW=$PWD/.device/rope/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
[ -f /tmp/m.gguf ] || $B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
timeout 200 $B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64 --rounds 5 --modes compiled,eager --loop generate --libs $NEW > $OUT/generate.log 2>&1; tail -4 $OUT/generate.log
echo "decode at $((SECONDS-t0))"
timeout 80 $B bench/compile-host.ts > $OUT/toy.log 2>&1; tail -3 $OUT/toy.log
echo "done at $((SECONDS-t0))"
