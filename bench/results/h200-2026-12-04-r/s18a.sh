#!/usr/bin/env bash
# Matvec loads ahead (a lane's half-blocks of a tile issued together), eight activation blocks
# staged at once in the few-column builds, warp-shuffle group folds, batched extreme reductions:
# kernel checks and timings (scripts/check_cuda_kernels.py), outputs bit for bit against the
# previous library, kernels per step, per-kernel times under ncu, decode A/B, fold tests.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
OLD=$L/last/lib/liblanes.so NEW=$L/k1/lib/liblanes.so
t0=$SECONDS
python3 scripts/check_cuda_kernels.py --run --time-only > $OUT/kcheck-new.log 2>&1; echo "kcheck new rc $? at $((SECONDS-t0))"; grep -E "FAIL|passed" $OUT/kcheck-new.log | head
python3 .device/oldsrc/scripts/check_cuda_kernels.py --run --time-only > $OUT/kcheck-old.log 2>&1; echo "kcheck old rc $? at $((SECONDS-t0))"
paste <(grep "^time" $OUT/kcheck-old.log | grep "m=1 " | sed 's/ GB.*//') <(grep "^time" $OUT/kcheck-new.log | grep "m=1 " | sed 's/.*: //;s/ GB.*//')
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"; done
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/bits.ts /tmp/m.gguf > $OUT/bits-$(basename $(dirname $(dirname $lib))).txt 2>&1; done
if cmp -s $OUT/bits-last.txt $OUT/bits-k1.txt; then echo "bits: identical ($(wc -l < $OUT/bits-k1.txt) lines)"; else echo "bits: DIFFER"; diff $OUT/bits-last.txt $OUT/bits-k1.txt | head -20; fi
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done; echo "kcount at $((SECONDS-t0))"
LANES_LIBRARY_PATH=$NEW BUN=$B bash bench/ncu-decode.sh /tmp/m.gguf $OUT/ncu-new 200 warm 2>&1 | tail -16; echo "ncu at $((SECONDS-t0))"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 120 $S --rounds 4 --modes compiled --loop generate --libs $OLD,$NEW > $OUT/generate-ab.log 2>&1; tail -4 $OUT/generate-ab.log
echo "decode at $((SECONDS-t0))"
export LANES_LIBRARY_PATH=$NEW
timeout 150 $B test test/quantized.test.ts test/compile.test.ts test/llama.test.ts test/fused.test.ts test/ops.test.ts > $OUT/tests.log 2>&1; echo "tests rc $? at $((SECONDS-t0))"
grep -E "^\s*[0-9]+ (pass|fail)$|^\(fail\)" $OUT/tests.log | head -20
echo "done at $((SECONDS-t0))"
