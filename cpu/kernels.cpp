#include "kernels.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "../ffi/src/status.hpp"
#include "attention.hpp"
#include "compute_pool.hpp"
#include "philox.hpp"
#include "quant.hpp"
#include "sgemm.hpp"
#include "cpu_features.hpp"
#include "libm.hpp"
#include "reduce_simd.hpp"
#include "row_exp_simd.hpp"
#include "tensor_access.hpp"

namespace lanes::cpu {
namespace {

// double -> storage type T with defined behaviour for every input: int32 saturates (NaN to 0),
// bool is "not zero" (NaN is true), halves round to nearest even.
template <class T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, int32_t>) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return static_cast<int32_t>(v);
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    return v != 0 ? 1 : 0;
  } else {
    return down<T>(static_cast<float>(v));
  }
}

template <class T>
double to_double(T v) {
  return static_cast<double>(up(v));
}

// Runs `kernel<T>` for the floating storage types.
template <template <class> class Kernel>
void floating_only(const Command& c) {
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || is_half_v<T>) Kernel<T>::run(c);
    else throw_error(LANES_ERR_INTERNAL, std::string(op_name(c.op, c.params.subop)) + ": non-floating dtype reached the kernel");
  });
}

// ---- creation ----------------------------------------------------------------------------------

void full(const Command& c) {
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    T v = from_double<T>(c.params.scalars[0]);
    T* out = output<T>(c);
    parallel_for(numel(c.output.shape), kElementGrain, [&](int64_t b, int64_t e) { std::fill(out + b, out + e, v); });
  });
}

void arange(const Command& c) {
  double start = c.params.scalars[0], step = c.params.scalars[1];
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = output<T>(c);
    parallel_for(numel(c.output.shape), kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = from_double<T>(start + static_cast<double>(i) * step);
    });
  });
}

void random(const Command& c) {
  float* out = output<float>(c);
  int64_t n = numel(c.output.shape);
  std::array<uint32_t, 2> key = {uint32_t(c.params.seed), uint32_t(c.params.seed >> 32)};
  double a = c.params.scalars[0], b = c.params.scalars[1];
  constexpr double k2pow32 = 4294967296.0;
  bool normal = c.params.subop == LANES_RANDOM_NORMAL;
  // Counter j yields elements 2j and 2j+1 (a Box-Muller pair for normal).
  int64_t pairs = (n + 1) / 2;
  parallel_for(pairs, kElementGrain / 2, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) {
      auto r = philox4x32({uint32_t(j), uint32_t(uint64_t(j) >> 32), 0, 0}, key);
      double u1 = (double(r[0]) + 0.5) / k2pow32;  // (0, 1)
      double u2 = (double(r[1]) + 0.5) / k2pow32;
      double v0, v1;
      if (normal) {
        double radius = std::sqrt(-2.0 * std::log(u1));
        double angle = 2.0 * M_PI * u2;
        v0 = a + b * radius * std::cos(angle);
        v1 = a + b * radius * std::sin(angle);
      } else {
        v0 = a + (b - a) * (double(r[0]) / k2pow32);
        v1 = a + (b - a) * (double(r[1]) / k2pow32);
      }
      out[2 * j] = static_cast<float>(v0);
      if (2 * j + 1 < n) out[2 * j + 1] = static_cast<float>(v1);
    }
  });
}

// ---- elementwise ------------------------------------------------------------------------------

int32_t unary_int(int op, int32_t x) {
  uint32_t u = static_cast<uint32_t>(x);  // wrap-around like int32 arithmetic, no signed UB
  switch (op) {
    case LANES_OP_ABS: return x < 0 ? static_cast<int32_t>(0u - u) : x;
    case LANES_OP_SQUARE: return static_cast<int32_t>(u * u);
    case LANES_OP_NEGATIVE: return static_cast<int32_t>(0u - u);
    default: throw_error(LANES_ERR_INTERNAL, std::string("cpu: ") + op_name(OpCode::Unary, op) + " of int32 reached the kernel");
  }
}

float unary_float(int op, float x) {
  switch (op) {
    case LANES_OP_EXP: return std::exp(x);
    case LANES_OP_LOG: return std::log(x);
    case LANES_OP_NEGATIVE: return -x;
    case LANES_OP_ABS: return std::fabs(x);
    case LANES_OP_SQUARE: return x * x;
    case LANES_OP_SQRT: return std::sqrt(x);
    case LANES_OP_RSQRT: return 1.0f / std::sqrt(x);
    case LANES_OP_TANH: return std::tanh(x);
    case LANES_OP_SIGMOID: return 1.0f / (1.0f + std::exp(-x));
    // llama.cpp's SwiGLU takes libm's expf for the last n % 16 elements of a row instead; the
    // hidden sizes of real models are multiples of 16.
    case LANES_OP_SILU: return silu(x);
    case LANES_OP_GELU: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case LANES_OP_GELU_APPROX: {
      float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(inner));
    }
    case LANES_OP_SIN: return std::sin(x);
    case LANES_OP_COS: return std::cos(x);
    default: throw_error(LANES_ERR_INTERNAL, "cpu: unknown unary op " + std::to_string(op));
  }
}

// One loop per (storage type, op), so each inner loop is a plain map the compiler can vectorize.
template <class T, int Op>
void unary_rows(const Command& c) {
  const TensorArg& in = c.inputs[0];
  const T* x = base<T>(in);
  T* y = output<T>(c);
  std::array<Shape, 1> st{read_strides(in, c.output.shape)};
  int64_t inner = c.output.shape.empty() ? 0 : st[0].back();
  for_each_row<1>(c.output.shape, st, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n) {
    const T* xr = x + off[0];
    if constexpr (std::is_same_v<T, float> && Op == LANES_OP_SILU)
      if (inner == 1 && silu_row_simd(xr, y + o, n)) return;
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, int32_t>) y[o + i] = unary_int(Op, xr[i * inner]);
      else y[o + i] = down<T>(unary_float(Op, up(xr[i * inner])));
    }
  });
}

template <class T, int... Ops>
void unary_dispatch(const Command& c, std::integer_sequence<int, Ops...>) {
  using Kernel = void (*)(const Command&);
  static constexpr Kernel table[] = {&unary_rows<T, Ops>...};
  table[c.params.subop](c);
}

void unary(const Command& c) {
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t>) throw_error(LANES_ERR_INTERNAL, "unary: bool input reached the kernel");
    else unary_dispatch<T>(c, std::make_integer_sequence<int, LANES_OP_COS + 1>{});
  });
}

template <class T>
T apply_binary(int op, T a, T b) {
  switch (op) {
    case LANES_OP_ADD: return a + b;
    case LANES_OP_SUBTRACT: return a - b;
    case LANES_OP_MULTIPLY: return a * b;
    case LANES_OP_DIVIDE: return a / b;
    case LANES_OP_POWER: return std::pow(a, b);
    case LANES_OP_MINIMUM:
      if (a != a || b != b) return std::numeric_limits<T>::quiet_NaN();
      return a < b ? a : b;
    case LANES_OP_MAXIMUM:
      if (a != a || b != b) return std::numeric_limits<T>::quiet_NaN();
      return a > b ? a : b;
    default: throw_error(LANES_ERR_INTERNAL, std::string("cpu: ") + op_name(OpCode::Binary, op) + " reached the arithmetic kernel");
  }
}

