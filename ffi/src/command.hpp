// What the core hands a backend: one operation, fully described, with plain pointers to its
// memory. The core keeps that memory alive until the epoch that carries the command completed.
#pragma once
#include <cstdint>
#include <memory>
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

// A compiled plan runs a chain of float32 elementwise ops whose intermediates nothing else
// reads as one Fused command: one kernel, one pass over memory. The running value starts as
// input 0 read at the output's shape, and each step replaces it with the result its op alone
// would have stored, so a fused chain is bitwise equal to its ops run one by one.
inline constexpr int kMaxFusedInputs = 4;
inline constexpr int kMaxFusedSteps = 16;
inline constexpr int kMaxFusedDims = 6;  // so a kernel's parameters stay small: launches cost less
struct FusedStep {
  OpCode op = OpCode::Unary;  // Unary, Binary (arithmetic) or BinaryScalar (arithmetic)
  int subop = 0;
  int operand = 0;          // Binary: the command input on the other side
  bool value_first = true;  // Binary, BinaryScalar: the running value is the left operand
  float scalar = 0;         // BinaryScalar: the scalar as float32 holds it
};

// Every graph node carries one: the small fields come first, so that none pads the struct.
struct OpParams {
  int subop = 0;               // the sub-op code of Unary, Binary, BinaryScalar, Reduce and Random
  int axis = 0;                // Softmax, Concatenate, Take, SliceUpdate: normalized; Rope: dims
  // BinaryScalar: 1 = the scalar is the left operand. Norms: 1 weight, 2 bias. Attention:
  // 1 causal. Rope: 1 traditional.
  int flags = 0;
  // The plan parameter each scalar is bound to while a compiled plan replays (-1: fixed).
  int8_t dynamic[3] = {-1, -1, -1};
  // Full: value. Arange: start, step. Random: a, b. BinaryScalar: the scalar. Norms: eps.
  // Attention: scale, key length. Rope: base, scale, position offset. SliceUpdate: offset.
  double scalars[3] = {0, 0, 0};
  uint64_t seed = 0;           // Random
  std::vector<int> axes;       // Reduce: sorted, normalized
  void* host_staging = nullptr;  // Download: host memory the device writes
  std::shared_ptr<const std::vector<FusedStep>> fused;  // Fused: its steps, in order
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

// A Matmul command may carry an epilogue (a compiled plan's doing, Backend::matmul_epilogue):
// params.fused is an elementwise chain whose input 0 is the product and whose inputs 1.. are the
// command's inputs after a and b; the output holds the chain's result.
struct Command {
  OpCode op = OpCode::Full;
  OpParams params;
  std::vector<TensorArg> inputs;
  TensorArg output;
};

// A QuantizedMatmul command may carry an rmsNorm prologue (a compiled plan's doing,
// Backend::matmul_norm_prologue): with params.flags & kNormPrologue, its product is of
// rmsNorm(input 0, input 2, eps = params.scalars[0]), input 2 the norm's float32 weight, and it
// has no epilogue.
constexpr int kNormPrologue = 1;

// A QuantizedMatmul command may carry a gated pair epilogue instead (a compiled plan's doing,
// Backend::matmul_pair_epilogue): with params.flags & kPairEpilogue, its weights have 2h rows,
// params.fused is a chain of two inputs, the product's columns [0, h) (input 0) and [h, 2h)
// (input 1), and the output [..., h] holds the chain's result, as in a gated MLP's
// silu(gate) * up. The product itself is never stored; the command has no inputs after the
// weights but a folded norm's.
constexpr int kPairEpilogue = 2;

// A matmul's epilogue as the Fused command it would be run alone: input 0 is the product, read
// from the output (in place: element i of the chain reads only element i of input 0). Not a
// pair epilogue's chain, whose inputs are the product's halves and never the output.
inline Command epilogue_command(const Command& matmul) {
  Command chain;
  chain.op = OpCode::Fused;
  chain.params.fused = matmul.params.fused;
  chain.inputs.push_back(matmul.output);
  chain.inputs.insert(chain.inputs.end(), matmul.inputs.begin() + 2, matmul.inputs.end());
  chain.output = matmul.output;
  return chain;
}

}  // namespace lanes
