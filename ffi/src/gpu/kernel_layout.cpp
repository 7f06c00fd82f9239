#include "kernel_layout.hpp"

#include <algorithm>
#include <cstring>

#include "../dtype.hpp"
#include "../status.hpp"

namespace lanes::gpu {

std::string op_constants() {
  return
#define LANES_UNARY(code, NAME, name, rule) "#define OP_" #NAME " " #code "\n"
#include "lanes_table.def"
#define LANES_BINARY(code, NAME, name, rule) "#define OP_" #NAME " " #code "\n"
#include "lanes_table.def"
#define LANES_REDUCE(code, NAME, name, rule) "#define R_" #NAME " " #code "\n"
#include "lanes_table.def"
#define LANES_RANDOM(code, NAME, name) "#define RANDOM_" #NAME " " #code "\n"
#include "lanes_table.def"
      "#define FUSED_STEPS " + std::to_string(kMaxFusedSteps) + "\n#define FUSED_DIMS " + std::to_string(kMaxFusedDims) +
      "\n#define FUSED_INPUTS " + std::to_string(kMaxFusedInputs) + "\n";
}

KFused fused_code(const Command& c) {
  const std::vector<FusedStep>& program = *c.params.fused;
  if (program.empty() || program.size() > size_t(kMaxFusedSteps) || c.inputs.empty() || c.inputs.size() > size_t(kMaxFusedInputs))
    throw_error(LANES_ERR_INTERNAL, "gpu: a fused command of " + std::to_string(program.size()) + " steps and " +
                                        std::to_string(c.inputs.size()) + " inputs");
  KFused k{};
  k.steps = static_cast<int32_t>(program.size());
  for (size_t i = 0; i < program.size(); ++i) {
    const FusedStep& f = program[i];
    k.kind[i] = static_cast<int8_t>(f.op == OpCode::Unary ? 0 : f.op == OpCode::Binary ? 1 : 2);
    k.subop[i] = static_cast<int8_t>(f.subop);
    k.operand[i] = static_cast<int8_t>(f.operand);
    k.value_first[i] = f.value_first ? 1 : 0;
    k.scalar[i] = f.scalar;
  }
  return k;
}

const char* suffix(DType d) {
  switch (d) {
    case DType::Float32: return "f32";
    case DType::Float16: return "f16";
    case DType::BFloat16: return "bf16";
    case DType::Int32: return "i32";
    case DType::Bool: return "b8";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
    case DType::Q8_0: return "q8_0";
  }
  throw_error(LANES_ERR_INTERNAL, "gpu: unknown dtype");
}

std::string attention_suffix(const Command& c) {
  DType out = c.output.dtype, kv = c.inputs[1].dtype;
  return out == kv ? suffix(out) : std::string(suffix(out)) + "_" + suffix(kv);
}

std::string size_suffix(DType d) { return std::to_string(dtype_size(d)); }

bool is_contiguous(const TensorArg& a) {
  if (a.strides.empty()) return true;
  int64_t step = 1;
  for (size_t i = a.shape.size(); i-- > 0;) {
    if (a.shape[i] != 1 && a.strides[i] != step) return false;
    step *= a.shape[i];
  }
  return true;
}

// Element strides that read `a` as if it had shape `out` (numpy broadcasting: zero strides).
Shape read_strides(const TensorArg& a, const Shape& out) {
  Shape own = a.strides.empty() ? contiguous_strides(a.shape) : a.strides;
  Shape st(out.size(), 0);
  size_t off = out.size() - a.shape.size();
  for (size_t i = 0; i < a.shape.size(); ++i) st[off + i] = a.shape[i] == 1 ? 0 : own[i];
  return st;
}

Walk collapse(const Shape& shape, const std::vector<Shape>& strides, const Shape& offsets) {
  size_t k = strides.size();
  Shape dims;
  std::vector<Shape> st(k);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !dims.empty();
    for (size_t j = 0; j < k && merge; ++j) merge = st[j].back() == strides[j][d] * shape[d];
    if (merge) {
      dims.back() *= shape[d];
      for (size_t j = 0; j < k; ++j) st[j].back() = strides[j][d];
    } else {
      dims.push_back(shape[d]);
      for (size_t j = 0; j < k; ++j) st[j].push_back(strides[j][d]);
    }
  }
  if (dims.size() > static_cast<size_t>(kMaxDims)) throw_error(LANES_ERR_INTERNAL, "gpu: too many dimensions after collapsing");
  Walk w;
  w.shape.nd = static_cast<int64_t>(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) w.shape.dims[d] = dims[d];
  w.strides.resize(k);
  for (size_t j = 0; j < k; ++j) {
    w.strides[j].offset = offsets[j];
    for (size_t d = 0; d < dims.size(); ++d) w.strides[j].s[d] = st[j][d];
    if (dims.size() > 1 || (dims.size() == 1 && st[j][0] != 1)) w.contiguous = false;
  }
  return w;
}

