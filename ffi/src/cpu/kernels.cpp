#include "kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "../status.hpp"
#include "compute_pool.hpp"
#include "philox.hpp"

namespace lanes::cpu {
namespace {

constexpr int64_t kElementGrain = 1 << 14;

// double -> T with defined behaviour for every input (saturating, NaN to 0 for int32).
template <class T>
T convert(double v) {
  if constexpr (std::is_same_v<T, int32_t>) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
  }
  return static_cast<T>(v);
}

template <class T>
T* out_ptr(const Command& c) {
  return static_cast<T*>(c.output.buffer->data());
}
template <class T>
const T* in_ptr(const Command& c, size_t i) {
  return static_cast<const T*>(c.inputs[i].buffer->data());
}

// ---- creation ----------------------------------------------------------------------------------

template <class T>
void full(const Command& c) {
  T v = convert<T>(c.params.scalars[0]);
  T* out = out_ptr<T>(c);
  parallel_for(numel(c.output.shape), kElementGrain, [&](int64_t b, int64_t e) { std::fill(out + b, out + e, v); });
}

template <class T>
void arange(const Command& c) {
  double start = c.params.scalars[0], step = c.params.scalars[1];
  T* out = out_ptr<T>(c);
  parallel_for(numel(c.output.shape), kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = convert<T>(start + static_cast<double>(i) * step);
  });
}

void random(const Command& c) {
  float* out = out_ptr<float>(c);
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
    default: return static_cast<int32_t>(0u - u);
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
    case LANES_OP_SILU: return x / (1.0f + std::exp(-x));
    case LANES_OP_GELU: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case LANES_OP_GELU_APPROX: {
      float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(inner));
    }
    case LANES_OP_SIN: return std::sin(x);
    default: return std::cos(x);
  }
}

template <int Op>
void unary_float_range(const float* x, float* y, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) y[i] = unary_float(Op, x[i]);
}

using UnaryRange = void (*)(const float*, float*, int64_t, int64_t);

template <int... Ops>
UnaryRange unary_dispatch(int op, std::integer_sequence<int, Ops...>) {
  UnaryRange table[] = {&unary_float_range<Ops>...};
  return table[op];
}

void unary(const Command& c) {
  int64_t n = numel(c.output.shape);
  int op = c.params.subop;
  if (c.output.dtype == DType::Int32) {
    const int32_t* x = in_ptr<int32_t>(c, 0);
    int32_t* y = out_ptr<int32_t>(c);
    parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) y[i] = unary_int(op, x[i]);
    });
    return;
  }
  const float* x = in_ptr<float>(c, 0);
  float* y = out_ptr<float>(c);
  // One loop per op, so each inner loop is a plain, vectorizable map.
  UnaryRange range = unary_dispatch(op, std::make_integer_sequence<int, LANES_OP_COS + 1>{});
  parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) { range(x, y, b, e); });
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
    default:
      if (a != a || b != b) return std::numeric_limits<T>::quiet_NaN();
      return a > b ? a : b;
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
    default: return a > b ? a : b;  // divide and power are float-only (promoted in the graph)
  }
}

template <class T, int Op>
void binary_row(const T* a, int64_t sa, const T* b, int64_t sb, T* y, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<T>(Op, a[i], b[i]);
  } else if (sa == 0 && sb == 1) {
    T av = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<T>(Op, av, b[i]);
  } else if (sa == 1 && sb == 0) {
    T bv = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<T>(Op, a[i], bv);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<T>(Op, a[i * sa], b[i * sb]);
  }
}

template <class T, int Op>
void binary_typed(const Command& c) {
  const Shape& shape = c.output.shape;
  int64_t n = numel(shape);
  if (n == 0) return;
  const T* a = in_ptr<T>(c, 0);
  const T* b = in_ptr<T>(c, 1);
  T* y = out_ptr<T>(c);
  std::vector<int64_t> sa = broadcast_strides(c.inputs[0].shape, shape);
  std::vector<int64_t> sb = broadcast_strides(c.inputs[1].shape, shape);
  int nd = static_cast<int>(shape.size());
  if (nd == 0) {
    y[0] = apply_binary<T>(Op, a[0], b[0]);
    return;
  }
  int64_t inner = shape[nd - 1];
  int64_t rows = n / inner;
  auto row_offsets = [&](int64_t row, int64_t& oa, int64_t& ob) {
    oa = ob = 0;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t idx = row % shape[d];
      row /= shape[d];
      oa += idx * sa[d];
      ob += idx * sb[d];
    }
  };
  if (rows == 1) {
    parallel_for(inner, kElementGrain, [&](int64_t b0, int64_t e0) {
      binary_row<T, Op>(a + b0 * sa[nd - 1], sa[nd - 1], b + b0 * sb[nd - 1], sb[nd - 1], y + b0, e0 - b0);
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, inner));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t oa, ob;
      row_offsets(r, oa, ob);
      binary_row<T, Op>(a + oa, sa[nd - 1], b + ob, sb[nd - 1], y + r * inner, inner);
    }
  });
}

