#include "cpu_features.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace lanes::cpu {
namespace {

// CPUID and XGETBV directly: the compiler's __builtin_cpu_supports needs a runtime symbol a
// shared library cannot reference.
bool detect_avx2_fma() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!fma || !osxsave || !avx) return false;
  unsigned lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6u) != 6u) return false;  // the OS saves the YMM registers
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return b & (1u << 5);  // AVX2
#else
  return false;
#endif
}

}  // namespace

bool has_avx2_fma() {
  static const bool yes = detect_avx2_fma();
  return yes;
}

}  // namespace lanes::cpu