template <>
int32_t apply_binary<int32_t>(int op, int32_t a, int32_t b) {
  // Wrap-around integer arithmetic, as numpy and MLX do, without signed-overflow UB.
  uint32_t ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b);
  switch (op) {
    case LANES_OP_ADD: return static_cast<int32_t>(ua + ub);
    case LANES_OP_SUBTRACT: return static_cast<int32_t>(ua - ub);
    case LANES_OP_MULTIPLY: return static_cast<int32_t>(ua * ub);
    case LANES_OP_MINIMUM: return a < b ? a : b;
    case LANES_OP_MAXIMUM: return a > b ? a : b;
    default:  // divide and power are float-only (promoted in the graph)
      throw_error(LANES_ERR_INTERNAL, std::string("cpu: ") + op_name(OpCode::Binary, op) + " of int32 reached the kernel");
  }
}

template <class T, int Op>
void binary_typed(const Command& c) {
  constexpr bool comparison = Op >= LANES_OP_EQUAL;
  using Out = std::conditional_t<comparison, uint8_t, T>;
  const T* a = base<T>(c.inputs[0]);
  const T* b = base<T>(c.inputs[1]);
  Out* y = output<Out>(c);
  std::array<Shape, 2> st{read_strides(c.inputs[0], c.output.shape), read_strides(c.inputs[1], c.output.shape)};
  int64_t sa = c.output.shape.empty() ? 0 : st[0].back(), sb = c.output.shape.empty() ? 0 : st[1].back();
  for_each_row<2>(c.output.shape, st, [&](int64_t o, const std::array<int64_t, 2>& off, int64_t n) {
    const T* ar = a + off[0];
    const T* br = b + off[1];
    for (int64_t i = 0; i < n; ++i) {
      auto av = up(ar[i * sa]);
      auto bv = up(br[i * sb]);
      if constexpr (Op == LANES_OP_EQUAL) y[o + i] = av == bv;
      else if constexpr (Op == LANES_OP_LESS) y[o + i] = av < bv;
      else if constexpr (Op == LANES_OP_GREATER) y[o + i] = av > bv;
      else y[o + i] = down<T>(apply_binary<decltype(av)>(Op, av, bv));
    }
  });
}

template <class T, int... Ops>
void binary_dispatch(const Command& c, std::integer_sequence<int, Ops...>) {
  using Kernel = void (*)(const Command&);
  static constexpr Kernel table[] = {&binary_typed<T, Ops>...};
  table[c.params.subop](c);
}

void binary(const Command& c) {
  dispatch(c.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t>) {
      // Bools only compare (the graph promotes bool arithmetic to int32).
      switch (c.params.subop) {
        case LANES_OP_EQUAL: return binary_typed<T, LANES_OP_EQUAL>(c);
        case LANES_OP_LESS: return binary_typed<T, LANES_OP_LESS>(c);
        case LANES_OP_GREATER: return binary_typed<T, LANES_OP_GREATER>(c);
        default: throw_error(LANES_ERR_INTERNAL, "binary: bool arithmetic reached the kernel");
      }
    } else {
      binary_dispatch<T>(c, std::make_integer_sequence<int, LANES_OP_GREATER + 1>{});
    }
  });
}

template <class T, int Op>
void binary_scalar_typed(const Command& c) {
  constexpr bool comparison = Op >= LANES_OP_EQUAL;
  using Out = std::conditional_t<comparison, uint8_t, T>;
  const T* a = base<T>(c.inputs[0]);
  Out* y = output<Out>(c);
  // The scalar as the array's type holds it, as if it were an array of that type.
  const auto s = up(from_double<T>(c.params.scalars[0]));
  const bool scalar_first = c.params.flags & 1;
  std::array<Shape, 1> st{read_strides(c.inputs[0], c.output.shape)};
  int64_t sa = c.output.shape.empty() ? 0 : st[0].back();
  for_each_row<1>(c.output.shape, st, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n) {
    const T* ar = a + off[0];
    for (int64_t i = 0; i < n; ++i) {
      auto av = up(ar[i * sa]);
      auto l = scalar_first ? s : av;
      auto r = scalar_first ? av : s;
      if constexpr (Op == LANES_OP_EQUAL) y[o + i] = l == r;
      else if constexpr (Op == LANES_OP_LESS) y[o + i] = l < r;
      else if constexpr (Op == LANES_OP_GREATER) y[o + i] = l > r;
      else y[o + i] = down<T>(apply_binary<decltype(av)>(Op, l, r));
    }
  });
}

template <class T, int... Ops>
void binary_scalar_dispatch(const Command& c, std::integer_sequence<int, Ops...>) {
  using Kernel = void (*)(const Command&);
  static constexpr Kernel table[] = {&binary_scalar_typed<T, Ops>...};
  table[c.params.subop](c);
}

void binary_scalar(const Command& c) {
  dispatch(c.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, uint8_t>) throw_error(LANES_ERR_INTERNAL, "binary: a bool operand reached the scalar kernel");
    else binary_scalar_dispatch<T>(c, std::make_integer_sequence<int, LANES_OP_GREATER + 1>{});
  });
}

// ---- fused elementwise chains ------------------------------------------------------------------

// A fused chain runs step by step over a span of running values held in the output row, one
// plain loop per op, with the same float32 operations its ops run alone.
constexpr int64_t kFusedSpan = 1024;

template <int Op>
void unary_span(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = unary_float(Op, v[i]);
}

// A contiguous operand and a broadcast one (a bias along a row, a scalar) get loops of their
// own, which the compiler vectorizes.
template <int Op>
__attribute__((always_inline)) inline void binary_span(float* v, const float* other, int64_t stride, int64_t n, bool value_first) {
  if (stride == 1) {
    if (value_first)
      for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, v[i], other[i]);
    else
      for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, other[i], v[i]);
  } else if (stride == 0) {
    const float o = *other;
    if (value_first)
      for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, v[i], o);
    else
      for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, o, v[i]);
  } else if (value_first) {
    for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, v[i], other[i * stride]);
  } else {
    for (int64_t i = 0; i < n; ++i) v[i] = apply_binary<float>(Op, other[i * stride], v[i]);
  }
}

template <int... Ops>
void unary_span_by_op(int op, float* v, int64_t n, std::integer_sequence<int, Ops...>) {
  using Span = void (*)(float*, int64_t);
  static constexpr Span table[] = {&unary_span<Ops>...};
  table[op](v, n);
}

template <int... Ops>
void binary_span_by_op(int op, float* v, const float* other, int64_t stride, int64_t n, bool value_first,
                       std::integer_sequence<int, Ops...>) {
  using Span = void (*)(float*, const float*, int64_t, int64_t, bool);
  static constexpr Span table[] = {&binary_span<Ops>...};
  table[op](v, other, stride, n, value_first);
}

// Rows are short here (under kFusedSpan elements), so a contiguous operand's loop runs one
// vector per iteration: the 4-vector loop binary_span's vectorizes into (with AVX2) would leave
// a 16-float row to its scalar remainder.
#if defined(__clang__)
#define LANES_ONE_VECTOR_PER_ITERATION _Pragma("clang loop interleave_count(1)")
#else
#define LANES_ONE_VECTOR_PER_ITERATION
#endif
template <int Op>
void binary_rows_span(float* v, int64_t row_stride, const float* other, int64_t other_row_stride, int64_t stride, int64_t rows,
                      int64_t n, bool value_first) {
  if (stride != 1) {
    for (int64_t r = 0; r < rows; ++r) binary_span<Op>(v + r * row_stride, other + r * other_row_stride, stride, n, value_first);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* vr = v + r * row_stride;
    const float* o = other + r * other_row_stride;
    if (value_first) {
      LANES_ONE_VECTOR_PER_ITERATION
      for (int64_t i = 0; i < n; ++i) vr[i] = apply_binary<float>(Op, vr[i], o[i]);
    } else {
      LANES_ONE_VECTOR_PER_ITERATION
      for (int64_t i = 0; i < n; ++i) vr[i] = apply_binary<float>(Op, o[i], vr[i]);
    }
  }
}

