#!/usr/bin/env bash
# What this project checks of the Metal backend on Linux beyond ../shared/metal-check/check.sh
# (which compiles and links metal/*.mm for macOS and type-checks metal/kernels.metal). Nothing
# here runs Metal; no machine of this project can.
#   1. the kernel source as the backend compiles it (metal/kernel_source.hpp: the op codes of
#      lanes_table.def, then what metal/embed.zig embeds, kernel_params.hpp's text first)
#      type-checks on its own, away from the project's headers, as newLibraryWithSource receives it;
#   2. metal/check/simdgroup_matrix.h (the SIMD-group matrix declarations the shared stand-in
#      lacks) rejects the planted misuses in metal/check/simdgroup_neg.metal, and only those;
#   3. both matmul kernels, compiled as host C++ and run with emulated threadgroups and SIMD-group
#      matrices, give exact results on ragged, strided, broadcast and batched shapes;
#   4. the quantized-weight kernels (dequantize, take of quantized rows, quantizedMatmul), compiled
#      the same way with emulated SIMD-group shuffles, match a reference made from the block layout
#      (dequantization bit for bit).
#
#   bash metal/check/run.sh        (from the project root; needs ../shared/metal-check)
# Env: METAL_CHECK (default ../shared/metal-check), ZIG (default scripts/zig).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
shim="$(cd "${METAL_CHECK:-../shared/metal-check}" && pwd)/msl/shim"
[ -f "$shim/metal_stdlib" ] || { echo "metal/check: no $shim/metal_stdlib" >&2; exit 2; }
zig() { "${ZIG:-$root/scripts/zig}" "$@"; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The flags of the shared MSL check (msl/check.sh), for the same three readings of MSL.
msl=(-fsyntax-only -ferror-limit=0 -nostdinc -I"$shim" -Wall -Wextra -Wno-unknown-attributes -Wno-unused-parameter)
cpp17=(-x c++ -std=c++17 -nostdinc++)
cpp14=(-x c++ -std=c++14 -nostdinc++)
address_spaces=(-x clcpp -cl-std=clc++2021 -cl-no-stdinc -DMSL_AS=1)
status=0

echo "== the kernel source (metal/kernel_source.hpp), alone, as Metal's compiler receives it"
zig build-obj metal/embed.zig -femit-bin="$tmp/embed.o"
zig c++ -std=c++20 -Iffi/include metal/check/print_source.cpp ffi/src/gpu/kernel_layout.cpp ffi/src/shape.cpp \
  ffi/src/status.cpp "$tmp/embed.o" -o "$tmp/print_source"
mkdir "$tmp/alone"
"$tmp/print_source" > "$tmp/alone/kernels.metal"
# As on a Mac: __METAL_VERSION__ is defined, so the source includes nothing of the project; the
# SIMD-group declarations Apple's <metal_stdlib> would bring come in on the command line.
embedded=(-D__METAL_VERSION__=310 -include metal_stdlib -include "$root/metal/check/simdgroup_matrix.h" "$tmp/alone/kernels.metal")
for mode in cpp17 cpp14 address_spaces; do
  declare -n flags="$mode"
  zig clang "${flags[@]}" "${msl[@]}" "${embedded[@]}" || status=1
done

echo "== metal/check/simdgroup_neg.metal: its planted misuses, and only those, fail"
want="$(grep -n ';  *// ' metal/check/simdgroup_neg.metal | grep -v '// fine' | cut -d: -f1 | sort -n | tr '\n' ' ')"
got="$(zig clang "${address_spaces[@]}" "${msl[@]}" metal/check/simdgroup_neg.metal 2>&1 |
  sed -n 's/^[^:]*simdgroup_neg.metal:\([0-9]*\):[0-9]*: error:.*/\1/p' | sort -n | tr '\n' ' ' || true)"
echo "   errors on lines: ${got:-none} (planted: $want)"
[ -n "$want" ] && [ "$got" = "$want" ] || status=1

echo "== matmul kernels on the CPU (emulated threadgroups and SIMD-group matrices; not Metal)"
zig c++ -std=c++20 -O1 -I"$shim" -Wno-unknown-attributes -c metal/check/matmul_emulation_kernels.cpp -o "$tmp/kernels.o"
zig c++ -std=c++20 -O1 -Wall -Wextra -Werror metal/check/matmul_emulation.cpp "$tmp/kernels.o" -o "$tmp/matmul_emulation"
"$tmp/matmul_emulation" || status=1

echo "== quantized-weight kernels on the CPU (emulated SIMD-group shuffles; not Metal)"
zig c++ -std=c++20 -O1 -I"$shim" -Wno-unknown-attributes -c metal/check/quant_emulation_kernels.cpp -o "$tmp/quant_kernels.o"
zig c++ -std=c++20 -O1 -Wall -Wextra -Werror metal/check/quant_emulation.cpp "$tmp/quant_kernels.o" -o "$tmp/quant_emulation"
"$tmp/quant_emulation" || status=1

if [ $status -eq 0 ]; then echo "metal/check: ok"; else echo "metal/check: FAILED"; fi
exit $status
