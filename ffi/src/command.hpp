// What the planner hands a backend: one kernel launch, fully described, holding its buffers
// alive until the epoch that carries it completes.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "buffer.hpp"
#include "dtype.hpp"
#include "shape.hpp"

namespace lanes {

enum class OpCode : int {
  FromData,  // never executed: data is uploaded at creation
  Full,
  Arange,
  Random,
  Unary,
  Binary,
  Matmul,
  Reduce,
  Softmax,
  AsType,
  Where,
  View,         // no kernel: shares its input's buffer through a strided layout
  Concatenate,  // params.axis
  Take,         // params.axis; inputs: array, int32 indices
  RmsNorm,      // inputs: x, weight?; scalars[0] = eps; flags & 1: has weight
  LayerNorm,    // inputs: x, weight?, bias?; scalars[0] = eps; flags & 1: weight, & 2: bias
  Attention,    // inputs: q, k, v; scalars[0] = scale; flags & 1: causal
  Rope,         // scalars: base, scale; axis = dims; offset = first position; flags & 1: traditional
  Download,     // a read on the stream: the input's bytes into params.host_staging (see Backend::read_staging)
};

const char* op_name(OpCode op, int subop);

struct OpParams {
  int subop = 0;               // lanes_unary_op / lanes_binary_op / lanes_reduce_op / lanes_random_kind
  std::vector<int> axes;       // Reduce: sorted, normalized
  int axis = 0;                // Softmax: normalized
  double scalars[3] = {0, 0, 0};  // Full: value; Arange: start, step; Random: a, b
  uint64_t seed = 0;           // Random
  int flags = 0;               // fused ops
  int64_t offset = 0;          // Rope
  std::shared_ptr<void> host_staging;  // Download: host memory the device writes; the reader copies it out
};

// A tensor as a kernel reads it: a buffer, plus a strided view of it (element strides and
// offset). Empty strides mean contiguous.
struct TensorArg {
  std::shared_ptr<Buffer> buffer;
  Shape shape;
  DType dtype = DType::Float32;
  std::vector<int64_t> strides;
  int64_t offset = 0;
};

struct Command {
  OpCode op = OpCode::Full;
  OpParams params;
  std::vector<TensorArg> inputs;
  TensorArg output;
};

}  // namespace lanes