template <int... Ops>
void binary_rows_by_op(int op, float* v, int64_t row_stride, const float* other, int64_t other_row_stride, int64_t stride,
                       int64_t rows, int64_t n, bool value_first, std::integer_sequence<int, Ops...>) {
  using Span = void (*)(float*, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, bool);
  static constexpr Span table[] = {&binary_rows_span<Ops>...};
  table[op](v, row_stride, other, other_row_stride, stride, rows, n, value_first);
}

// A fused chain's operands as a kernel reads them: input 0 holds the running value's start
// (for a matmul's epilogue, the product in the output).
struct FusedOperands {
  std::array<const TensorArg*, kMaxFusedInputs> in{};
  size_t count = 0;
  const TensorArg* out = nullptr;

  void add(const TensorArg& a) {
    if (count == kMaxFusedInputs) throw_error(LANES_ERR_INTERNAL, "fused: more operands than a chain takes");
    in[count++] = &a;
  }
};

// The row stride of each operand where every one of them steps through the rows of `shape`
// (all axes but the last) by a single stride; false where some operand's outer axes do not
// collapse into one.
bool collapsed_row_strides(const Shape& shape, const FusedOperands& ops, std::array<int64_t, kMaxFusedInputs>& row_stride) {
  row_stride.fill(0);
  bool first = true;
  int64_t rows_below = 1;  // rows one step along axis d spans
  for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d) {
    if (shape[d] == 1) continue;
    for (size_t k = 0; k < ops.count; ++k) {
      const int64_t stride = read_stride(*ops.in[k], shape.size(), d);
      if (first) row_stride[k] = stride;
      else if (stride != row_stride[k] * rows_below) return false;
    }
    first = false;
    rows_below *= shape[d];
  }
  return true;
}

// Blocks of short rows (a bias and activation over a small product): each step runs over the
// whole block with one dispatch, the block small enough to stay in L1 between steps. The
// block's running values are contiguous, so a step that reads no operand, or one laid out as
// they are, is one span.
void fused_row_blocks(const std::vector<FusedStep>& program, const TensorArg& out, const std::array<const float*, kMaxFusedInputs>& in,
                      const std::array<int64_t, kMaxFusedInputs>& inner, const std::array<int64_t, kMaxFusedInputs>& row_stride) {
  const int64_t n = out.shape.back(), rows = numel(out.shape) / n;
  const int64_t block = std::max<int64_t>(1, kFusedSpan / n);
  float* y = static_cast<float*>(out.data);
  parallel_for(rows, std::max<int64_t>(1, kElementGrain / n), [&](int64_t rb, int64_t re) {
    for (int64_t r0 = rb; r0 < re; r0 += block) {
      const int64_t count = std::min(block, re - r0);
      float* v = y + r0 * n;
      const float* head = in[0] + r0 * row_stride[0];
      if (head != v)  // a matmul's epilogue starts from the product in place
        for (int64_t r = 0; r < count; ++r)
          for (int64_t i = 0; i < n; ++i) v[r * n + i] = head[r * row_stride[0] + i * inner[0]];
      const int64_t span = count * n;
      for (const FusedStep& f : program) {
        if (f.op == OpCode::Unary) {
          unary_span_by_op(f.subop, v, span, std::make_integer_sequence<int, LANES_OP_COS + 1>{});
        } else if (f.op == OpCode::BinaryScalar) {
          binary_span_by_op(f.subop, v, &f.scalar, 0, span, f.value_first, std::make_integer_sequence<int, LANES_OP_POWER + 1>{});
        } else if (const float* other = in[f.operand] + r0 * row_stride[f.operand]; row_stride[f.operand] == n * inner[f.operand]) {
          binary_span_by_op(f.subop, v, other, inner[f.operand], span, f.value_first, std::make_integer_sequence<int, LANES_OP_POWER + 1>{});
        } else {
          binary_rows_by_op(f.subop, v, n, other, row_stride[f.operand], inner[f.operand], count, n, f.value_first,
                            std::make_integer_sequence<int, LANES_OP_POWER + 1>{});
        }
      }
    }
  });
}

void fused_chain(const std::vector<FusedStep>& program, const FusedOperands& ops) {
  const Shape& shape = ops.out->shape;
  std::array<const float*, kMaxFusedInputs> in{};
  std::array<int64_t, kMaxFusedInputs> inner{};
  for (size_t k = 0; k < ops.count; ++k) {
    in[k] = base<float>(*ops.in[k]);
    inner[k] = shape.empty() ? 0 : read_stride(*ops.in[k], shape.size(), shape.size() - 1);
  }
  std::array<int64_t, kMaxFusedInputs> row_stride;
  const int64_t total = numel(shape);
  if (total == 0) return;
  if (!shape.empty() && shape.back() < kFusedSpan && total > shape.back() && collapsed_row_strides(shape, ops, row_stride))
    return fused_row_blocks(program, *ops.out, in, inner, row_stride);
  std::array<Shape, kMaxFusedInputs> st;
  for (size_t k = 0; k < kMaxFusedInputs; ++k) st[k] = k < ops.count ? read_strides(*ops.in[k], shape) : Shape(shape.size(), 0);
  float* y = static_cast<float*>(ops.out->data);
  for_each_row<kMaxFusedInputs>(shape, st, [&](int64_t o, const std::array<int64_t, kMaxFusedInputs>& off, int64_t n) {
    for (int64_t at = 0; at < n; at += kFusedSpan) {
      int64_t m = std::min(kFusedSpan, n - at);
      float* v = y + o + at;
      const float* head = in[0] + off[0] + at * inner[0];
      if (head != v)  // a matmul's epilogue starts from the product in place
        for (int64_t i = 0; i < m; ++i) v[i] = head[i * inner[0]];
      for (const FusedStep& f : program) {
        if (f.op == OpCode::Unary) {
          unary_span_by_op(f.subop, v, m, std::make_integer_sequence<int, LANES_OP_COS + 1>{});
        } else {
          bool scalar = f.op == OpCode::BinaryScalar;
          const float* other = scalar ? &f.scalar : in[f.operand] + off[f.operand] + at * inner[f.operand];
          binary_span_by_op(f.subop, v, other, scalar ? 0 : inner[f.operand], m, f.value_first,
                            std::make_integer_sequence<int, LANES_OP_POWER + 1>{});
        }
      }
    }
  });
}

void fused(const Command& c) {
  FusedOperands ops;
  for (const TensorArg& a : c.inputs) ops.add(a);
  ops.out = &c.output;
  fused_chain(*c.params.fused, ops);
}

