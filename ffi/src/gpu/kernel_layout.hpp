// Host-side layout logic shared by the GPU backends (CUDA, Metal): how a Command's strided and
// broadcast operands are described to a kernel, which kernel variant a dtype or row length
// takes, and the argument structs the kernels read. Backend-neutral; no device calls.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../command.hpp"

namespace lanes::gpu {

inline constexpr int kMaxDims = 32;

// The logical shape a kernel walks (row-major, the output's shape). Kernels repeat these
// structs word for word (64-bit integers, 8-byte aligned on every side).
struct KShape {
  int64_t nd;
  int64_t dims[kMaxDims];
};

// How one operand is read along KShape: element strides (0 = broadcast) and an offset.
struct KStrides {
  int64_t offset;
  int64_t s[kMaxDims];
};

// A Fused command as its kernel reads it (kernels repeat these structs word for word, with
// FUSED_STEPS and FUSED_DIMS from op_constants()): the walk in at most kMaxFusedDims dims, and
// per step kind (0 unary, 1 binary with input `operand`, 2 binary with `scalar`), sub-op, and
// whether the running value is the left operand. Small, because a launch copies it.
struct KFusedWalk {
  int64_t nd;
  int64_t dims[kMaxFusedDims];
  int64_t offset[kMaxFusedInputs];
  int64_t strides[kMaxFusedInputs][kMaxFusedDims];
};
struct KFused {
  int32_t steps;
  int8_t kind[kMaxFusedSteps];
  int8_t subop[kMaxFusedSteps];
  int8_t operand[kMaxFusedSteps];
  int8_t value_first[kMaxFusedSteps];
  float scalar[kMaxFusedSteps];
};
KFused fused_code(const Command& c);

// The op codes of lanes_table.def as preprocessor definitions (OP_EXP, OP_ADD, R_SUM, ...),
// put ahead of a kernel source compiled at run time so its constants cannot drift.
std::string op_constants();

// Kernel name suffix of a dtype ("f32", "f16", "bf16", "i32", "b8"), and of its element size.
const char* suffix(DType d);
std::string size_suffix(DType d);
// Kernel name suffix of an Attention command: its output's, then k's where that differs
// ("f32_f16": float32 queries over a float16 KV cache).
std::string attention_suffix(const Command& c);

// Whether `a`'s elements lie in row-major order from its address, as a kernel reading it as
// contiguous needs. The stride of a dim of size 1 is never stepped through, so it does not count:
// a decode step's [1, heads, 1, dim] view of [1, 1, heads, dim] reads in place.
bool is_contiguous(const TensorArg& a);
// Element strides that read `a` as if it had shape `out` (numpy broadcasting: zero strides).
Shape read_strides(const TensorArg& a, const Shape& out);

// A walk over `shape` reading K operands: size-1 dims dropped and dims merged wherever every
// operand steps through them as one, so most launches index 1-2 dims.
struct Walk {
  KShape shape{};
  std::vector<KStrides> strides;
  bool contiguous = true;  // every operand reads 0..n-1 from its offset
};
Walk collapse(const Shape& shape, const std::vector<Shape>& strides, const Shape& offsets);
// collapse() of every input of `c`, each read at the output's shape (broadcast).
Walk collapse_inputs(const Command& c);
// The walk of a Fused command (collapse_inputs()), compact.
KFusedWalk fused_walk(const Walk& w);

// The stored bits of `v` in dtype `d` (the CPU backend's conversion rules), for fills.
uint32_t storage_bits(DType d, double v);

// Threads per row (1, 32 or 256) for a row of `length` elements `inner` apart.
int group_for(int64_t length, int64_t inner);

// Batch dims of one operand as a single stride, if they collapse to one (or broadcast).
bool flat_batch_stride(const Shape& batch, const Shape& strides, int64_t& out);

// Reductions view their input as [outer, reduced, inner]; non-adjacent reduced axes are
// permuted to the end first (`permuted` then holds the shape and source strides to copy).
struct ReduceLayout {
  int64_t outer = 1, reduced = 1, inner = 1;
  bool permute = false;
  Shape permuted_shape;
  Shape permuted_strides;
};
ReduceLayout reduce_layout(const TensorArg& x, const std::vector<int>& axes);

// A per-row sliceUpdate (its third input holds an offset per leading entry): element e of the
// contiguous update, in leading entry b = e / per_entry, goes to target element
// ((b * A + a) * C + offsets[b] + t) * R + r, where e % per_entry = (a * U + t) * R + r.
struct RowWrite {
  int64_t n = 0;          // update elements
  int64_t per_entry = 0;  // update elements per leading entry
  int64_t U = 0, C = 0;   // update and target length along the axis
  int64_t R = 0;          // elements after the axis
};
RowWrite row_write(const Command& c);

// What a kernel's range check reports: a take index out of range (`what` null), or a per-row
// value `what` (a sliceUpdate offset, an attention key length) outside [0, limit].
std::string range_error(const char* what, int axis, int64_t limit, int64_t value);

}  // namespace lanes::gpu