Walk collapse_inputs(const Command& c) {
  const Shape& s = c.output.shape;
  std::vector<Shape> strides;
  Shape offsets;
  for (const TensorArg& in : c.inputs) {
    strides.push_back(read_strides(in, s));
    offsets.push_back(in.offset);
  }
  return collapse(s, strides, offsets);
}

KFusedWalk fused_walk(const Walk& w) {
  if (w.shape.nd > kMaxFusedDims || w.strides.size() > size_t(kMaxFusedInputs))
    throw_error(LANES_ERR_INTERNAL, "gpu: a fused command walks " + std::to_string(w.shape.nd) + " dims");
  KFusedWalk k{};
  k.nd = w.shape.nd;
  for (int64_t d = 0; d < w.shape.nd; ++d) k.dims[d] = w.shape.dims[d];
  for (size_t j = 0; j < w.strides.size(); ++j) {
    k.offset[j] = w.strides[j].offset;
    for (int64_t d = 0; d < w.shape.nd; ++d) k.strides[j][d] = w.strides[j].s[d];
  }
  return k;
}

uint32_t storage_bits(DType d, double v) {
  switch (d) {
    case DType::Float32: {
      float f = static_cast<float>(v);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      return u;
    }
    case DType::Float16: return to_f16(static_cast<float>(v)).bits;
    case DType::BFloat16: return to_bf16(static_cast<float>(v)).bits;
    case DType::Bool: return v != 0 ? 1 : 0;
    case DType::Int32: {
      int32_t i = v != v ? 0 : v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : static_cast<int32_t>(v);
      return static_cast<uint32_t>(i);
    }
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q8_0: break;
  }
  throw_error(LANES_ERR_INTERNAL, std::string("gpu: no fill value for ") + dtype_name(d));
}

// One thread for short rows (or strided rows, where neighbouring threads read neighbouring
// columns), a warp, or a whole block for long rows.
int group_for(int64_t length, int64_t inner) {
  if (inner > 1 || length < 32) return 1;
  return length >= 1024 ? 256 : 32;
}

bool flat_batch_stride(const Shape& batch, const Shape& strides, int64_t& out) {
  int64_t stride = 0;
  bool first = true;
  int64_t expect = 0;
  for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
    if (batch[d] == 1) continue;
    if (first) {
      stride = strides[d];
      expect = stride * batch[d];
      first = false;
    } else {
      if (strides[d] != expect) return false;
      expect = strides[d] * batch[d];
    }
  }
  out = stride;
  return true;
}

ReduceLayout reduce_layout(const TensorArg& x, const std::vector<int>& axes) {
  const Shape& s = x.shape;
  int nd = static_cast<int>(s.size());
  ReduceLayout L;
  bool adjacent = axes.empty() || axes.back() - axes.front() + 1 == static_cast<int>(axes.size());
  if (adjacent) {
    int first = axes.empty() ? nd : axes.front(), last = axes.empty() ? nd : axes.back() + 1;
    for (int d = 0; d < first; ++d) L.outer *= s[d];
    for (int d = first; d < last; ++d) L.reduced *= s[d];
    for (int d = last; d < nd; ++d) L.inner *= s[d];
    return L;
  }
  L.permute = true;
  Shape in_strides = read_strides(x, s);
  std::vector<int> order;
  for (int d = 0; d < nd; ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d)) order.push_back(d);
  for (int d : axes) order.push_back(d);
  for (int d : order) {
    L.permuted_shape.push_back(s[d]);
    L.permuted_strides.push_back(in_strides[d]);
  }
  for (int d : axes) L.reduced *= s[d];
  for (int d = 0; d < nd; ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d)) L.outer *= s[d];
  return L;
}

RowWrite row_write(const Command& c) {
  const Shape &target = c.inputs[0].shape, &update = c.inputs[1].shape;
  size_t axis = static_cast<size_t>(c.params.axis);
  RowWrite w;
  w.n = numel(update);
  w.per_entry = target[0] ? w.n / target[0] : 0;
  w.U = update[axis];
  w.C = target[axis];
  w.R = 1;
  for (size_t d = axis + 1; d < update.size(); ++d) w.R *= update[d];
  return w;
}

std::string range_error(const char* what, int axis, int64_t limit, int64_t value) {
  if (!what)
    return "take: index " + std::to_string(value) + " is out of range for axis " + std::to_string(axis) + " of size " + std::to_string(limit);
  return std::string(what) + " " + std::to_string(value) + " is out of range [0, " + std::to_string(limit) + "]";
}

}  // namespace lanes::gpu
