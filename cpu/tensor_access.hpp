// How CPU kernels read their inputs: typed pointers, float16/bfloat16 widening, strided and
// broadcast views, and the row walk elementwise kernels share.
#pragma once
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../ffi/src/command.hpp"
#include "compute_pool.hpp"
#include "../ffi/src/dtype.hpp"

namespace lanes::cpu {

inline constexpr int64_t kElementGrain = 1 << 14;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

// Storage -> compute type (halves widen to float).
template <class T>
inline auto up(T v) {
  if constexpr (is_half_v<T>) return to_float(v);
  else return v;
}

// Compute -> storage type (halves round to nearest even).
template <class T, class V>
inline T down(V v) {
  if constexpr (std::is_same_v<T, f16>) return to_f16(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bf16>) return to_bf16(static_cast<float>(v));
  else return static_cast<T>(v);
}

// Calls fn(T{}) with the storage type of `dtype`.
template <class Fn>
void dispatch(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: return fn(float{});
    case DType::Int32: return fn(int32_t{});
    case DType::Bool: return fn(uint8_t{});
    case DType::Float16: return fn(f16{});
    case DType::BFloat16: return fn(bf16{});
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q8_0: break;
  }
  throw_error(LANES_ERR_INTERNAL, std::string("cpu: a ") + dtype_name(dtype) + " array reached an elementwise kernel");
}

template <class T>
T* output(const Command& c) {
  return static_cast<T*>(c.output.data);
}

template <class T>
const T* base(const TensorArg& a) {
  return static_cast<const T*>(a.data) + a.offset;
}

inline bool is_contiguous(const TensorArg& a) { return a.strides.empty() || a.strides == contiguous_strides(a.shape); }

// Element strides that read `a` as if it had an output's `rank` dimensions, numpy-broadcast:
// leading and size-1 axes get stride zero.
inline Shape read_strides(const TensorArg& a, size_t rank) {
  Shape st(rank, 0);
  const size_t off = rank - a.shape.size();
  int64_t contiguous = 1;
  for (size_t i = a.shape.size(); i-- > 0;) {
    const int64_t own = a.strides.empty() ? contiguous : a.strides[i];
    contiguous *= a.shape[i];
    if (a.shape[i] != 1) st[off + i] = own;
  }
  return st;
}

inline Shape read_strides(const TensorArg& a, const Shape& out) { return read_strides(a, out.size()); }

// Axis d of read_strides(a, rank) alone.
inline int64_t read_stride(const TensorArg& a, size_t rank, size_t d) {
  const size_t off = rank - a.shape.size();
  if (d < off || a.shape[d - off] == 1) return 0;
  const size_t i = d - off;
  if (!a.strides.empty()) return a.strides[i];
  int64_t contiguous = 1;
  for (size_t j = i + 1; j < a.shape.size(); ++j) contiguous *= a.shape[j];
  return contiguous;
}

// Walks `shape` one innermost row at a time (rows in parallel): fn(out_offset, in_offsets, n)
// where in_offsets[k] is where input k's row starts, in its own elements.
template <size_t K, class Fn>
void for_each_row(const Shape& shape, const std::array<Shape, K>& strides, Fn&& fn) {
  int64_t total = numel(shape);
  if (total == 0) return;
  int nd = static_cast<int>(shape.size());
  int64_t inner = nd ? shape[nd - 1] : 1;
  int64_t rows = total / inner;
  auto offsets_of = [&](int64_t row, std::array<int64_t, K>& off) {
    off.fill(0);
    for (int d = nd - 2; d >= 0; --d) {
      int64_t idx = row % shape[d];
      row /= shape[d];
      for (size_t k = 0; k < K; ++k) off[k] += idx * strides[k][d];
    }
  };
  if (rows == 1) {
    // One long row: split it.
    parallel_for(inner, kElementGrain, [&](int64_t b, int64_t e) {
      std::array<int64_t, K> off{};
      for (size_t k = 0; k < K; ++k) off[k] = nd ? b * strides[k][nd - 1] : 0;
      fn(b, off, e - b);
    });
    return;
  }
  int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(1, inner));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    // The first row's offsets by division, the rest by counting up the outer indices.
    std::array<int64_t, K> off;
    offsets_of(rb, off);
    Shape index(static_cast<size_t>(std::max(nd - 1, 0)), 0);
    for (int64_t rest = rb, d = nd - 2; d >= 0; --d) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    for (int64_t r = rb; r < re; ++r) {
      fn(r * inner, off, inner);
      for (int d = nd - 2; d >= 0; --d) {
        for (size_t k = 0; k < K; ++k) off[k] += strides[k][d];
        if (++index[d] < shape[d]) break;
        for (size_t k = 0; k < K; ++k) off[k] -= shape[d] * strides[k][d];
        index[d] = 0;
      }
    }
  });
}

// A contiguous copy of `a` (or `a` itself when already contiguous) for kernels that want
// plain rows.
template <class T>
const T* contiguous(const TensorArg& a, std::vector<T>& scratch) {
  // Empty tensors read from their (valid) buffer too: pointer arithmetic on a null scratch is UB.
  if (is_contiguous(a) || numel(a.shape) == 0) return base<T>(a);
  scratch.resize(static_cast<size_t>(numel(a.shape)));
  std::array<Shape, 1> st{read_strides(a, a.shape)};
  int64_t inner_stride = a.shape.empty() ? 0 : st[0].back();
  const T* src = base<T>(a);
  T* dst = scratch.data();
  for_each_row<1>(a.shape, st, [&](int64_t out, const std::array<int64_t, 1>& in, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[out + i] = src[in[0] + i * inner_stride];
  });
  return scratch.data();
}

// A float32 copy of a floating tensor (halves widened), contiguous.
template <class T>
const float* as_float_rows(const TensorArg& a, std::vector<T>& scratch, std::vector<float>& widened) {
  const T* x = contiguous<T>(a, scratch);
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    size_t n = static_cast<size_t>(numel(a.shape));
    widened.resize(std::max<size_t>(n, 1));  // never a null pointer, even when empty
    for (size_t i = 0; i < n; ++i) widened[i] = static_cast<float>(up(x[i]));
    return widened.data();
  }
}

}  // namespace lanes::cpu