// The target copied to the output (unless it was donated: then they are one buffer), then the
// update written at the offset.
void slice_update(const Command& c) {
  const TensorArg &target = c.inputs[0], &update = c.inputs[1];
  int axis = c.params.axis;
  int64_t offset = static_cast<int64_t>(c.params.scalars[0]);
  int64_t room = target.shape[axis] - update.shape[axis];
  // Per-row form: row b of the leading axis is written at its own offset.
  const int32_t* row_offsets = c.inputs.size() > 2 ? base<int32_t>(c.inputs[2]) : nullptr;
  int64_t rows = row_offsets ? target.shape[0] : 1;
  for (int64_t b = 0; b < rows; ++b) {
    int64_t at = row_offsets ? row_offsets[b] : offset;
    if (at < 0 || at > room)
      throw_error(LANES_ERR_DEVICE, "sliceUpdate: offset " + std::to_string(at) + (row_offsets ? " of row " + std::to_string(b) : "") +
                                        " is out of range [0, " + std::to_string(room) + "] along axis " + std::to_string(axis));
  }
  bool in_place = c.params.flags & 1;
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* y = output<T>(c);
    if (!in_place) {
      std::vector<T> scratch;
      const T* t = contiguous<T>(target, scratch);
      int64_t n = numel(target.shape);
      parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) { std::copy(t + b, t + e, y + b); });
    }
    Shape out_strides = contiguous_strides(c.output.shape);
    const T* src = base<T>(update);
    std::array<Shape, 2> st{out_strides, read_strides(update, update.shape)};
    int64_t inner = update.shape.empty() ? 0 : st[1].back();
    int64_t per_row = numel(update.shape) / std::max<int64_t>(1, rows);  // update elements per leading entry
    for_each_row<2>(update.shape, st, [&](int64_t first, const std::array<int64_t, 2>& off, int64_t n) {
      int64_t at = row_offsets ? row_offsets[first / per_row] : offset;
      T* dst = y + at * out_strides[axis];
      for (int64_t i = 0; i < n; ++i) dst[off[0] + i] = src[off[1] + i * inner];
    });
  });
}

void where(const Command& c) {
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    const uint8_t* cond = base<uint8_t>(c.inputs[0]);
    const T* a = base<T>(c.inputs[1]);
    const T* b = base<T>(c.inputs[2]);
    T* y = output<T>(c);
    const Shape& shape = c.output.shape;
    std::array<Shape, 3> st{read_strides(c.inputs[0], shape), read_strides(c.inputs[1], shape),
                                           read_strides(c.inputs[2], shape)};
    std::array<int64_t, 3> inner{};
    if (!shape.empty())
      for (size_t k = 0; k < 3; ++k) inner[k] = st[k].back();
    for_each_row<3>(shape, st, [&](int64_t o, const std::array<int64_t, 3>& off, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        y[o + i] = cond[off[0] + i * inner[0]] ? a[off[1] + i * inner[1]] : b[off[2] + i * inner[2]];
    });
  });
}

BlockType block_type(DType d) {
  switch (d) {
    case DType::Q4_0: return BlockType::Q4_0;
    case DType::Q4_1: return BlockType::Q4_1;
    case DType::Q8_0: return BlockType::Q8_0;
    default: throw_error(LANES_ERR_INTERNAL, std::string("cpu: ") + dtype_name(d) + " is not a quantized type");
  }
}

void astype(const Command& c) {
  const TensorArg& in = c.inputs[0];
  if (is_quantized(in.dtype)) {
    if (in.dtype == c.output.dtype) {
      std::memcpy(c.output.data, in.data, dtype_bytes(in.dtype, numel(in.shape)));
      return;
    }
    int64_t n = numel(in.shape);
    int64_t block = dtype_info(in.dtype).block;
    size_t block_bytes = dtype_info(in.dtype).bytes;
    BlockType type = block_type(in.dtype);
    float* y = output<float>(c);
    parallel_for(n / block, std::max<int64_t>(1, kElementGrain / block), [&](int64_t b, int64_t e) {
      cpu::dequantize(type, static_cast<const uint8_t*>(in.data) + b * block_bytes, (e - b) * block, y + b * block);
    });
    return;
  }
  dispatch(in.dtype, [&](auto from_tag) {
    using From = decltype(from_tag);
    dispatch(c.output.dtype, [&](auto to_tag) {
      using To = decltype(to_tag);
      const From* x = base<From>(in);
      To* y = output<To>(c);
      std::array<Shape, 1> st{read_strides(in, c.output.shape)};
      int64_t inner = c.output.shape.empty() ? 0 : st[0].back();
      for_each_row<1>(c.output.shape, st, [&](int64_t o, const std::array<int64_t, 1>& off, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          From v = x[off[0] + i * inner];
          if constexpr (std::is_same_v<From, To>) y[o + i] = v;
          else if constexpr (is_half_v<From> && is_half_v<To>) y[o + i] = down<To>(up(v));
          else y[o + i] = from_double<To>(to_double(v));
        }
      });
    });
  });
}

// ---- matmul -----------------------------------------------------------------------------------

constexpr int64_t kPackedMatmulWork = int64_t(64) * 64 * 64;
// Up to this many rows the SIMD kernels take a product of any size (sgemm.cpp's few-row kernels
// read a row-major B in place, without packing it).
constexpr int64_t kSimdRows = 48;

// Element offsets of batch `bi` of [batch..., M, N] (`ys`) in the two operands (batch dims
// read through their strides).
std::pair<int64_t, int64_t> batch_offsets(int64_t bi, const Shape& ys, const Shape& sa, const Shape& sb) {
  int64_t oa = 0, ob = 0;
  for (int d = static_cast<int>(ys.size()) - 3; d >= 0; --d) {
    int64_t idx = bi % ys[d];
    bi /= ys[d];
    oa += idx * sa[d];
    ob += idx * sb[d];
  }
  return {oa, ob};
}

// Y[batch, M, N] = A @ B for float32 operands read through strides (so transposed and
// broadcast operands need no copy). `sa`/`sb` are the operands' element strides read as
// [batch..., M, K] and [batch..., K, N].
void matmul_f32(const float* A, const Shape& sa, const float* B, const Shape& sb,
                float* Y, const Shape& ys, int64_t K) {
  int nd = static_cast<int>(ys.size());
  int64_t M = ys[nd - 2], N = ys[nd - 1];
  int64_t batches = 1;
  for (int d = 0; d < nd - 2; ++d) batches *= ys[d];
  if (M * N == 0) return;
  int64_t a_row = sa[nd - 2], a_col = sa[nd - 1], b_row = sb[nd - 2], b_col = sb[nd - 1];
  // Large products, and products of up to kSimdRows rows at any size (a decode step's x @ W,
  // a small model's layers, where the loops below reload and store the output row for every k,
  // or, for a transposed B, read it one element at a time): the SIMD kernels, one batch after
  // another (each is split over the pool). The choice depends only on the shape, so a given
  // matmul always takes the same path.
  if (M * N * K >= kPackedMatmulWork || M <= kSimdRows) {
    bool done = true;
    for (int64_t bi = 0; bi < batches && done; ++bi) {
      auto [oa, ob] = batch_offsets(bi, ys, sa, sb);
      done = sgemm_packed({A + oa, a_row, a_col}, {B + ob, b_row, b_col}, Y + bi * M * N, M, N, K);
    }
    if (done) return;
  }
  bool b_rows_contiguous = b_col == 1 || N == 1;
  // Work items are blocks of up to kRows rows of one batch: each B row loaded is used kRows
  // times, and a panel of kPanel columns keeps the kRows output rows in L1.
  constexpr int64_t kRows = 4, kPanel = 512;
  int64_t blocks_per_batch = (M + kRows - 1) / kRows;
  int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, kRows * N * K / 64 + 1));
  parallel_for(batches * blocks_per_batch, grain, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
      int64_t bi = w / blocks_per_batch, i0 = (w % blocks_per_batch) * kRows;
      int64_t rows = std::min(kRows, M - i0);
      auto [oa, ob] = batch_offsets(bi, ys, sa, sb);
      const float* b_mat = B + ob;
      // Every output element sums over k in increasing order, whichever loop shape: deterministic.
      for (int64_t r = 0; r < rows; ++r) {
        const float* a_i = A + oa + (i0 + r) * a_row;
        float* y_row = Y + bi * M * N + (i0 + r) * N;
        if (!b_rows_contiguous) {
          // B's columns are contiguous or strided (a transposed operand): dot products.
          for (int64_t j = 0; j < N; ++j) {
            const float* b_j = b_mat + j * b_col;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += a_i[k * a_col] * b_j[k * b_row];
            y_row[j] = acc;
          }
        } else {
          std::fill(y_row, y_row + N, 0.0f);
        }
      }
      if (!b_rows_contiguous) continue;
      float* y0 = Y + bi * M * N + i0 * N;
      const float* a0 = A + oa + i0 * a_row;
      for (int64_t j0 = 0; j0 < N; j0 += kPanel) {
        int64_t jn = std::min(kPanel, N - j0);
        for (int64_t k = 0; k < K; ++k) {
          const float* b_k = b_mat + k * b_row + j0;
          if (rows == kRows) {
            float v0 = a0[k * a_col], v1 = a0[a_row + k * a_col], v2 = a0[2 * a_row + k * a_col], v3 = a0[3 * a_row + k * a_col];
            float *r0 = y0 + j0, *r1 = r0 + N, *r2 = r1 + N, *r3 = r2 + N;
            for (int64_t j = 0; j < jn; ++j) {
              float bv = b_k[j];
              r0[j] += v0 * bv;
              r1[j] += v1 * bv;
              r2[j] += v2 * bv;
              r3[j] += v3 * bv;
            }
          } else {
            for (int64_t r = 0; r < rows; ++r) {
              float v = a0[r * a_row + k * a_col];
              float* yr = y0 + r * N + j0;
              for (int64_t j = 0; j < jn; ++j) yr[j] += v * b_k[j];
            }
          }
        }
      }
    }
  });
}

