#!/usr/bin/env bash
# Sanitizer lanes beyond TSan (which zig builds): the native tests under AddressSanitizer +
# UndefinedBehaviorSanitizer + LeakSanitizer (g++ from Debian; zig has no ASan), and the C ABI
# fuzzer under libFuzzer (clang from Debian) for a bounded time, and the quantized kernels'
# test under UBSan.
#   bash .ci/sanitizers.sh [fuzz-seconds]
# Prints "sanitizers: N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzz_seconds="${1:-60}"
out="${LANES_SANITIZER_DIR:-$(mktemp -d)}"
mkdir -p "$out"
core=$(sed -n 's/^ *"\(\(ffi\/src\|cpu\|cuda\)\/[^"]*\.cpp\)",$/\1/p' build.zig)

# Compiles every source to an object in parallel: build COMPILER DIR FLAGS... ; prints the objects.
build() {
  local cxx="$1" dir="$2"
  shift 2
  mkdir -p "$dir"
  printf '%s\n' $core "$TEST_SOURCE" | xargs -P "$(nproc)" -I{} sh -c \
    "$cxx $* -c {} -o $dir/\$(echo {} | tr / _).o" || return 1
  ls "$dir"/*.o
}
passed=0
failed=0

echo "== ASan + UBSan + LSan native tests (g++)"
asan_flags="-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -DLANES_LOCK_DEBUG=1 -Iffi/include -Iffi/src -pthread"
if objs=$(TEST_SOURCE=ffi/test/native_test.cpp build g++ "$out/asan-obj" $asan_flags) &&
  g++ $asan_flags $objs -o "$out/native-asan"; then
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/native-asan"; then
    passed=$((passed + 1))
  else
    echo "sanitizers: ASan/UBSan/LSan run failed"; failed=$((failed + 1))
  fi
else
  echo "sanitizers: ASan build failed"; failed=$((failed + 1))
fi

echo "== libFuzzer on the C ABI (clang, ${fuzz_seconds}s)"
if ! command -v clang++-14 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null) ||
      echo "sanitizers: could not install clang-14"
  fi
fi
fuzz_flags="-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -Iffi/include -Iffi/src -pthread"
if command -v clang++-14 >/dev/null 2>&1 &&
  objs=$(TEST_SOURCE=ffi/test/fuzz_abi.cpp build clang++-14 "$out/fuzz-obj" $fuzz_flags) &&
  clang++-14 -fsanitize=fuzzer,address,undefined -pthread $objs -o "$out/fuzz-abi"; then
  mkdir -p "$out/corpus" && cp ffi/test/fuzz_corpus/* "$out/corpus/"
  if ASAN_OPTIONS=detect_leaks=1 "$out/fuzz-abi" -max_total_time="$fuzz_seconds" -timeout=20 -rss_limit_mb=4096 -artifact_prefix="$out/" \
    -print_final_stats=1 "$out/corpus" ffi/test/fuzz_corpus 2>&1 | tail -25; then
    passed=$((passed + 1))
  else
    echo "sanitizers: the fuzzer found a failure"; failed=$((failed + 1))
  fi
else
  echo "sanitizers: fuzzer build failed"; failed=$((failed + 1))
fi

echo "== quantized kernels against their float64 references, every SIMD level (g++ -O2 + UBSan)"
quant_flags="-std=c++20 -O2 -g -fsanitize=undefined -fno-sanitize-recover=undefined -Iffi/include -Iffi/src -pthread"
if g++ $quant_flags ffi/test/quant_test.cpp cpu/quant.cpp cpu/compute_pool.cpp cpu/cpu_features.cpp \
  -o "$out/quant-test" && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/quant-test" | tail -3; then
  passed=$((passed + 1))
else
  echo "sanitizers: quantized kernel test failed"; failed=$((failed + 1))
fi

echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