template <class T>
void binary(const Command& c) {
  switch (c.params.subop) {
    case LANES_OP_ADD: return binary_typed<T, LANES_OP_ADD>(c);
    case LANES_OP_SUBTRACT: return binary_typed<T, LANES_OP_SUBTRACT>(c);
    case LANES_OP_MULTIPLY: return binary_typed<T, LANES_OP_MULTIPLY>(c);
    case LANES_OP_DIVIDE: return binary_typed<T, LANES_OP_DIVIDE>(c);
    case LANES_OP_MINIMUM: return binary_typed<T, LANES_OP_MINIMUM>(c);
    case LANES_OP_POWER: return binary_typed<T, LANES_OP_POWER>(c);
    default: return binary_typed<T, LANES_OP_MAXIMUM>(c);
  }
}

void astype(const Command& c) {
  int64_t n = numel(c.output.shape);
  DType from = c.inputs[0].dtype, to = c.output.dtype;
  void* y = c.output.buffer->data();
  const void* x = c.inputs[0].buffer->data();
  if (from == to) {
    if (n) std::memcpy(y, x, static_cast<size_t>(n) * dtype_size(to));
    return;
  }
  parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) {
    if (to == DType::Float32) {
      const int32_t* src = static_cast<const int32_t*>(x);
      float* dst = static_cast<float*>(y);
      for (int64_t i = b; i < e; ++i) dst[i] = static_cast<float>(src[i]);
    } else {
      const float* src = static_cast<const float*>(x);
      int32_t* dst = static_cast<int32_t*>(y);
      for (int64_t i = b; i < e; ++i) dst[i] = convert<int32_t>(src[i]);
    }
  });
}

// ---- matmul -----------------------------------------------------------------------------------

void matmul(const Command& c) {
  const Shape& ys = c.output.shape;
  const Shape& as = c.inputs[0].shape;
  const Shape& bs = c.inputs[1].shape;
  int nd = static_cast<int>(ys.size());
  int64_t M = ys[nd - 2], N = ys[nd - 1], K = as[as.size() - 1];
  Shape batch(ys.begin(), ys.end() - 2);
  int64_t batches = numel(batch);
  Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  std::vector<int64_t> sa = broadcast_strides(a_batch, batch), sb = broadcast_strides(b_batch, batch);
  const float* A = in_ptr<float>(c, 0);
  const float* B = in_ptr<float>(c, 1);
  float* Y = out_ptr<float>(c);
  if (M * N == 0) return;
  constexpr int64_t kBlockK = 256;
  int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, N * K / 64 + 1));
  parallel_for(batches * M, grain, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t bi = r / M, i = r % M;
      int64_t oa = 0, ob = 0, rem = bi;
      for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
        int64_t idx = rem % batch[d];
        rem /= batch[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      const float* a_row = A + oa * M * K + i * K;
      const float* b_mat = B + ob * K * N;
      float* y_row = Y + bi * M * N + i * N;
      std::fill(y_row, y_row + N, 0.0f);
      // Fixed k order per output element: deterministic.
      for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
        int64_t k1 = std::min(K, k0 + kBlockK);
        for (int64_t k = k0; k < k1; ++k) {
          float av = a_row[k];
          const float* b_row = b_mat + k * N;
          for (int64_t j = 0; j < N; ++j) y_row[j] += av * b_row[j];
        }
      }
    }
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
  const T* x = in_ptr<T>(c, 0);
  bool adjacent = axes.empty() || axes.back() - axes.front() + 1 == static_cast<int>(axes.size());
  if (adjacent) {
    int first = axes.empty() ? static_cast<int>(s.size()) : axes.front();
    int last = axes.empty() ? static_cast<int>(s.size()) : axes.back() + 1;
    for (int d = 0; d < first; ++d) layout.outer *= s[d];
    for (int d = first; d < last; ++d) layout.reduced *= s[d];
    for (int d = last; d < static_cast<int>(s.size()); ++d) layout.inner *= s[d];
    return x;
  }
  std::vector<int> order;
  for (int d = 0; d < static_cast<int>(s.size()); ++d)
    if (!std::binary_search(axes.begin(), axes.end(), d)) order.push_back(d);
  for (int d : axes) order.push_back(d);
  Shape ps;
  for (int d : order) ps.push_back(s[d]);
  Shape in_strides = contiguous_strides(s);
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
  auto at = [&](int64_t r) { return static_cast<Acc>(base[r * stride]); };
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
    default: {  // sum, mean
      Acc acc = 0;
      for (int64_t r = 0; r < n; ++r) acc += at(r);
      if (op == LANES_REDUCE_MEAN) return n ? acc / static_cast<Acc>(n) : std::numeric_limits<Acc>::quiet_NaN();
      return acc;
    }
  }
}