// A product's epilogue (a compiled plan's Matmul or QuantizedMatmul with OpParams::fused), over
// the product in the output, as its Fused command would read it (epilogue_command), without the
// copies.
void run_epilogue(const Command& c) {
  if (!c.params.fused) return;
  FusedOperands ops;
  ops.add(c.output);
  for (size_t k = 2; k < c.inputs.size(); ++k) ops.add(c.inputs[k]);
  ops.out = &c.output;
  fused_chain(*c.params.fused, ops);
}

void matmul(const Command& c) {
  const Shape& ys = c.output.shape;
  int nd = static_cast<int>(ys.size());
  int64_t K = c.inputs[0].shape.back();
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      matmul_f32(base<float>(c.inputs[0]), read_strides(c.inputs[0], nd), base<float>(c.inputs[1]), read_strides(c.inputs[1], nd),
                 output<float>(c), ys, K);
    } else if constexpr (is_half_v<T>) {
      // Half inputs are widened once; accumulation is float32 and the result rounds once.
      std::vector<T> sa, sb;
      std::vector<float> wa, wb;
      TensorArg fa{nullptr, c.inputs[0].shape, DType::Float32, {}, 0}, fb{nullptr, c.inputs[1].shape, DType::Float32, {}, 0};
      const float* A = as_float_rows<T>(c.inputs[0], sa, wa);
      const float* B = as_float_rows<T>(c.inputs[1], sb, wb);
      std::vector<float> y(static_cast<size_t>(numel(ys)));
      matmul_f32(A, read_strides(fa, nd), B, read_strides(fb, nd), y.data(), ys, K);
      T* out = output<T>(c);
      for (size_t i = 0; i < y.size(); ++i) out[i] = down<T>(y[i]);
    } else {
      throw_error(LANES_ERR_INTERNAL, "matmul: non-floating dtype reached the kernel");
    }
  });
  run_epilogue(c);
}

// ---- shape ops with kernels --------------------------------------------------------------------

void concatenate(const Command& c) {
  const Shape& ys = c.output.shape;
  int axis = c.params.axis;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= ys[d];
  for (int d = axis + 1; d < static_cast<int>(ys.size()); ++d) inner *= ys[d];
  int64_t out_row = ys[axis] * inner;
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* y = output<T>(c);
    int64_t at = 0;
    for (const TensorArg& in : c.inputs) {
      std::vector<T> scratch;
      const T* x = contiguous<T>(in, scratch);
      int64_t row = in.shape[axis] * inner;
      parallel_for(outer, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, row)), [&](int64_t ob, int64_t oe) {
        for (int64_t o = ob; o < oe; ++o) std::copy(x + o * row, x + o * row + row, y + o * out_row + at);
      });
      at += row;
    }
  });
}

// ---- quantized weights ---------------------------------------------------------------------------

template <class T>
void norm_typed(const Command& c, bool layer);

// A compiled plan's folded rmsNorm (kNormPrologue), run as its own command would be into
// `staged`.
void run_norm_prologue(const Command& c, std::vector<float>& staged) {
  Command norm;
  norm.op = OpCode::RmsNorm;
  norm.params.flags = 1;
  norm.params.scalars[0] = c.params.scalars[0];
  norm.inputs = {c.inputs[0], c.inputs[2]};
  norm.output.shape = c.inputs[0].shape;
  staged.resize(static_cast<size_t>(numel(norm.output.shape)));
  norm.output.data = staged.data();
  norm_typed<float>(norm, false);
}

// x [..., k] (float32, contiguous) @ w^T, w [n, k] quantized.
void quantized_matmul(const Command& c) {
  const TensorArg &x = c.inputs[0], &w = c.inputs[1];
  int64_t k = x.shape.back(), n = w.shape[0];
  int64_t m = k ? numel(x.shape) / k : 0;
  if (m == 0 || n == 0) return;
  const float* rows = base<float>(x);
  std::vector<float> staged;
  if (c.params.flags & kNormPrologue) {
    run_norm_prologue(c, staged);
    rows = staged.data();
  }
  if (!(c.params.flags & kPairEpilogue)) {
    cpu::quantized_matmul(block_type(w.dtype), rows, m, k, k, w.data, n, output<float>(c));
    run_epilogue(c);
    return;
  }
  // The product [..., n] aside, its column halves as the chain's two inputs.
  std::vector<float> product(static_cast<size_t>(m * n));
  cpu::quantized_matmul(block_type(w.dtype), rows, m, k, k, w.data, n, product.data());
  const Shape& half = c.output.shape;
  Shape whole = half;
  whole.back() = n;
  const Shape strides = contiguous_strides(whole);
  TensorArg low{product.data(), half, DType::Float32, strides, 0}, high{product.data(), half, DType::Float32, strides, n / 2};
  FusedOperands ops;
  ops.add(low);
  ops.add(high);
  ops.out = &c.output;
  fused_chain(*c.params.fused, ops);
}

// Rows of a quantized [rows, k] array at int32 indices, as float32.
void take_quantized(const Command& c, const int32_t* idx, int64_t count) {
  const TensorArg& a = c.inputs[0];
  int64_t dim = a.shape[0], k = a.shape[1];
  size_t row_bytes = dtype_bytes(a.dtype, k);
  BlockType type = block_type(a.dtype);
  float* y = output<float>(c);
  parallel_for(count, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, k)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t row = idx[i] < 0 ? idx[i] + dim : idx[i];
      cpu::dequantize(type, static_cast<const uint8_t*>(a.data) + row * row_bytes, k, y + i * k);
    }
  });
}

