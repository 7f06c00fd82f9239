#include "cpu_features.hpp"

#include <algorithm>
#include <string>


#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace lanes::cpu {
namespace {

// CPUID and XGETBV directly: the compiler's __builtin_cpu_supports needs a runtime symbol a
// shared library cannot reference.
struct Features {
  bool avx2_fma = false;
  bool f16c = false;
  bool avx512_vnni = false;
  bool avx512_llama = false;  // what llama.cpp's AVX-512 builds need at least: F, BW, DQ, VL
  bool amx_int8 = false;
};

Features detect() {
  Features f;
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!fma || !osxsave || !avx) return f;
  unsigned lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6u) != 6u) return f;  // the OS saves the XMM and YMM registers
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2_fma = b & (1u << 5);
  f.f16c = f.avx2_fma && f16c;
  bool avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31));  // F, BW, VL
  bool vnni = c & (1u << 11);
  bool zmm_state = (lo & 0xe0u) == 0xe0u;  // opmask, upper halves of ZMM0-15, ZMM16-31
  f.avx512_vnni = f.f16c && avx512 && vnni && zmm_state;
  f.avx512_llama = f.f16c && avx512 && (b & (1u << 17)) && zmm_state;
  bool tile_state = (lo & 0x60000u) == 0x60000u;  // XTILECFG, XTILEDATA
  f.amx_int8 = (d & (1u << 24)) && (d & (1u << 25)) && tile_state;
#endif
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

BackendSettings& mutable_settings() {
  static BackendSettings s;
  return s;
}

}  // namespace

void configure(const BackendSettings& settings) { mutable_settings() = settings; }
const BackendSettings& settings() { return mutable_settings(); }

bool has_avx2_fma() { return features().avx2_fma; }
bool has_avx2_fma_f16c() { return features().f16c; }
bool has_avx512_vnni() { return features().avx512_vnni; }
bool has_amx_int8() { return features().amx_int8; }

bool amx_enabled() {
  static const bool enabled = [] {
    const std::string& cap = settings().cpu_simd;
    if (!has_amx_int8() || simd_level() != SimdLevel::Avx512 || (!cap.empty() && cap != "amx")) return false;
#if defined(__x86_64__) && defined(__linux__)
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
#else
    return false;
#endif
  }();
  return enabled;
}

SimdLevel simd_level() {
  static const SimdLevel level = [] {
    const std::string& cap = settings().cpu_simd;
    SimdLevel best = has_avx512_vnni() ? SimdLevel::Avx512 : has_avx2_fma_f16c() ? SimdLevel::Avx2 : SimdLevel::Scalar;
    SimdLevel asked = cap == "scalar" ? SimdLevel::Scalar : cap == "avx2" ? SimdLevel::Avx2 : SimdLevel::Avx512;
    return std::min(best, asked);
  }();
  return level;
}

LlamaBuild llama_build() {
  static const LlamaBuild build = [] {
    const std::string& asked = settings().cpu_llama_build;
    if (asked == "avx2") return LlamaBuild::Avx2;
    if (asked == "avx512") return LlamaBuild::Avx512;
    return features().avx512_llama ? LlamaBuild::Avx512 : LlamaBuild::Avx2;
  }();
  return build;
}

}  // namespace lanes::cpu
