#!/usr/bin/env bash
cd "$(dirname "$0")/.."
xz -dc .device/bun.xz > .device/bun && chmod +x .device/bun && tar xJf .device/nm.tar.xz
B=$PWD/.device/bun L=$PWD/.device
export LANES_BACKEND=cuda LANES_LIBRARY_PATH=$L/new2/lib/liblanes.so
t0=$SECONDS
which nsys ncu perf gdb 2>&1 | head; ls /usr/local/cuda/bin 2>/dev/null | head -40 | tr '\n' ' '; echo
timeout 120 $B bench/warm-kernels.ts > /dev/null 2>&1; echo "warm at $((SECONDS-t0))"
$B bench/llm-synthetic.ts /tmp/m.gguf > /dev/null
for lib in new new2; do
  echo "== $lib"; LANES_LIBRARY_PATH=$L/$lib/lib/liblanes.so timeout 60 $B .device/prof2.ts /tmp/m.gguf 2>&1 | tail -10
done
echo "== new2 eager"; timeout 60 $B .device/prof2.ts /tmp/m.gguf eager 2>&1 | tail -10
NSYS=$(which nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  timeout 150 $NSYS profile -t cuda,osrt -o $OUT/p --force-overwrite true $B .device/prof2.ts /tmp/m.gguf > $OUT/nsys.log 2>&1; echo "nsys rc $? at $((SECONDS-t0))"
  timeout 100 $NSYS stats --report cuda_api_sum --format csv $OUT/p.nsys-rep > $OUT/api_sum.csv 2>&1
  head -30 $OUT/api_sum.csv
  timeout 100 $NSYS stats --report osrt_sum --format csv $OUT/p.nsys-rep 2>&1 | head -15
  rm -f $OUT/p.sqlite
fi
echo "done at $((SECONDS-t0))"
