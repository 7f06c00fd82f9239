// The interface between metal/check/matmul_emulation.cpp (cases, reference, threads) and
// metal/check/matmul_emulation_kernels.cpp (the kernels, compiled against the MSL stand-in, which
// must see no standard header: their math overloads would clash with MSL's).
#pragma once
#include "../kernel_params.hpp"

enum class EmulatedDType { f32, f16, bf16 };

struct EmulatedMatmul {
  EmulatedDType dtype;
  bool simdgroup;  // matmul_simdgroup_impl (128 threads, 32x32 tiles), else matmul_impl (256, 16x16)
  void* y;
  const void* a;
  const void* b;
  const MatmulParams* params;
};

// The kernels' side. Runs GPU thread `tid` of threadgroup `group`; all threads of the group run at
// once. `threadgroup_memory` holds emulated_threadgroup_floats() floats.
void emulate_matmul_thread(const EmulatedMatmul& m, unsigned tid, const unsigned group[3], float* threadgroup_memory);
unsigned emulated_threadgroup_floats(bool simdgroup);

// The driver's side, for the calling GPU thread: meet the rest of its threadgroup (threadgroup_barrier),
// and its lane in its SIMD-group.
void emulated_threadgroup_barrier();
unsigned emulated_simd_lane();
