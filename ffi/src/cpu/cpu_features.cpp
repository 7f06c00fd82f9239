#include "cpu_features.hpp"

#include <cstdlib>
#include <cstring>

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

// AVX-512 Foundation, with the OS saving the opmask and all 32 ZMM registers.
bool detect_avx512f() {
#if defined(__x86_64__)
  if (!detect_avx2_fma()) return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) return false;
  unsigned lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6u) == 0xE6u;  // XMM, YMM, opmask, ZMM0-15 upper halves, ZMM16-31
#else
  return false;
#endif
}

SimdLevel simd_cap_from_env() {
  const char* v = std::getenv("LANES_CPU_SIMD");
  if (v && std::strcmp(v, "portable") == 0) return SimdLevel::Portable;
  if (v && std::strcmp(v, "avx2") == 0) return SimdLevel::Avx2;
  return SimdLevel::Avx512;
}

SimdLevel detect_simd_level() {
  SimdLevel cpu = detect_avx512f() ? SimdLevel::Avx512 : detect_avx2_fma() ? SimdLevel::Avx2 : SimdLevel::Portable;
  SimdLevel cap = simd_cap_from_env();
  return cap < cpu ? cap : cpu;
}

}  // namespace

bool has_avx2_fma() {
  static const bool yes = simd_level() >= SimdLevel::Avx2;
  return yes;
}

SimdLevel simd_level() {
  static const SimdLevel level = detect_simd_level();
  return level;
}

}  // namespace lanes::cpu
