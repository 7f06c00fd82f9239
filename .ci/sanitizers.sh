#!/usr/bin/env bash
# Sanitizer lanes beyond TSan (which zig builds): the native tests under AddressSanitizer +
# UndefinedBehaviorSanitizer + LeakSanitizer, and the C ABI fuzzer under libFuzzer for a bounded
# time, from one build of the core (clang from Debian; zig has no ASan), and the quantized
# kernels' test under UBSan (g++ from Debian).
#   bash .ci/sanitizers.sh [fuzz-seconds]
# Prints "sanitizers: N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzz_seconds="${1:-60}"
out="${LANES_SANITIZER_DIR:-$(mktemp -d)}"
mkdir -p "$out"
core=$(sed -n 's/^ *"\(\(ffi\/src\|cpu\|cuda\)\/[^"]*\.cpp\)",$/\1/p' build.zig)

# Compiles each source (the first argument after the flags' end, "--", and on) to an object in
# parallel, largest first so that no long file starts last: build COMPILER DIR FLAGS... -- SOURCES...
build() {
  local cxx="$1" dir="$2" flags=()
  shift 2
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  mkdir -p "$dir"
  ls -S "$@" | xargs -P "$(nproc)" -I{} sh -c "$cxx ${flags[*]} -c {} -o $dir/\$(echo {} | tr / _).o"
}
passed=0
failed=0

if ! command -v clang++-14 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null) ||
      echo "sanitizers: could not install clang-14"
  fi
fi

# One build serves both: the fuzzer's coverage instrumentation is inert in the test binary
# (the sanitizer runtime defines its hooks).
echo "== ASan + UBSan + LSan native tests, and libFuzzer on the C ABI for ${fuzz_seconds}s (clang, one build of the core)"
flags="-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -DLANES_LOCK_DEBUG=1 -Iffi/include -Iffi/src -pthread"
obj="$out/obj"
if command -v clang++-14 >/dev/null 2>&1 && build clang++-14 "$obj" $flags -- $core ffi/test/native_test.cpp ffi/test/fuzz_abi.cpp; then
  core_objs=$(for f in $core; do echo "$obj/$(echo "$f" | tr / _).o"; done)
  if clang++-14 -fsanitize=address,undefined -pthread $core_objs "$obj/ffi_test_native_test.cpp.o" -o "$out/native-asan"; then
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/native-asan"; then
      passed=$((passed + 1))
    else
      echo "sanitizers: ASan/UBSan/LSan run failed"; failed=$((failed + 1))
    fi
  else
    echo "sanitizers: ASan test link failed"; failed=$((failed + 1))
  fi
  if clang++-14 -fsanitize=fuzzer,address,undefined -pthread $core_objs "$obj/ffi_test_fuzz_abi.cpp.o" -o "$out/fuzz-abi"; then
    mkdir -p "$out/corpus" && cp ffi/test/fuzz_corpus/* "$out/corpus/"
    if ASAN_OPTIONS=detect_leaks=1 "$out/fuzz-abi" -max_total_time="$fuzz_seconds" -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$out/" \
      -print_final_stats=1 "$out/corpus" ffi/test/fuzz_corpus 2>&1 | tail -25; then
      passed=$((passed + 1))
    else
      echo "sanitizers: the fuzzer found a failure"; failed=$((failed + 1))
    fi
  else
    echo "sanitizers: fuzzer link failed"; failed=$((failed + 1))
  fi
else
  echo "sanitizers: clang build failed (or no clang++-14)"; failed=$((failed + 2))
fi

echo "== quantized kernels against their float64 references, every SIMD level (g++ -O2 + UBSan)"
quant_flags="-std=c++20 -O2 -g -fsanitize=undefined -fno-sanitize-recover=undefined -Iffi/include -Iffi/src -pthread"
quant_sources="ffi/test/quant_test.cpp cpu/quant.cpp cpu/compute_pool.cpp cpu/cpu_features.cpp"
if build g++ "$out/quant-obj" $quant_flags -- $quant_sources &&
  g++ -fsanitize=undefined -pthread $(for f in $quant_sources; do echo "$out/quant-obj/$(echo "$f" | tr / _).o"; done) -o "$out/quant-test" &&
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/quant-test" | tail -3; then
  passed=$((passed + 1))
else
  echo "sanitizers: quantized kernel test failed"; failed=$((failed + 1))
fi

echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
