#!/usr/bin/env bash
# The few-column matvec builds in blocks of 8 (9ab7a4b's launches), 16 or 32 warps, one kernel
# source: outputs bit for bit, kernels and ms per step, decode A/B, per-kernel times (w16), and the
# GPU suite on w16.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
W8=$L/w8/lib/liblanes.so W16=$L/w16/lib/liblanes.so W32=$L/w32/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$W16
t0=$SECONDS
timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $W8 $W16 $W32; do n=$(basename $(dirname $(dirname $lib))); LANES_LIBRARY_PATH=$lib timeout 60 $B .device/bits.ts /tmp/m.gguf > $OUT/bits-$n.txt 2>&1; echo "bits $n: $(md5sum < $OUT/bits-$n.txt | cut -c1-12) $(wc -l < $OUT/bits-$n.txt) lines"; done
for lib in $W8 $W16 $W32; do echo "$(basename $(dirname $(dirname $lib))): $(LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2 | tr '\n' ' ')"; done; echo "kcount at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 150 $S --rounds 3 --modes compiled --loop generate --libs $W8,$W16,$W32 > $OUT/generate-ab.log 2>&1; tail -4 $OUT/generate-ab.log
echo "decode at $((SECONDS-t0))"
BUN=$B bash bench/ncu-decode.sh /tmp/m.gguf $OUT/ncu-w16 200 warm 2>&1 | tail -13; echo "ncu at $((SECONDS-t0))"
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout 230 $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
echo "done at $((SECONDS-t0))"