void take(const Command& c) {
  const TensorArg& a = c.inputs[0];
  int axis = c.params.axis;
  int64_t dim = a.shape[axis], outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= a.shape[d];
  for (int d = axis + 1; d < static_cast<int>(a.shape.size()); ++d) inner *= a.shape[d];
  std::vector<int32_t> idx_scratch;
  const int32_t* idx = contiguous<int32_t>(c.inputs[1], idx_scratch);
  int64_t count = numel(c.inputs[1].shape);
  Shape rows(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    int64_t v = idx[i] < 0 ? idx[i] + dim : idx[i];
    if (v < 0 || v >= dim)
      throw_error(LANES_ERR_DEVICE, "index " + std::to_string(idx[i]) + " is out of range for axis " +
                                        std::to_string(axis) + " of size " + std::to_string(dim));
    rows[static_cast<size_t>(i)] = v;
  }
  if (is_quantized(a.dtype)) return take_quantized(c, idx, count);
  dispatch(c.output.dtype, [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> scratch;
    const T* x = contiguous<T>(a, scratch);
    T* y = output<T>(c);
    parallel_for(outer * count, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, inner)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        int64_t o = r / count, i = r % count;
        const T* src = x + (o * dim + rows[static_cast<size_t>(i)]) * inner;
        std::copy(src, src + inner, y + r * inner);
      }
    });
  });
}

// ---- reductions -------------------------------------------------------------------------------

// Views the reduction as [outer, R, inner] when the reduced axes are adjacent; otherwise
// permutes the reduced axes to the end first.
struct ReduceLayout {
  int64_t outer = 1, reduced = 1, inner = 1;
};

template <class T>
const T* reduction_input(const Command& c, ReduceLayout& layout, std::vector<T>& permuted) {
  const Shape& s = c.inputs[0].shape;
  const std::vector<int>& axes = c.params.axes;
  bool adjacent = axes.empty() || axes.back() - axes.front() + 1 == static_cast<int>(axes.size());
  if (adjacent) {
    int first = axes.empty() ? static_cast<int>(s.size()) : axes.front();
    int last = axes.empty() ? static_cast<int>(s.size()) : axes.back() + 1;
    for (int d = 0; d < first; ++d) layout.outer *= s[d];
    for (int d = first; d < last; ++d) layout.reduced *= s[d];
    for (int d = last; d < static_cast<int>(s.size()); ++d) layout.inner *= s[d];
    return contiguous<T>(c.inputs[0], permuted);
  }
  std::vector<int> order;
  for (int d = 0; d < static_cast<int>(s.size()); ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d)) order.push_back(d);
  for (int d : axes) order.push_back(d);
  Shape ps;
  for (int d : order) ps.push_back(s[d]);
  Shape in_strides = read_strides(c.inputs[0], s);
  const T* x = base<T>(c.inputs[0]);
  int64_t n = numel(s);
  permuted.resize(static_cast<size_t>(n));
  int nd = static_cast<int>(s.size());
  parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t rem = i, off = 0;
      for (int d = nd - 1; d >= 0; --d) {
        off += (rem % ps[d]) * in_strides[order[d]];
        rem /= ps[d];
      }
      permuted[static_cast<size_t>(i)] = x[off];
    }
  });
  for (int d : axes) layout.reduced *= s[d];
  layout.outer = n / std::max<int64_t>(1, layout.reduced);
  if (layout.reduced == 0) {
    layout.outer = 1;
    for (int d = 0; d < nd; ++d)
      if (!std::binary_search(axes.begin(), axes.end(), d)) layout.outer *= s[d];
  }
  return permuted.data();
}

// One output's reduction over `n` elements `base[r * stride]`, in a fixed order.
template <class T, class Acc>
Acc reduce_row(int op, const T* base, int64_t n, int64_t stride) {
  auto at = [&](int64_t r) { return static_cast<Acc>(up(base[r * stride])); };
  switch (op) {
    case LANES_REDUCE_MAX:
    case LANES_REDUCE_MIN: {
      bool is_max = op == LANES_REDUCE_MAX;
      Acc acc = at(0);
      for (int64_t r = 1; r < n && acc == acc; ++r) {  // once NaN, it stays
        Acc v = at(r);
        if (v != v || (is_max ? v > acc : v < acc)) acc = v;
      }
      return acc;
    }
    case LANES_REDUCE_ARGMAX:
    case LANES_REDUCE_ARGMIN: {
      // First index of the extreme; a NaN counts as the extreme (numpy's rule).
      bool is_max = op == LANES_REDUCE_ARGMAX;
      int64_t best = 0;
      Acc acc = at(0);
      for (int64_t r = 1; r < n && acc == acc; ++r) {
        Acc v = at(r);
        if (v != v || (is_max ? v > acc : v < acc)) {
          acc = v;
          best = r;
        }
      }
      return static_cast<Acc>(best);
    }
    case LANES_REDUCE_LOGSUMEXP: {
      if (n == 0) return -std::numeric_limits<Acc>::infinity();
      Acc m = reduce_row<T, Acc>(LANES_REDUCE_MAX, base, n, stride);
      if (m != m || std::isinf(m)) return m;  // NaN, +inf and an all -inf row are their own answer
      Acc sum = 0;
      for (int64_t r = 0; r < n; ++r) sum += std::exp(at(r) - m);
      return m + std::log(sum);
    }
    case LANES_REDUCE_VARIANCE: {
      if (n == 0) return std::numeric_limits<Acc>::quiet_NaN();
      Acc mean = 0;
      for (int64_t r = 0; r < n; ++r) mean += at(r);
      mean /= static_cast<Acc>(n);
      Acc ss = 0;
      for (int64_t r = 0; r < n; ++r) ss += (at(r) - mean) * (at(r) - mean);
      return ss / static_cast<Acc>(n);
    }
    case LANES_REDUCE_SUM:
    case LANES_REDUCE_MEAN: {
      Acc acc = 0;
      for (int64_t r = 0; r < n; ++r) acc += at(r);
      if (op == LANES_REDUCE_MEAN) return n ? acc / static_cast<Acc>(n) : std::numeric_limits<Acc>::quiet_NaN();
      return acc;
    }
    default: throw_error(LANES_ERR_INTERNAL, std::string("cpu: ") + op_name(OpCode::Reduce, op) + " reached the row reduction");
  }
}

// Sum or mean over the middle axis of [outer, R, inner] with inner > 1: a block of adjacent
// outputs accumulates row by row, so memory is read in order. Each output still adds its
// elements in the order r = 0, 1, ..., exactly as reduce_row does.
template <class T, class Acc, class Out>
void sum_columns(const T* x, Out* y, const ReduceLayout& L, bool mean) {
  constexpr int64_t kBlock = 256;
  int64_t blocks = (L.inner + kBlock - 1) / kBlock;
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, L.reduced * kBlock));
  parallel_for(L.outer * blocks, grain, [&](int64_t tb, int64_t te) {
    Acc acc[kBlock];
    for (int64_t t = tb; t < te; ++t) {
      int64_t outer = t / blocks, first = (t % blocks) * kBlock, width = std::min(kBlock, L.inner - first);
      for (int64_t j = 0; j < width; ++j) acc[j] = 0;
      const T* base = x + outer * L.reduced * L.inner + first;
      for (int64_t r = 0; r < L.reduced; ++r)
        for (int64_t j = 0; j < width; ++j) acc[j] += static_cast<Acc>(up(base[r * L.inner + j]));
      Out* out = y + outer * L.inner + first;
      for (int64_t j = 0; j < width; ++j)
        out[j] = down<Out>(mean ? (L.reduced ? acc[j] / static_cast<Acc>(L.reduced) : std::numeric_limits<Acc>::quiet_NaN()) : acc[j]);
    }
  });
}