template <class T, class Acc, class Out>
void reduce_typed(const Command& c) {
  ReduceLayout L;
  std::vector<T> scratch;
  const T* x = reduction_input<T>(c, L, scratch);
  Out* y = static_cast<Out*>(c.output.buffer->data());
  int op = c.params.subop;
  int64_t outputs = L.outer * L.inner;
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, L.reduced));
  parallel_for(outputs, grain, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      int64_t outer = o / L.inner, inner = o % L.inner;
      const T* base = x + outer * L.reduced * L.inner + inner;
      y[o] = static_cast<Out>(reduce_row<T, Acc>(op, base, L.reduced, L.inner));
    }
  });
}

void reduce(const Command& c) {
  // int32 sums accumulate wide and wrap on the final narrowing, like int32 arithmetic.
  if (c.inputs[0].dtype == DType::Int32) return reduce_typed<int32_t, int64_t, int32_t>(c);
  if (c.output.dtype == DType::Int32) return reduce_typed<float, double, int32_t>(c);  // argmax, argmin
  reduce_typed<float, double, float>(c);
}

// ---- softmax ----------------------------------------------------------------------------------

void softmax(const Command& c) {
  const Shape& s = c.output.shape;
  int axis = c.params.axis;
  int64_t outer = 1, L = s[axis], inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < static_cast<int>(s.size()); ++d) inner *= s[d];
  const float* x = in_ptr<float>(c, 0);
  float* y = out_ptr<float>(c);
  int64_t rows = outer * inner;
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, L));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r) {
      int64_t o = r / inner, in = r % inner;
      const float* xr = x + o * L * inner + in;
      float* yr = y + o * L * inner + in;
      float m = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (int64_t l = 0; l < L; ++l) {
        float v = xr[l * inner];
        nan |= v != v;
        m = v > m ? v : m;
      }
      if (nan || m == std::numeric_limits<float>::infinity()) {
        // NaN propagates; +inf rows follow from the limit exp(x - inf): NaN as in MLX/numpy.
        for (int64_t l = 0; l < L; ++l) yr[l * inner] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      double sum = 0;
      for (int64_t l = 0; l < L; ++l) {
        float e = std::exp(xr[l * inner] - m);
        yr[l * inner] = e;
        sum += e;
      }
      float inv = static_cast<float>(1.0 / sum);
      for (int64_t l = 0; l < L; ++l) yr[l * inner] *= inv;
    }
  });
}

}  // namespace

void run_kernel(const Command& c) {
  bool f32 = c.output.dtype == DType::Float32;
  switch (c.op) {
    case OpCode::Full: return f32 ? full<float>(c) : full<int32_t>(c);
    case OpCode::Arange: return f32 ? arange<float>(c) : arange<int32_t>(c);
    case OpCode::Random: return random(c);
    case OpCode::Unary: return unary(c);
    case OpCode::Binary: return f32 ? binary<float>(c) : binary<int32_t>(c);
    case OpCode::AsType: return astype(c);
    case OpCode::Matmul: return matmul(c);
    case OpCode::Reduce: return reduce(c);
    case OpCode::Softmax: return softmax(c);
    case OpCode::FromData: break;
  }
  throw_error(LANES_ERR_INTERNAL, "cpu backend: no kernel for op");
}

}  // namespace lanes::cpu
