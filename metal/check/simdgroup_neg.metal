// Five planted misuses of the SIMD-group matrix API that metal/check/simdgroup_matrix.h must
// reject, as Apple's compiler does (metal/check/run.sh counts the errors).
#include <metal_stdlib>
#include "simdgroup_matrix.h"
using namespace metal;
kernel void k(device float* out [[buffer(0)]], constant float* c [[buffer(1)]]) {
  threadgroup float tf[64];
  threadgroup int ti[64];
  simdgroup_float8x8 m = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  simdgroup_load(m, tf, 8);                        // fine
  simdgroup_load(m, c, 8);                         // no load from constant memory
  simdgroup_load(m, ti, 8);                        // int elements into a float matrix
  const threadgroup float* ctf = tf;
  simdgroup_store(m, ctf, 8);                      // store through a const pointer
  simdgroup_matrix<float, 4, 8> narrow;
  simdgroup_multiply_accumulate(m, narrow, m, m);  // inner dimensions 4 and 8 differ
  simdgroup_matrix<half, 8, 8> h;
  simdgroup_multiply_accumulate(m, h, m, m);       // half and float operands
  simdgroup_store(m, out, 8);                      // fine
}
