// Which backend kernel translates each op. CUDA and Metal name their op functions alike (full,
// binary, norm, ...) and declare them in the namespace of their context type, where this
// template finds them by argument-dependent lookup: one switch for every GPU backend, so an op
// added to the table is missed by no backend and none silently falls through to another op's
// kernel. A backend without a Download command (read_staging gives no memory) defines a
// `download` that reports it.
#pragma once
#include <string>

#include "../backend.hpp"
#include "../status.hpp"

namespace lanes::gpu {

template <class Context>
void translate_op(const Command& c, Context& ctx, const char* backend) {
  switch (c.op) {
    case OpCode::Full: return full(c, ctx);
    case OpCode::Arange: return arange(c, ctx);
    case OpCode::Random: return random(c, ctx);
    case OpCode::Unary: return unary(c, ctx);
    case OpCode::Binary: return binary(c, ctx);
    case OpCode::BinaryScalar: return binary_scalar(c, ctx);
    case OpCode::Fused: return fused(c, ctx);
    case OpCode::SliceUpdate: return slice_update(c, ctx);
    case OpCode::Where: return where(c, ctx);
    case OpCode::AsType: return astype(c, ctx);
    case OpCode::Matmul: return matmul(c, ctx);
    case OpCode::QuantizedMatmul: return quantized_matmul(c, ctx);
    case OpCode::Reduce: return reduce(c, ctx);
    case OpCode::Softmax: return softmax(c, ctx);
    case OpCode::Concatenate: return concatenate(c, ctx);
    case OpCode::Take: return take(c, ctx);
    case OpCode::RmsNorm: return norm(c, ctx, false);
    case OpCode::LayerNorm: return norm(c, ctx, true);
    case OpCode::Attention: return attention(c, ctx);
    case OpCode::Rope: return rope(c, ctx);
    case OpCode::Download: return download(c, ctx);
    // Never a command: data arrives by upload, views share their source's memory, and the core
    // resolves placeholders and plan outputs.
    case OpCode::FromData:
    case OpCode::View:
    case OpCode::Placeholder:
    case OpCode::PlanOutput: break;
  }
  throw_error(LANES_ERR_INTERNAL, std::string(backend) + " backend: no kernel for " + op_name(c.op, c.params.subop));
}

}  // namespace lanes::gpu
