// What the core hands a backend: one operation, fully described, with plain pointers to its
// memory. The core keeps that memory alive until the epoch that carries the command completed.
#pragma once
#include <cstdint>
#include <vector>

#include "dtype.hpp"
#include "shape.hpp"

namespace lanes {

enum class OpCode : int {
#define LANES_KIND(NAME, name, arity) NAME,
#include "lanes_table.def"
};

// The user-facing name of an op ("exp", "matmul", "random.normal").
const char* op_name(OpCode op, int subop);
// Inputs a node of this kind takes (-1: any number).
int op_arity(OpCode op);

// Scalar parameters a compiled plan may take.
inline constexpr int kMaxPlanScalars = 16;

struct OpParams {
  int subop = 0;               // the sub-op code of Unary, Binary, BinaryScalar, Reduce and Random
  std::vector<int> axes;       // Reduce: sorted, normalized
  int axis = 0;                // Softmax, Concatenate, Take, SliceUpdate: normalized; Rope: dims
  // Full: value. Arange: start, step. Random: a, b. BinaryScalar: the scalar. Norms: eps.
  // Attention: scale, key length. Rope: base, scale, position offset. SliceUpdate: offset.
  double scalars[3] = {0, 0, 0};
  // The plan parameter each scalar is bound to while a compiled plan replays (-1: fixed).
  int8_t dynamic[3] = {-1, -1, -1};
  uint64_t seed = 0;           // Random
  // BinaryScalar: 1 = the scalar is the left operand. Norms: 1 weight, 2 bias. Attention:
  // 1 causal. Rope: 1 traditional.
  int flags = 0;
  void* host_staging = nullptr;  // Download: host memory the device writes
};

// A tensor as a kernel reads it: the base of its buffer plus a strided view of it (element
// strides and offset). Empty strides mean contiguous.
struct TensorArg {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::Float32;
  Shape strides;
  int64_t offset = 0;
};

struct Command {
  OpCode op = OpCode::Full;
  OpParams params;
  std::vector<TensorArg> inputs;
  TensorArg output;
};

}  // namespace lanes
