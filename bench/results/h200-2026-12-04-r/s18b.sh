#!/usr/bin/env bash
# Few-column matvec variants timed alone (scripts/check_cuda_kernels.py --time-only with
# QMV_FEW_GROUP / QMV_FEW_AHEAD), three decode matvecs under ncu's full set (stall reasons by
# SASS line), and k2 (group 4, loads ahead 4, shuffle folds, batched extremes) against 9ab7a4b.
cd "$(dirname "$0")/../../.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device NCU=/usr/local/cuda/bin/ncu
OLD=$L/last/lib/liblanes.so NEW=$L/k2/lib/liblanes.so
t0=$SECONDS
for v in "4 1" "4 4" "8 4" "4 2" "8 1"; do set -- $v
  python3 scripts/check_cuda_kernels.py --run --time-only --define QMV_FEW_GROUP=$1 --define QMV_FEW_AHEAD=$2 > $OUT/time-g$1-a$2.log 2>&1
  echo "group $1 ahead $2 (rc $?): $(grep -E '^time .*_few m=1 k=(576|1536) ' $OUT/time-g$1-a$2.log | sed -E 's/time quantized_matvec_//;s/ m=1//;s/ grid=[0-9]+//;s/ us\/call.*//' | tr '\n' ' ')"
done
echo "variants at $((SECONDS-t0))"
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$NEW
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 150 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm rc $? at $((SECONDS-t0))"; done
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/bits.ts /tmp/m.gguf > $OUT/bits-$(basename $(dirname $(dirname $lib))).txt 2>&1; done
if cmp -s $OUT/bits-last.txt $OUT/bits-k2.txt; then echo "bits: identical ($(wc -l < $OUT/bits-k2.txt) lines)"; else echo "bits: DIFFER"; diff $OUT/bits-last.txt $OUT/bits-k2.txt | head -20; fi
tail -2 $OUT/bits-k2.txt
for lib in $OLD $NEW; do LANES_LIBRARY_PATH=$lib timeout 60 $B .device/kcount.ts /tmp/m.gguf 2>&1 | tail -2; done; echo "kcount at $((SECONDS-t0))"
BUN=$B bash bench/ncu-decode.sh /tmp/m.gguf $OUT/ncu-new 200 warm 2>&1 | tail -14; echo "ncu at $((SECONDS-t0))"
timeout 120 $NCU --cache-control none --clock-control none --set full -k regex:"quantized_matvec_(epilogue_q4_1_few|norm_pair_q4_1|norm_q4_1_few)" --launch-count 3 -o $OUT/mv $B bench/decode-steps.ts --model /tmp/m.gguf --prompt 200 --steps 1 > $OUT/mv.log 2>&1; echo "ncu full rc $? at $((SECONDS-t0))"
$NCU -i $OUT/mv.ncu-rep --page details > $OUT/mv-details.txt 2>&1
$NCU -i $OUT/mv.ncu-rep --page source --csv --print-source sass > $OUT/mv-sass.csv 2>&1; echo "sass rc $? $(wc -c < $OUT/mv-sass.csv)"
S="$B bench/llm-steps.ts --model /tmp/m.gguf --only decode --prompt 200 --decode 64"
timeout 120 $S --rounds 4 --modes compiled --loop generate --libs $OLD,$NEW > $OUT/generate-ab.log 2>&1; tail -3 $OUT/generate-ab.log
echo "done at $((SECONDS-t0))"
