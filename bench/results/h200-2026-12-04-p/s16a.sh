#!/usr/bin/env bash
# A/B: HEAD (old) against hurried completion reads (new); then the GPU suite on new.
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun OLD=$PWD/.device/old/lib/liblanes.so NEW=$PWD/.device/new/lib/liblanes.so
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
t0=$SECONDS
nvidia-smi -L; nproc
timeout 120 $B bench/warm-kernels.ts > $OUT/warm.log 2>&1; echo "warm rc $? at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null; echo "gguf at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 150 $S --rounds 2 --modes compiled,eager --loop generate --libs $OLD,$NEW > $OUT/generate.log 2>&1; echo "generate rc $? at $((SECONDS-t0))"
tail -4 $OUT/generate.log
timeout 80 $S --rounds 2 --modes compiled --loop pipelined --libs $OLD,$NEW > $OUT/pipelined.log 2>&1; echo "pipelined rc $? at $((SECONDS-t0))"
tail -3 $OUT/pipelined.log
timeout 80 $S --rounds 2 --modes compiled --loop batch --libs $OLD,$NEW > $OUT/batch.log 2>&1; echo "batch rc $? at $((SECONDS-t0))"
tail -3 $OUT/batch.log
for lib in old new; do
  LANES_LIBRARY_PATH=$PWD/.device/$lib/lib/liblanes.so timeout 50 $B bench/compile-host.ts > $OUT/toy-$lib.log 2>&1; echo "toy $lib rc $? at $((SECONDS-t0))"
  tail -3 $OUT/toy-$lib.log
done
files=()
for t in abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p; do files+=("test/$t.test.ts"); done
timeout $((590 - (SECONDS - t0))) $B test "${files[@]}" > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
