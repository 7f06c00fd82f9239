// The platform C library's float math functions, called through pointers: Zig links its own
// compiler-runtime sinf, cosf and expf into liblanes, and those round differently from glibc's in
// about 1% of results. Kernels that must give llama.cpp's bits call these, as llama.cpp does.
#pragma once

namespace lanes::cpu {

struct PlatformMath {
  float (*sin)(float);
  float (*cos)(float);
  float (*pow)(float, float);
};

// Resolved once; a function the platform library does not export (or a platform whose library
// cannot be opened) falls back to the compiler's.
const PlatformMath& platform_math();

}  // namespace lanes::cpu
