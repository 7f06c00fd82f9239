// Argument structs shared by the host launcher and the CUDA kernels. Both sides are 64-bit
// with 8-byte int64 alignment, so these plain structs have one layout on each side. The
// kernel source (kernels_source.cpp) repeats them word for word; keep the two in sync.
#pragma once
#include <cstdint>

namespace lanes::cuda {

inline constexpr int kMaxDims = 32;

// The logical shape a kernel walks (row-major, the output's shape).
struct KShape {
  int64_t nd;
  int64_t dims[kMaxDims];
};

// How one operand is read along KShape: element strides (0 = broadcast) and an offset.
struct KStrides {
  int64_t offset;
  int64_t s[kMaxDims];
};

}  // namespace lanes::cuda