template <class T, class Acc, class Out>
void reduce_typed(const Command& c) {
  ReduceLayout L;
  std::vector<T> scratch;
  const T* x = reduction_input<T>(c, L, scratch);
  Out* y = output<Out>(c);
  int op = c.params.subop;
  bool sum_or_mean = op == LANES_REDUCE_SUM || op == LANES_REDUCE_MEAN;
  if (sum_or_mean && L.inner > 1) return sum_columns<T, Acc, Out>(x, y, L, op == LANES_REDUCE_MEAN);
  int64_t outputs = L.outer * L.inner;
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, L.reduced));
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Out, float>) {
    // Contiguous float32 rows: the vectorized sum (one fixed code path, whatever the thread).
    if (sum_or_mean && L.reduced > 0 && has_avx2_fma()) {
      parallel_for(outputs, grain, [&](int64_t ob, int64_t oe) {
        for (int64_t o = ob; o < oe; ++o) {
          double acc = sum_row_avx2(x + o * L.reduced, L.reduced);
          y[o] = static_cast<float>(op == LANES_REDUCE_MEAN ? acc / static_cast<double>(L.reduced) : acc);
        }
      });
      return;
    }
  }
  parallel_for(outputs, grain, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      int64_t outer = o / L.inner, inner = o % L.inner;
      const T* base_row = x + outer * L.reduced * L.inner + inner;
      y[o] = down<Out>(reduce_row<T, Acc>(op, base_row, L.reduced, L.inner));
    }
  });
}

void reduce(const Command& c) {
  bool arg = c.output.dtype == DType::Int32 && c.inputs[0].dtype != DType::Int32;  // argmax/argmin
  dispatch(c.inputs[0].dtype, [&](auto tag) {
    using T = decltype(tag);
    // Integers accumulate in int64 (int32 sums wrap on the final narrowing), floats in double.
    using Acc = std::conditional_t<std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t>, int64_t, double>;
    if (arg) reduce_typed<T, Acc, int32_t>(c);
    else reduce_typed<T, Acc, T>(c);
  });
}

// ---- reads -------------------------------------------------------------------------------------

// A read queued behind the work that produces its (contiguous) input.
void download(const Command& c) {
  const TensorArg& x = c.inputs[0];
  size_t bytes = static_cast<size_t>(numel(x.shape)) * dtype_size(x.dtype);
  if (bytes) dispatch(x.dtype, [&](auto tag) { std::memcpy(c.params.host_staging, base<decltype(tag)>(x), bytes); });
}

// ---- softmax ----------------------------------------------------------------------------------

template <class T>
void softmax_typed(const Command& c) {
  const Shape& s = c.output.shape;
  int axis = c.params.axis;
  int64_t outer = 1, L = s[axis], inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < static_cast<int>(s.size()); ++d) inner *= s[d];
  std::vector<T> scratch;
  const T* x = contiguous<T>(c.inputs[0], scratch);
  T* y = output<T>(c);
  int64_t rows = outer * inner;
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, L));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    std::vector<float> e;  // sized for the first row the vectorized kernel declines
    for (int64_t r = rb; r < re; ++r) {
      int64_t o = r / inner, in = r % inner;
      const T* xr = x + o * L * inner + in;
      T* yr = y + o * L * inner + in;
      // Contiguous float32 rows: the vectorized kernel (a fixed code path per row, so results
      // never depend on threads); it declines rows with NaN, +inf or only -inf.
      if constexpr (std::is_same_v<T, float>)
        if (inner == 1 && softmax_row_avx2(xr, yr, L)) continue;
      float m = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (int64_t l = 0; l < L; ++l) {
        float v = up(xr[l * inner]);
        nan |= v != v;
        m = v > m ? v : m;
      }
      if (nan || m == std::numeric_limits<float>::infinity()) {
        // NaN propagates; +inf rows follow from the limit exp(x - inf): NaN as in MLX/numpy.
        for (int64_t l = 0; l < L; ++l) yr[l * inner] = down<T>(std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      double sum = 0;
      e.resize(static_cast<size_t>(L));
      for (int64_t l = 0; l < L; ++l) {
        e[l] = std::exp(float(up(xr[l * inner])) - m);
        sum += e[l];
      }
      float inv = static_cast<float>(1.0 / sum);
      for (int64_t l = 0; l < L; ++l) yr[l * inner] = down<T>(e[l] * inv);
    }
  });
}

template <class T>
struct SoftmaxKernel {
  static void run(const Command& c) { softmax_typed<T>(c); }
};

// ---- fused ops ---------------------------------------------------------------------------------

// Mean and 1 / sqrt(variance + eps) of a row, accumulated in double.
std::pair<double, float> layer_stats(const float* x, int64_t D, double eps) {
  double mean = 0, ss = 0;
  for (int64_t i = 0; i < D; ++i) mean += x[i];
  mean /= static_cast<double>(D);
  for (int64_t i = 0; i < D; ++i) ss += (x[i] - mean) * (x[i] - mean);
  return {mean, static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps))};
}

// Inputs as float rows, read in place where they already are contiguous float32.
template <class T>
struct FloatInputs {
  std::vector<T> scratch[3];
  std::vector<float> wide[3];
  const float* data[3] = {};

  explicit FloatInputs(const Command& c) {
    for (size_t i = 0; i < c.inputs.size() && i < 3; ++i) data[i] = as_float_rows<T>(c.inputs[i], scratch[i], wide[i]);
  }
};

// 1 / sqrt(mean of squares + eps) of rows x[0..R) (D apart) with llama.cpp's roundings (ggml's
// rms_norm): each square rounded to float, summed in double in order, the mean rounded to float,
// the rest in float. The rows' sums are interleaved: each row's additions stay in order, but R
// independent chains keep the adder busy.
template <int R>
void rms_scales(const float* x, int64_t D, float eps, float* inv) {
  double ss[R] = {};
  for (int64_t i = 0; i < D; ++i)
    for (int r = 0; r < R; ++r) {
      float square = x[r * D + i] * x[r * D + i];
      ss[r] += square;
    }
  for (int r = 0; r < R; ++r) inv[r] = 1.0f / std::sqrt(static_cast<float>(ss[r] / static_cast<double>(D)) + eps);
}

template <class T>
void norm_typed(const Command& c, bool layer) {
  FloatInputs<T> in(c);
  int64_t D = c.output.shape.back();
  int64_t rows = D ? numel(c.output.shape) / D : 0;
  bool has_weight = c.params.flags & 1, has_bias = c.params.flags & 2;
  const float* x = in.data[0];
  const float* w = has_weight ? in.data[1] : nullptr;
  const float* b = has_bias ? in.data[has_weight ? 2 : 1] : nullptr;
  double eps = c.params.scalars[0];
  T* y = output<T>(c);
  parallel_for(rows, std::max<int64_t>(4, kElementGrain / std::max<int64_t>(1, D)), [&](int64_t rb, int64_t re) {
    for (int64_t r0 = rb; r0 < re; r0 += 4) {
      int64_t n = std::min<int64_t>(4, re - r0);
      double mean[4] = {};
      float inv[4];
      if (layer) {
        for (int64_t k = 0; k < n; ++k) std::tie(mean[k], inv[k]) = layer_stats(x + (r0 + k) * D, D, eps);
      } else if (n == 4) {
        rms_scales<4>(x + r0 * D, D, static_cast<float>(eps), inv);
      } else {
        for (int64_t k = 0; k < n; ++k) rms_scales<1>(x + (r0 + k) * D, D, static_cast<float>(eps), inv + k);
      }
      for (int64_t k = 0; k < n; ++k) {
        const float* xr = x + (r0 + k) * D;
        T* yr = y + (r0 + k) * D;
        for (int64_t i = 0; i < D; ++i) {
          float v = static_cast<float>(xr[i] - mean[k]) * inv[k];
          if (w) v *= w[i];
          if (b) v += b[i];
          yr[i] = down<T>(v);
        }
      }
    }
  });
}

