#include "libm.hpp"

#include <dlfcn.h>

#include <cmath>

namespace lanes::cpu {
namespace {

#if defined(__APPLE__)
constexpr const char* kLibm = "/usr/lib/libSystem.B.dylib";
#else
constexpr const char* kLibm = "libm.so.6";
#endif

template <class Fn>
Fn bind(void* lib, const char* name, Fn fallback) {
  void* p = lib ? dlsym(lib, name) : nullptr;
  return p ? reinterpret_cast<Fn>(p) : fallback;
}

float compiler_sin(float x) { return std::sin(x); }
float compiler_cos(float x) { return std::cos(x); }
float compiler_pow(float x, float y) { return std::pow(x, y); }

PlatformMath load() {
  void* lib = dlopen(kLibm, RTLD_NOW | RTLD_LOCAL);  // kept open for the process's lifetime
  return {bind(lib, "sinf", &compiler_sin), bind(lib, "cosf", &compiler_cos), bind(lib, "powf", &compiler_pow)};
}

}  // namespace

const PlatformMath& platform_math() {
  static const PlatformMath math = load();
  return math;
}

}  // namespace lanes::cpu