// cos and sin of every (position, frequency) of a rope call, kept for the next call on this
// thread: the q and k of every layer of a forward pass rotate by the same positions.
struct RopeTable {
  double base = 0, scale = 0;
  int dims = 0;
  int64_t length = 0;
  std::vector<double> starts;  // first position of each leading entry (one without per-row offsets)
  std::vector<float> cos, sin;   // [entry][position][dims / 2]

  bool same(double b, double s, int d, int64_t l, const std::vector<double>& st) const {
    return base == b && scale == s && dims == d && length == l && starts == st;
  }
};
thread_local RopeTable t_rope;
thread_local std::vector<double> t_rope_starts;

// The angles as llama.cpp builds them (ggml_rope_cache_init): theta starts at the position and is
// multiplied by base^(-2/dims) once per frequency, all in float32, so rounding compounds along the
// frequencies (about k * 2^-24 relative at frequency k); then the C library's cosf and sinf of
// scale * theta.
void rope_angles(float position, float scale, float theta_scale, int half, float* cos, float* sin) {
  const PlatformMath& math = platform_math();
  float theta = position;
  for (int i = 0; i < half; ++i) {
    float angle = scale * theta;
    cos[i] = math.cos(angle);
    sin[i] = math.sin(angle);
    theta *= theta_scale;
  }
}

const RopeTable& rope_table(double base, double scale, int dims, int64_t length, const std::vector<double>& starts) {
  RopeTable& t = t_rope;
  if (t.same(base, scale, dims, length, starts)) return t;
  int half = dims / 2;
  float theta_scale = platform_math().pow(static_cast<float>(base), -2.0f / static_cast<float>(dims));
  int64_t positions = static_cast<int64_t>(starts.size()) * length;
  t.cos.resize(static_cast<size_t>(positions * half));
  t.sin.resize(static_cast<size_t>(positions * half));
  parallel_for(positions, std::max<int64_t>(1, 1024 / std::max(1, half)), [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      float position = static_cast<float>(starts[static_cast<size_t>(p / length)] + static_cast<double>(p % length));
      rope_angles(position, static_cast<float>(scale), theta_scale, half, t.cos.data() + p * half, t.sin.data() + p * half);
    }
  });
  t.base = base, t.scale = scale, t.dims = dims, t.length = length, t.starts = starts;
  return t;
}

// The rotation of a pair with llama.cpp's contraction (its rotate_pairs as GCC fuses it): the
// second product of each output rounded, the first fused into the sum.
inline std::pair<float, float> rotate(float a, float b, float c, float s) {
  return {std::fma(a, c, -(b * s)), std::fma(a, s, b * c)};
}

template <class T>
void rope_typed(const Command& c) {
  std::vector<T> scratch;
  std::vector<float> widened;
  const float* x = as_float_rows<T>(c.inputs[0], scratch, widened);
  const Shape& s = c.output.shape;
  int64_t D = s.back(), L = s[s.size() - 2];
  int64_t rows = D ? numel(s) / D : 0;
  if (rows == 0) return;
  int dims = c.params.axis, half = dims / 2;
  bool traditional = c.params.flags & 1;
  // Per-row form: the rows of leading entry b start at offsets[b].
  const int32_t* offsets = c.inputs.size() > 1 ? cpu::base<int32_t>(c.inputs[1]) : nullptr;
  int64_t rows_per_entry = offsets ? rows / std::max<int64_t>(1, s[0]) : rows;
  std::vector<double>& starts = t_rope_starts;
  starts.assign(1, c.params.scalars[2]);
  if (offsets) starts.assign(offsets, offsets + s[0]);
  const RopeTable& table = rope_table(c.params.scalars[0], c.params.scalars[1], dims, L, starts);
  T* y = output<T>(c);
  parallel_for(rows, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, D)), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t position = (offsets ? r / rows_per_entry : 0) * L + r % L;
      const float* cs = table.cos.data() + position * half;
      const float* sn = table.sin.data() + position * half;
      const float* xr = x + r * D;
      T* yr = y + r * D;
      // Traditional pairs neighbours (2i, 2i+1); the default (Llama/HF) pairs halves (i, i+dims/2).
      if (traditional) {
        for (int i = 0; i < half; ++i) {
          auto [ya, yb] = rotate(xr[2 * i], xr[2 * i + 1], cs[i], sn[i]);
          yr[2 * i] = down<T>(ya);
          yr[2 * i + 1] = down<T>(yb);
        }
      } else {
        for (int i = 0; i < half; ++i) {
          auto [ya, yb] = rotate(xr[i], xr[i + half], cs[i], sn[i]);
          yr[i] = down<T>(ya);
          yr[i + half] = down<T>(yb);
        }
      }
      for (int64_t d = dims; d < D; ++d) yr[d] = down<T>(xr[d]);
    }
  });
}

template <class T>
struct RmsNormKernel {
  static void run(const Command& c) { norm_typed<T>(c, false); }
};
template <class T>
struct LayerNormKernel {
  static void run(const Command& c) { norm_typed<T>(c, true); }
};
template <class T>
struct RopeKernel {
  static void run(const Command& c) { rope_typed<T>(c); }
};

}  // namespace

void run_kernel(const Command& c) {
  switch (c.op) {
    case OpCode::Full: return full(c);
    case OpCode::Arange: return arange(c);
    case OpCode::Random: return random(c);
    case OpCode::Unary: return unary(c);
    case OpCode::Binary: return binary(c);
    case OpCode::BinaryScalar: return binary_scalar(c);
    case OpCode::Fused: return fused(c);
    case OpCode::SliceUpdate: return slice_update(c);
    case OpCode::Where: return where(c);
    case OpCode::AsType: return astype(c);
    case OpCode::Matmul: return matmul(c);
    case OpCode::Reduce: return reduce(c);
    case OpCode::Softmax: return floating_only<SoftmaxKernel>(c);
    case OpCode::Concatenate: return concatenate(c);
    case OpCode::Take: return take(c);
    case OpCode::RmsNorm: return floating_only<RmsNormKernel>(c);
    case OpCode::LayerNorm: return floating_only<LayerNormKernel>(c);
    case OpCode::Attention: return attention(c);
    case OpCode::Rope: return floating_only<RopeKernel>(c);
    case OpCode::Download: return download(c);
    case OpCode::FromData:
    case OpCode::View:
    case OpCode::QuantizedMatmul: return quantized_matmul(c);
    case OpCode::Placeholder:
    case OpCode::PlanOutput: break;
  }
  throw_error(LANES_ERR_INTERNAL, std::string("cpu backend: no kernel for ") + op_name(c.op, c.params.subop));
}

}  // namespace lanes::cpu
