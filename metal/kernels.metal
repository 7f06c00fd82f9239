// lanes kernels for Metal, compiled at run time with newLibraryWithSource (no Xcode Metal
// toolchain needed). Each kernel mirrors the CPU kernel of the same op: the same float16 /
// bfloat16 rounding (in software, bit for bit as ffi/src/dtype.hpp) and fixed reduction
// orders, so results do not depend on timing. Metal has no double: sums accumulate in float
// (the CPU uses double), integer sums in 64-bit.
//
// The op codes (OP_*, R_*, RANDOM_*) are defined ahead of this text from lanes_table.def
// (metal/kernel_source.hpp). Switches over them list every op; their `default` is unreachable,
// because metal/launch.mm rejects a code the table does not list before it records a dispatch.
//
// Argument layout: device buffers at indices 0..4, the kernel's parameter struct (one of
// metal/kernel_params.hpp, shared with the host) at index 8.
#include <metal_stdlib>
using namespace metal;

#ifndef LANES_METAL_KERNEL_PARAMS_HPP  // defined where metal/embed.zig put the header's text first
#include "kernel_params.hpp"
#endif
#ifndef __METAL_VERSION__  // not Apple's compiler: the Linux type check (the header says why)
#include "check/simdgroup_matrix.h"
#endif
#if !defined(OP_EXP) && !defined(__METAL_VERSION__)
// The Linux type check of this file alone (../shared/metal-check), which puts no preamble first:
// the same codes, made from the same table. Apple's compiler always gets the preamble.
enum {
#define LANES_UNARY(code, NAME, name, rule) OP_##NAME = code,
#define LANES_BINARY(code, NAME, name, rule) OP_##NAME = code,
#define LANES_REDUCE(code, NAME, name, rule) R_##NAME = code,
#define LANES_RANDOM(code, NAME, name) RANDOM_##NAME = code,
#include "../ffi/include/lanes_table.def"
};
#endif

struct f16 { ushort bits; };
struct bf16 { ushort bits; };

// ---- storage <-> compute ----------------------------------------------------------------------

inline float to_float(bf16 h) { return as_type<float>(uint(h.bits) << 16); }
inline bf16 to_bf16(float f) {
  uint u = as_type<uint>(f);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) { r.bits = ushort((u >> 16) | 0x40); return r; }
  u += 0x7fffu + ((u >> 16) & 1);
  r.bits = ushort(u >> 16);
  return r;
}
inline float to_float(f16 h) {
  uint sign = uint(h.bits & 0x8000) << 16;
  uint e = (h.bits >> 10) & 0x1f;
  uint mant = h.bits & 0x3ff;
  if (e == 0x1f) return as_type<float>(sign | 0x7f800000u | (mant << 13));
  if (e == 0) {
    if (mant == 0) return as_type<float>(sign);
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return as_type<float>(sign | ((e + 112) << 23) | (mant << 13));
}
inline f16 to_f16(float f) {
  uint u = as_type<uint>(f);
  ushort sign = ushort((u >> 16) & 0x8000);
  uint a = u & 0x7fffffffu;
  f16 r;
  if (a > 0x7f800000u) { r.bits = ushort(sign | 0x7e00); return r; }
  if (a >= 0x477ff000u) { r.bits = ushort(sign | 0x7c00); return r; }
  if (a < 0x38800000u) {
    float scaled = as_type<float>(a) * 16777216.0f;
    uint q = uint(scaled);
    float rem = scaled - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1))) ++q;
    r.bits = ushort(sign | q);
    return r;
  }
  uint mant = a & 0x7fffffu;
  uint e = (a >> 23) - 112;
  uint h = (e << 10) | (mant >> 13);
  uint rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) ++h;
  r.bits = ushort(sign | h);
  return r;
}

inline float up(float v) { return v; }
inline float up(f16 v) { return to_float(v); }
inline float up(bf16 v) { return to_float(v); }
inline int up(int v) { return v; }
inline int up(uchar v) { return v; }

template <typename T> struct Down;
template <> struct Down<float> { static float of(float v) { return v; } };
template <> struct Down<f16> { static f16 of(float v) { return to_f16(v); } };
template <> struct Down<bf16> { static bf16 of(float v) { return to_bf16(v); } };

inline float qnan() { return as_type<float>(0x7fc00000u); }
inline float finf() { return as_type<float>(0x7f800000u); }

// float -> storage with the CPU's rules: int32 saturates (NaN to 0), bool is "not zero".
template <typename T> struct FromFloat;
template <> struct FromFloat<float> { static float of(float v) { return v; } };
template <> struct FromFloat<f16> { static f16 of(float v) { return to_f16(v); } };
template <> struct FromFloat<bf16> { static bf16 of(float v) { return to_bf16(v); } };
template <> struct FromFloat<uchar> { static uchar of(float v) { return v != 0 ? 1 : 0; } };
template <> struct FromFloat<int> {
  static int of(float v) {
    if (v != v) return 0;
    if (v >= 2147483647.0f) return 2147483647;
    if (v <= -2147483648.0f) return (-2147483647 - 1);
    return int(v);
  }
};

// A value's stored bits (as the host's storage_bits wrote them) -> the storage type.
template <typename T> struct FromBits;
template <> struct FromBits<float> { static float of(uint b) { return as_type<float>(b); } };
template <> struct FromBits<f16> { static f16 of(uint b) { f16 h; h.bits = ushort(b); return h; } };
template <> struct FromBits<bf16> { static bf16 of(uint b) { bf16 h; h.bits = ushort(b); return h; } };
template <> struct FromBits<int> { static int of(uint b) { return as_type<int>(b); } };

inline long offset_of(long i, constant KShape& shape, constant KStrides& st) {
  long off = st.offset;
  for (int d = int(shape.nd) - 1; d >= 0; --d) {
    long n = shape.dims[d];
    off += (i % n) * st.s[d];
    i /= n;
  }
  return off;
}

#define GRID_STRIDE(i, n) for (long i = long(gid); i < (n); i += long(gsize))
#define GRID_ARGS uint gid [[thread_position_in_grid]], uint gsize [[threads_per_grid]]

// ---- creation --------------------------------------------------------------------------------

kernel void fill_4(device uint* out [[buffer(0)]], constant FillParams& p [[buffer(8)]], GRID_ARGS) { GRID_STRIDE(i, p.n) out[i] = p.bits; }
kernel void fill_2(device ushort* out [[buffer(0)]], constant FillParams& p [[buffer(8)]], GRID_ARGS) { GRID_STRIDE(i, p.n) out[i] = ushort(p.bits); }
kernel void fill_1(device uchar* out [[buffer(0)]], constant FillParams& p [[buffer(8)]], GRID_ARGS) { GRID_STRIDE(i, p.n) out[i] = uchar(p.bits); }

// Integral start and step count exactly in 64-bit; others in float (Metal has no double).
template <typename T>
void arange_impl(device T* out, constant FillParams& p, uint gid, uint gsize) {
  GRID_STRIDE(i, p.n) {
    if (p.integral) {
      long v = p.istart + i * p.istep;
      out[i] = FromFloat<T>::of(float(v));
    } else {
      out[i] = FromFloat<T>::of(p.start + float(i) * p.step);
    }
  }
}
template <>
void arange_impl<int>(device int* out, constant FillParams& p, uint gid, uint gsize) {
  GRID_STRIDE(i, p.n) {
    if (p.integral) {
      long v = p.istart + i * p.istep;
      out[i] = v > 2147483647 ? 2147483647 : v < -2147483648L ? int(-2147483647 - 1) : int(v);
    } else {
      out[i] = FromFloat<int>::of(p.start + float(i) * p.step);
    }
  }
}

inline void philox(thread uint c[4], uint k0, uint k1) {
  for (int round = 0; round < 10; ++round) {
    uint hi0 = mulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
    uint hi1 = mulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
    uint n0 = hi1 ^ c[1] ^ k0, n1 = lo1, n2 = hi0 ^ c[3] ^ k1, n3 = lo0;
    c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

kernel void random_f32(device float* out [[buffer(0)]], constant RandomParams& p [[buffer(8)]], GRID_ARGS) {
  const float k2pow32 = 4294967296.0f;
  long pairs = (p.n + 1) / 2;
  GRID_STRIDE(j, pairs) {
    uint c[4] = {uint(j), uint(ulong(j) >> 32), 0, 0};
    philox(c, p.key0, p.key1);
    float v0, v1;
    if (p.normal) {
      float u1 = (float(c[0]) + 0.5f) / k2pow32, u2 = (float(c[1]) + 0.5f) / k2pow32;
      float radius = sqrt(-2.0f * log(u1));
      float angle = 2.0f * M_PI_F * u2;
      v0 = p.a + p.b * radius * cos(angle);
      v1 = p.a + p.b * radius * sin(angle);
    } else {
      v0 = p.a + (p.b - p.a) * (float(c[0]) / k2pow32);
      v1 = p.a + (p.b - p.a) * (float(c[1]) / k2pow32);
    }
    out[2 * j] = v0;
    if (2 * j + 1 < p.n) out[2 * j + 1] = v1;
  }
}

// ---- elementwise -----------------------------------------------------------------------------

// Metal's standard library has no erf: Abramowitz & Stegun 7.1.26 refined by one Newton step
// on erf's derivative keeps the error near float rounding.
inline float erf_approx(float x) {
  float s = sign(x), a = fabs(x);
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * exp(-a * a);
  return s * y;
}

inline float unary_float(int op, float x) {
  switch (op) {
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_NEGATIVE: return -x;
    case OP_ABS: return fabs(x);
    case OP_SQUARE: return x * x;
    case OP_SQRT: return sqrt(x);
    case OP_RSQRT: return 1.0f / sqrt(x);
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return 1.0f / (1.0f + exp(-x));
    case OP_SILU: return x / (1.0f + exp(-x));
    case OP_GELU: return 0.5f * x * (1.0f + erf_approx(x * 0.70710678118654752f));
    case OP_GELU_APPROX: {
      float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanh(inner));
    }
    case OP_SIN: return sin(x);
    case OP_COS: return cos(x);
    default: return qnan();  // unreachable (see the top of this file)
  }
}

inline int unary_int(int op, int x) {
  uint u = uint(x);
  switch (op) {
    case OP_ABS: return x < 0 ? int(0u - u) : x;
    case OP_SQUARE: return int(u * u);
    case OP_NEGATIVE: return int(0u - u);
    default: return 0;  // unreachable: floating-only ops never reach ints
  }
}

template <typename T> struct Unary { static T of(int op, T x) { return Down<T>::of(unary_float(op, up(x))); } };
template <> struct Unary<int> { static int of(int op, int x) { return unary_int(op, x); } };

template <typename T>
void unary_impl(device T* y, const device T* x, constant EwParams& p, uint gid, uint gsize) {
  if (p.flags & 1) { GRID_STRIDE(i, p.n) y[i] = Unary<T>::of(p.op, x[p.s0.offset + i]); }
  else { GRID_STRIDE(i, p.n) y[i] = Unary<T>::of(p.op, x[offset_of(i, p.shape, p.s0)]); }
}

inline float binary_float(int op, float a, float b) {
  switch (op) {
    case OP_ADD: return a + b;
    case OP_SUBTRACT: return a - b;
    case OP_MULTIPLY: return a * b;
    case OP_DIVIDE: return a / b;
    case OP_POWER: return pow(a, b);
    case OP_MINIMUM: return (a != a || b != b) ? qnan() : (a < b ? a : b);
    case OP_MAXIMUM: return (a != a || b != b) ? qnan() : (a > b ? a : b);
    default: return qnan();  // unreachable: comparisons take compare()
  }
}

inline int binary_int(int op, int a, int b) {
  uint ua = uint(a), ub = uint(b);
  switch (op) {
    case OP_ADD: return int(ua + ub);
    case OP_SUBTRACT: return int(ua - ub);
    case OP_MULTIPLY: return int(ua * ub);
    case OP_MINIMUM: return a < b ? a : b;
    case OP_MAXIMUM: return a > b ? a : b;
    default: return 0;  // unreachable: divide and power are float-only (promoted in the graph)
  }
}

template <typename T> struct Arith { static T of(int op, T a, T b) { return Down<T>::of(binary_float(op, up(a), up(b))); } };
template <> struct Arith<int> { static int of(int op, int a, int b) { return binary_int(op, a, b); } };
template <> struct Arith<uchar> { static uchar of(int, uchar, uchar) { return 0; } };

template <typename T>
inline uchar compare(int op, T a, T b) {
  auto av = up(a);
  auto bv = up(b);
  switch (op) {
    case OP_EQUAL: return av == bv;
    case OP_LESS: return av < bv;
    case OP_GREATER: return av > bv;
    default: return 0;  // unreachable: arithmetic takes Arith
  }
}

template <typename T>
void binary_impl(device uchar* out, const device T* a, const device T* b, constant EwParams& p, uint gid, uint gsize) {
  bool cmp = p.op >= OP_EQUAL;
  GRID_STRIDE(i, p.n) {
    T av = a[(p.flags & 1) ? p.s0.offset + i : offset_of(i, p.shape, p.s0)];
    T bv = b[(p.flags & 1) ? p.s1.offset + i : offset_of(i, p.shape, p.s1)];
    if (cmp) out[i] = compare<T>(p.op, av, bv);
    else reinterpret_cast<device T*>(out)[i] = Arith<T>::of(p.op, av, bv);
  }
}

// `a op scalar` (or `scalar op a`): the scalar as the array's type holds it, as on the CPU.
template <typename T>
void binary_scalar_impl(device uchar* out, const device T* a, constant ScalarParams& p, uint gid, uint gsize) {
  const T s = FromBits<T>::of(p.scalar_bits);
  bool cmp = p.op >= OP_EQUAL;
  GRID_STRIDE(i, p.n) {
    T av = a[(p.flags & 1) ? p.s0.offset + i : offset_of(i, p.shape, p.s0)];
    T l = p.scalar_first ? s : av, r = p.scalar_first ? av : s;
    if (cmp) out[i] = compare<T>(p.op, l, r);
    else reinterpret_cast<device T*>(out)[i] = Arith<T>::of(p.op, l, r);
  }
}

// A compiled plan's elementwise chain: each step applies the op its own kernel would.
inline float fused_load(long i, constant KShape& shape, constant KStrides& s, bool flat, const device float* x) {
  return x[flat ? s.offset + i : offset_of(i, shape, s)];
}

inline void fused_impl(device float* y, const device float* x0, const device float* x1, const device float* x2, const device float* x3,
                constant FusedParams& p, uint gid, uint gsize) {
  bool flat = p.flags & 1;
  GRID_STRIDE(i, p.n) {
    // Each input's element for this output element, read once.
    float x[4] = {0, 0, 0, 0};
    x[0] = fused_load(i, p.shape, p.s0, flat, x0);
    if (p.inputs > 1) x[1] = fused_load(i, p.shape, p.s1, flat, x1);
    if (p.inputs > 2) x[2] = fused_load(i, p.shape, p.s2, flat, x2);
    if (p.inputs > 3) x[3] = fused_load(i, p.shape, p.s3, flat, x3);
    float v = x[0];
    for (int k = 0; k < p.steps; ++k) {
      if (p.kind[k] == 0) {
        v = unary_float(p.subop[k], v);
      } else {
        float o = p.kind[k] == 2 ? p.scalar[k] : x[p.operand[k]];
        v = p.value_first[k] ? binary_float(p.subop[k], v, o) : binary_float(p.subop[k], o, v);
      }
    }
    y[i] = v;
  }
}

template <typename T>
void where_impl(device T* y, const device uchar* c, const device T* a, const device T* b, constant EwParams& p, uint gid, uint gsize) {
  GRID_STRIDE(i, p.n) y[i] = c[offset_of(i, p.shape, p.s0)] ? a[offset_of(i, p.shape, p.s1)] : b[offset_of(i, p.shape, p.s2)];
}

// Strided -> strided copy: s0 describes the destination, s1 the source.
template <typename T>
void copy_impl(device T* y, const device T* x, constant EwParams& p, uint gid, uint gsize) {
  GRID_STRIDE(i, p.n) y[offset_of(i, p.shape, p.s0)] = x[offset_of(i, p.shape, p.s1)];
}

// astype: halves through float; int32 and bool through float too (exact below 2^24, which is
// where int32 <-> float32 conversion itself is exact).
template <typename F, typename T> struct Convert { static T of(F v) { return FromFloat<T>::of(float(up(v))); } };
template <typename T> struct Convert<T, T> { static T of(T v) { return v; } };
template <> struct Convert<uchar, int> { static int of(uchar v) { return v; } };
template <> struct Convert<int, uchar> { static uchar of(int v) { return v != 0 ? 1 : 0; } };

template <typename F, typename T>
void astype_impl(device T* y, const device F* x, constant EwParams& p, uint gid, uint gsize) {
  GRID_STRIDE(i, p.n) y[i] = Convert<F, T>::of(x[offset_of(i, p.shape, p.s0)]);
}

// A per-row sliceUpdate: element e of the contiguous update goes to its leading entry's own
// offset along the axis (ffi/src/gpu's RowWrite); an offset outside [0, C - U] is reported through
// `error` and that entry is not written.
template <typename T>
void copy_rows_impl(device T* y, const device T* x, const device int* offsets, device atomic_int* error, constant RowWriteParams& p, uint gid, uint gsize) {
  GRID_STRIDE(e, p.n) {
    long b = e / p.per_entry, rest = e % p.per_entry;
    long r = rest % p.R, t = (rest / p.R) % p.U, a = rest / (p.R * p.U);
    long at = offsets[b];
    if (at < 0 || at > p.C - p.U) {
      int expected = 0;
      if (atomic_compare_exchange_weak_explicit(&error[0], &expected, 1, memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&error[1], int(at), memory_order_relaxed);
      continue;
    }
    y[((b * (p.per_entry / (p.U * p.R)) + a) * p.C + at + t) * p.R + r] = x[e];
  }
}

// error[0] becomes 1 and error[1] the first bad index seen; the epoch then fails.
template <typename T>
void take_impl(device T* y, const device T* x, const device int* idx, device atomic_int* error, constant TakeParams& p, uint gid, uint gsize) {
  GRID_STRIDE(e, p.outer * p.count * p.inner) {
    long r = e / p.inner, c = e % p.inner;
    long o = r / p.count, i = r % p.count;
    long v = idx[i];
    if (v < 0) v += p.dim;
    if (v < 0 || v >= p.dim) {
      int expected = 0;
      if (atomic_compare_exchange_weak_explicit(&error[0], &expected, 1, memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&error[1], idx[i], memory_order_relaxed);
      y[e] = T();
      continue;
    }
    y[e] = x[(o * p.dim + v) * p.inner + c];
  }
}

// ---- group reductions ------------------------------------------------------------------------
//
// A group of G consecutive threads of a 256-thread threadgroup reduces one row: lane l folds
// elements l, l+G, ... in order, then the lanes combine in a fixed tree. Every thread reaches
// every barrier.

enum { K_SUM, K_MAX, K_MIN, K_ARGMAX, K_ARGMIN, K_SUMEXP, K_SUMSQDEV };

template <typename Acc>
struct RState {
  Acc v;
  long idx;
};

template <typename Acc> inline bool is_nan_v(Acc v) { return v != v; }

template <typename Acc>
inline RState<Acc> fold(int kind, RState<Acc> s, Acc v, long r, Acc shift) {
  switch (kind) {
    case K_SUM: s.v += v; break;
    case K_SUMEXP: s.v += Acc(exp(float(v - shift))); break;
    case K_SUMSQDEV: s.v += (v - shift) * (v - shift); break;
    case K_MAX:
    case K_ARGMAX:
      if (s.idx < 0 || (!is_nan_v(s.v) && (is_nan_v(v) || v > s.v))) { s.v = v; s.idx = r; }
      break;
    default:
      if (s.idx < 0 || (!is_nan_v(s.v) && (is_nan_v(v) || v < s.v))) { s.v = v; s.idx = r; }
      break;
  }
  return s;
}

template <typename Acc>
inline RState<Acc> combine(int kind, RState<Acc> a, RState<Acc> b) {
  if (kind == K_SUM || kind == K_SUMEXP || kind == K_SUMSQDEV) { a.v += b.v; return a; }
  if (b.idx < 0) return a;
  if (a.idx < 0) return b;
  bool an = is_nan_v(a.v), bn = is_nan_v(b.v);
  if (an || bn) {
    if (an && bn) return a.idx < b.idx ? a : b;
    return an ? a : b;
  }
  bool is_max = kind == K_MAX || kind == K_ARGMAX;
  if (a.v == b.v) return a.idx < b.idx ? a : b;
  return (is_max ? b.v > a.v : b.v < a.v) ? b : a;
}

template <typename T, typename Acc, int G>
RState<Acc> group_reduce(int kind, const device T* base, long n, long stride, Acc shift, threadgroup RState<Acc>* sh, uint tid) {
  int lane = int(tid) % G;
  RState<Acc> s;
  s.v = Acc(0);
  s.idx = -1;
  for (long r = lane; r < n; r += G) s = fold<Acc>(kind, s, Acc(up(base[r * stride])), r, shift);
  if (G == 1) return s;
  sh[tid] = s;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int width = G / 2; width > 0; width /= 2) {
    if (lane < width) sh[tid] = combine<Acc>(kind, sh[tid], sh[tid + width]);
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  RState<Acc> result = sh[tid - lane];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return result;
}

template <typename Out, typename Acc> inline Out store_acc(Acc v) { return Down<Out>::of(float(v)); }
template <> inline int store_acc<int, float>(float v) { return int(v); }
template <> inline uchar store_acc<uchar, float>(float v) { return uchar(v); }
template <> inline int store_acc<int, long>(long v) { return int(v); }
template <> inline uchar store_acc<uchar, long>(long v) { return uchar(v); }

template <typename T, typename Acc, int G>
void reduce_impl(device uchar* out, const device T* x, constant RowsParams& p, threadgroup RState<Acc>* sh, uint tid, uint group) {
  long groups = 256 / G;
  long o = long(group) * groups + tid / G;
  bool valid = o < p.outer * p.inner;
  long n = valid ? p.len : 0;
  const device T* base = x + (valid ? (o / p.inner) * p.len * p.inner + o % p.inner : 0);
  Acc zero = Acc(0);
  bool write = valid && tid % G == 0;
  switch (p.op) {
    case R_SUM: {
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, p.inner, zero, sh, tid);
      if (write) reinterpret_cast<device T*>(out)[o] = store_acc<T, Acc>(s.v);
      break;
    }
    case R_MEAN: {
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, p.inner, zero, sh, tid);
      if (write) reinterpret_cast<device T*>(out)[o] = store_acc<T, Acc>(n ? s.v / Acc(n) : Acc(qnan()));
      break;
    }
    case R_MAX:
    case R_MIN: {
      RState<Acc> s = group_reduce<T, Acc, G>(p.op == R_MAX ? K_MAX : K_MIN, base, n, p.inner, zero, sh, tid);
      if (write) reinterpret_cast<device T*>(out)[o] = store_acc<T, Acc>(s.v);
      break;
    }
    case R_ARGMAX:
    case R_ARGMIN: {
      RState<Acc> s = group_reduce<T, Acc, G>(p.op == R_ARGMAX ? K_ARGMAX : K_ARGMIN, base, n, p.inner, zero, sh, tid);
      if (write) reinterpret_cast<device int*>(out)[o] = int(s.idx < 0 ? 0 : s.idx);
      break;
    }
    case R_LOGSUMEXP: {
      RState<Acc> m = group_reduce<T, Acc, G>(K_MAX, base, n, p.inner, zero, sh, tid);
      float mv = float(m.v);
      bool special = n == 0 || isnan(mv) || isinf(mv);
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUMEXP, base, special ? 0 : n, p.inner, m.v, sh, tid);
      float r = n == 0 ? -finf() : special ? mv : mv + log(float(s.v));
      if (write) reinterpret_cast<device T*>(out)[o] = store_acc<T, Acc>(Acc(r));
      break;
    }
    case R_VARIANCE: {
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, p.inner, zero, sh, tid);
      Acc mean = n ? s.v / Acc(n) : zero;
      RState<Acc> q = group_reduce<T, Acc, G>(K_SUMSQDEV, base, n, p.inner, mean, sh, tid);
      if (write) reinterpret_cast<device T*>(out)[o] = store_acc<T, Acc>(n ? q.v / Acc(n) : Acc(qnan()));
      break;
    }
    default: break;  // unreachable (see the top of this file); p.op is uniform, so no thread waits at a barrier
  }
}

template <int G>
float group_fold(float v, bool is_max, threadgroup float* sh, uint tid) {
  if (G == 1) return v;
  int lane = int(tid) % G;
  sh[tid] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int width = G / 2; width > 0; width /= 2) {
    if (lane < width) {
      float a = sh[tid], b = sh[tid + width];
      sh[tid] = is_max ? (b > a ? b : a) : a + b;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }
  float r = sh[tid - lane];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return r;
}

template <typename T, int G>
void softmax_impl(device T* y, const device T* x, constant RowsParams& p, threadgroup float* sh, uint tid, uint group) {
  long groups = 256 / G;
  long row = long(group) * groups + tid / G;
  int lane = int(tid) % G;
  bool valid = row < p.outer * p.inner;
  long n = valid ? p.len : 0;
  long start = valid ? (row / p.inner) * p.len * p.inner + row % p.inner : 0;
  float m = -finf();
  float nan_seen = 0.0f;
  for (long l = lane; l < n; l += G) {
    float v = up(x[start + l * p.inner]);
    if (v != v) nan_seen = 1.0f;
    m = v > m ? v : m;
  }
  m = group_fold<G>(m, true, sh, tid);
  nan_seen = group_fold<G>(nan_seen, true, sh, tid);
  bool poisoned = nan_seen > 0.0f || m == finf();
  float sum = 0;
  if (!poisoned)
    for (long l = lane; l < n; l += G) sum += exp(float(up(x[start + l * p.inner])) - m);
  sum = group_fold<G>(sum, false, sh, tid);
  float inv = 1.0f / sum;
  for (long l = lane; l < n; l += G)
    y[start + l * p.inner] = poisoned ? Down<T>::of(qnan()) : Down<T>::of(exp(float(up(x[start + l * p.inner])) - m) * inv);
}

// rmsNorm (p.layer = 0) and layerNorm over the last dimension of contiguous rows.
template <typename T, int G>
void norm_impl(device T* y, const device T* x, const device T* w, const device T* b, constant RowsParams& p, threadgroup float* sh, uint tid, uint group) {
  long groups = 256 / G;
  long row = long(group) * groups + tid / G;
  int lane = int(tid) % G;
  bool valid = row < p.outer;
  long D = p.len;
  long n = valid ? D : 0;
  const device T* xr = x + (valid ? row * D : 0);
  float mean = 0;
  if (p.layer) {
    float s = 0;
    for (long i = lane; i < n; i += G) s += up(xr[i]);
    s = group_fold<G>(s, false, sh, tid);
    mean = s / float(D);
  }
  float ss = 0;
  for (long i = lane; i < n; i += G) {
    float d = up(xr[i]) - mean;
    ss += d * d;
  }
  ss = group_fold<G>(ss, false, sh, tid);
  float inv = rsqrt(ss / float(D) + p.eps);
  for (long i = lane; i < n; i += G) {
    float v = (up(xr[i]) - mean) * inv;
    if (p.has_weight) v *= up(w[i]);
    if (p.has_bias) v += up(b[i]);
    y[row * D + i] = Down<T>::of(v);
  }
}

// A query element as the scores use it: rounded to the KV cache's type where that differs
// (float32 queries over a float16 cache, as the CPU computes them).
template <typename T, typename TKV>
struct QueryAs {
  static float of(T x) { return up(Down<TKV>::of(up(x))); }
};
template <typename T>
struct QueryAs<T, T> {
  static float of(T x) { return up(x); }
};

// One threadgroup (256 threads) per query row; scores in `scratch` (a device buffer row). Only the
// first p.used keys hold data (a preallocated cache's filled prefix); causal aligns to their end.
// Per-row form (lengths set): batch entry b uses its first lengths[b] keys; a length outside
// [0, Lk] is reported through `error` (as take reports an index) and attends over none.
template <typename T, typename TKV>
void attention_impl(device T* y, const device T* q, const device TKV* k, const device TKV* v, device float* scratch,
                    const device int* lengths, device atomic_int* error, constant AttnParams& p, threadgroup float* sh,
                    uint tid, uint r) {
  device float* scores = scratch + long(r) * p.Lk;
  long i = r % p.Lq, h = (r / p.Lq) % p.H, bi = r / (p.Lq * p.H);
  long kv = bi * p.Hk + h / (p.H / p.Hk);
  const device T* qi = q + long(r) * p.D;
  long used = p.used;
  if (lengths) {
    used = lengths[bi];
    if (used < 0 || used > p.Lk) {
      int expected = 0;
      if (tid == 0 && atomic_compare_exchange_weak_explicit(&error[0], &expected, 1, memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&error[1], int(used), memory_order_relaxed);
      used = 0;
    }
  }
  long visible = used;
  if (p.causal) {
    long last = i + used - p.Lq + 1;
    visible = last < 0 ? 0 : (last < used ? last : used);
  }
  float m = -finf();
  for (long j = tid; j < visible; j += 256) {
    const device TKV* kj = k + (kv * p.Lk + j) * p.D;
    float dot = 0;
    for (long d = 0; d < p.D; ++d) dot += QueryAs<T, TKV>::of(qi[d]) * up(kj[d]);
    float s = dot * p.scale;
    scores[j] = s;
    m = s > m ? s : m;
  }
  m = group_fold<256>(m, true, sh, tid);
  float total = 0;
  for (long j = tid; j < visible; j += 256) {
    float pj = exp(scores[j] - m);
    scores[j] = pj;
    total += pj;
  }
  total = group_fold<256>(total, false, sh, tid);  // its barriers also order the scores writes
  float inv = total > 0 ? 1.0f / total : 0.0f;
  for (long d = tid; d < p.Dv; d += 256) {
    float acc = 0;
    for (long j = 0; j < visible; ++j) acc += scores[j] * up(v[(kv * p.Lk + j) * p.Dv + d]);
    y[long(r) * p.Dv + d] = Down<T>::of(acc * inv);
  }
}

// Per-row form (offsets set): the rows of leading entry b start at offsets[b].
template <typename T>
void rope_impl(device T* y, const device T* x, const device int* offsets, constant RopeParams& p, uint gid, uint gsize) {
  int half_dims = p.dims / 2;
  GRID_STRIDE(e, p.rows * p.D) {
    long r = e / p.D, d = e % p.D;
    if (d >= p.dims) { y[e] = x[e]; continue; }
    int i = p.traditional ? int(d / 2) : int(d < half_dims ? d : d - half_dims);
    bool first = p.traditional ? (d % 2 == 0) : d < half_dims;
    long a = p.traditional ? 2 * i : i, b = p.traditional ? 2 * i + 1 : i + half_dims;
    long start = offsets ? long(offsets[r / p.rows_per_entry]) : p.offset;
    float pos = (float(start + r % p.L) + (offsets ? 0.0f : p.offset_fraction)) * p.scale;
    float theta = pos * pow(p.base, -2.0f * float(i) / float(p.dims));
    float cs = cos(theta), sn = sin(theta);
    float xa = up(x[r * p.D + a]), xb = up(x[r * p.D + b]);
    y[e] = Down<T>::of(first ? xa * cs - xb * sn : xa * sn + xb * cs);
  }
}

// Y[batch, M, N] = A @ B through strides: 16x16 tiles in threadgroup memory, float accumulation
// in k order. One threadgroup of 256 threads per output tile.
template <typename T>
void matmul_impl(device T* y, const device T* a, const device T* b, constant MatmulParams& p, threadgroup float* ta,
                 threadgroup float* tb, uint2 tid2, uint3 tile) {
  int tx = int(tid2.x), ty = int(tid2.y);
  long row = long(tile.y) * 16 + ty, col = long(tile.x) * 16 + tx;
  for (long z = tile.z; z < p.batches; z += 65535) {
    const device T* az = a + offset_of(z, p.batch, p.ab);
    const device T* bz = b + offset_of(z, p.batch, p.bb);
    float acc = 0;
    for (long k0 = 0; k0 < p.K; k0 += 16) {
      long ka = k0 + tx, kb = k0 + ty;
      ta[ty * 17 + tx] = (row < p.M && ka < p.K) ? float(up(az[row * p.a_row + ka * p.a_col])) : 0.0f;
      tb[ty * 17 + tx] = (kb < p.K && col < p.N) ? float(up(bz[kb * p.b_row + col * p.b_col])) : 0.0f;
      threadgroup_barrier(mem_flags::mem_threadgroup);
      for (int kk = 0; kk < 16; ++kk) acc += ta[ty * 17 + kk] * tb[kk * 17 + tx];
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (row < p.M && col < p.N) y[z * p.M * p.N + row * p.N + col] = Down<T>::of(acc);
  }
}

// The same product with SIMD-group matrices (Apple7 and later GPUs): a threadgroup of four
// SIMD-groups computes a 32x32 output tile, each SIMD-group a 16x16 quarter of it as 2x2 8x8
// accumulators. A and B are staged through threadgroup memory as float (f16 and bf16 widened
// exactly by up()), so every dtype multiplies as simdgroup_float8x8 and accumulates in float, as
// the 16x16 kernel does; an 8-deep multiply-accumulate adds its products in the hardware's order,
// so results can differ from the 16x16 kernel in the last bits. Out-of-range elements stage as
// zeros, and the tile goes back through threadgroup memory so each thread rounds (Down<T>) and
// writes its own elements within bounds: any M, N and K work.
enum { SG_TILE = 32, SG_K = 16, SG_THREADS = 128, SG_A_STRIDE = SG_K + 4, SG_B_STRIDE = SG_TILE + 4, SG_C_STRIDE = SG_TILE + 4 };

template <typename T>
void matmul_simdgroup_impl(device T* y, const device T* a, const device T* b, constant MatmulParams& p, threadgroup float* ta,
                           threadgroup float* tb, threadgroup float* tc, uint tid, uint simd_group, uint3 tile) {
  long row0 = long(tile.y) * SG_TILE, col0 = long(tile.x) * SG_TILE;
  int qr = int(simd_group / 2) * 16, qc = int(simd_group % 2) * 16;  // this SIMD-group's quarter
  for (long z = tile.z; z < p.batches; z += 65535) {
    const device T* az = a + offset_of(z, p.batch, p.ab);
    const device T* bz = b + offset_of(z, p.batch, p.bb);
    simdgroup_float8x8 acc[2][2];
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    for (long k0 = 0; k0 < p.K; k0 += SG_K) {
      // A's 32x16 block and B's 16x32 block: SG_TILE * SG_K elements each, 4 per thread.
      for (int e = int(tid); e < SG_TILE * SG_K; e += SG_THREADS) {
        int ar = e / SG_K, ak = e % SG_K, bk = e / SG_TILE, bc = e % SG_TILE;
        long row = row0 + ar, ka = k0 + ak, kb = k0 + bk, col = col0 + bc;
        ta[ar * SG_A_STRIDE + ak] = (row < p.M && ka < p.K) ? float(up(az[row * p.a_row + ka * p.a_col])) : 0.0f;
        tb[bk * SG_B_STRIDE + bc] = (kb < p.K && col < p.N) ? float(up(bz[kb * p.b_row + col * p.b_col])) : 0.0f;
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
      for (int kk = 0; kk < SG_K; kk += 8) {
        simdgroup_float8x8 af[2], bf[2];
        for (int i = 0; i < 2; ++i) simdgroup_load(af[i], ta + (qr + 8 * i) * SG_A_STRIDE + kk, SG_A_STRIDE);
        for (int j = 0; j < 2; ++j) simdgroup_load(bf[j], tb + kk * SG_B_STRIDE + qc + 8 * j, SG_B_STRIDE);
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) simdgroup_multiply_accumulate(acc[i][j], af[i], bf[j], acc[i][j]);
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) simdgroup_store(acc[i][j], tc + (qr + 8 * i) * SG_C_STRIDE + qc + 8 * j, SG_C_STRIDE);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    device T* yz = y + z * p.M * p.N;
    for (int e = int(tid); e < SG_TILE * SG_TILE; e += SG_THREADS) {
      int r = e / SG_TILE, c = e % SG_TILE;
      if (row0 + r < p.M && col0 + c < p.N) yz[(row0 + r) * p.N + col0 + c] = Down<T>::of(tc[r * SG_C_STRIDE + c]);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // the next batch rewrites tc
  }
}

// ---- quantized weights -----------------------------------------------------------------------
//
// GGUF blocks of 32 weights along a row: Q4_0 (18 bytes: float16 d, 16 bytes of nibbles,
// w = (q - 8) * d), Q4_1 (20 bytes: float16 d and m, nibbles, w = q * d + m), Q8_0 (34 bytes:
// float16 d, 32 int8, w = q * d). Byte j of a Q4 block holds weight j (low nibble) and j + 16
// (high nibble). Read byte by byte: blocks are only 2-byte aligned.
//
// Dequantization is bit for bit the CPU's (cpu/quant.cpp): every product of a 4- or 8-bit integer
// and a float16 scale (11 significant bits) is exact in float, so rounding happens only at Q4_1's
// added min, and a fused multiply-add the compiler may form rounds the same.

enum { QT_Q4_0, QT_Q4_1, QT_Q8_0 };

inline float q_half(const device uchar* p) {
  f16 h;
  h.bits = ushort(uint(p[0]) | (uint(p[1]) << 8));
  return to_float(h);
}

// Weights e and e + 16 of the block at `blk` (e < 16).
template <int TYPE>
inline void q_dequant_pair(const device uchar* blk, int e, thread float& lo, thread float& hi) {
  float d = q_half(blk);
  if (TYPE == QT_Q8_0) {
    lo = float(as_type<char>(blk[2 + e])) * d;
    hi = float(as_type<char>(blk[18 + e])) * d;
    return;
  }
  uint byte = blk[(TYPE == QT_Q4_0 ? 2 : 4) + e];
  int q_lo = int(byte & 15u), q_hi = int(byte >> 4);
  if (TYPE == QT_Q4_0) {
    lo = float(q_lo - 8) * d;
    hi = float(q_hi - 8) * d;
  } else {
    float mn = q_half(blk + 2);
    lo = float(q_lo) * d + mn;
    hi = float(q_hi) * d + mn;
  }
}

// One thread per pair of weights (e, e + 16) of a block: `count` / 2 pairs, grid-stride.
template <int TYPE, int BLOCK_BYTES>
void dequantize_impl(device float* out, const device uchar* w, constant DequantParams& p, uint gid, uint gsize) {
  GRID_STRIDE(t, p.count / 2) {
    float lo, hi;
    q_dequant_pair<TYPE>(w + (t >> 4) * BLOCK_BYTES, int(t & 15), lo, hi);
    long base = (t >> 4) * 32 + (t & 15);
    out[base] = lo;
    out[base + 16] = hi;
  }
}

// Rows of a quantized [dim, k] matrix at int32 indices (negative ones count from the end), as
// float32: the embedding lookup. An index out of range sets error[0] and error[1], as take does.
template <int TYPE, int BLOCK_BYTES>
void take_dequantize_impl(device float* y, const device uchar* w, const device int* idx, device atomic_int* error,
                          constant TakeQuantParams& p, uint gid, uint gsize) {
  long pairs = p.k / 2, row_bytes = p.k / 32 * BLOCK_BYTES;
  GRID_STRIDE(t, p.count * pairs) {
    long i = t / pairs, pair = t % pairs;
    long row = idx[i];
    if (row < 0) row += p.dim;
    long base = (pair >> 4) * 32 + (pair & 15);
    if (row < 0 || row >= p.dim) {
      int expected = 0;
      if (atomic_compare_exchange_weak_explicit(&error[0], &expected, 1, memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&error[1], idx[i], memory_order_relaxed);
      y[i * p.k + base] = 0.0f;
      y[i * p.k + base + 16] = 0.0f;
      continue;
    }
    float lo, hi;
    q_dequant_pair<TYPE>(w + row * row_bytes + (pair >> 4) * BLOCK_BYTES, int(pair & 15), lo, hi);
    y[i * p.k + base] = lo;
    y[i * p.k + base + 16] = hi;
  }
}

// y[m, n] = x[m, k] W^T for small m (decode): each SIMD-group takes whole output columns j (rows
// of W) in grid-stride order, its lanes take blocks lane, lane + width, ..., dequantize each
// block once (the exact weights above) and multiply it with up to QMM_ROWS rows of x in float.
// The lanes' partial sums then meet in a fixed shuffle tree, so every output's sum has one order
// whatever the grid: results are deterministic, though not the CPU's (which quantizes the
// activations to 8 bits, as ggml does, and sums integers).
#define QMM_ROWS 8
template <int TYPE, int BLOCK_BYTES>
void quantized_matmul_impl(device float* y, const device float* x, const device uchar* w, constant QuantMatmulParams& p,
                           uint lane, uint width, uint simd_group, uint simd_groups, uint group, uint groups) {
  long blocks = p.k / 32, row_bytes = blocks * BLOCK_BYTES;
  long first = long(group) * simd_groups + simd_group, step = long(groups) * simd_groups;
  for (long j = first; j < p.n; j += step) {
    const device uchar* row = w + j * row_bytes;
    for (long i0 = 0; i0 < p.m; i0 += QMM_ROWS) {
      int rows = p.m - i0 < QMM_ROWS ? int(p.m - i0) : QMM_ROWS;
      float acc[QMM_ROWS];
      for (int r = 0; r < QMM_ROWS; ++r) acc[r] = 0.0f;
      for (long b = lane; b < blocks; b += width) {
        float wv[32];
        for (int e = 0; e < 16; ++e) q_dequant_pair<TYPE>(row + b * BLOCK_BYTES, e, wv[e], wv[e + 16]);
        for (int r = 0; r < rows; ++r) {
          const device float* xr = x + (i0 + r) * p.k + b * 32;
          float dot = 0.0f;
          for (int e = 0; e < 32; ++e) dot += wv[e] * xr[e];
          acc[r] += dot;
        }
      }
      for (int r = 0; r < rows; ++r) {  // `rows` is the same for every lane: all reach the shuffles
        float v = acc[r];
        for (uint offset = width / 2; offset > 0; offset /= 2) v += simd_shuffle_down(v, ushort(offset));
        if (lane == 0) y[(i0 + r) * p.n + j] = v;
      }
    }
  }
}

// ---- entry points ----------------------------------------------------------------------------

#define EW_ARGS constant EwParams& p [[buffer(8)]], GRID_ARGS

#define ARANGE(T, S) kernel void arange_##S(device T* out [[buffer(0)]], constant FillParams& p [[buffer(8)]], GRID_ARGS) { arange_impl<T>(out, p, gid, gsize); }
ARANGE(float, f32) ARANGE(f16, f16) ARANGE(bf16, bf16) ARANGE(int, i32) ARANGE(uchar, b8)

#define UNARY(T, S) kernel void unary_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], EW_ARGS) { unary_impl<T>(y, x, p, gid, gsize); }
UNARY(float, f32) UNARY(f16, f16) UNARY(bf16, bf16) UNARY(int, i32)

#define BINARY(T, S) kernel void binary_##S(device uchar* y [[buffer(0)]], const device T* a [[buffer(1)]], const device T* b [[buffer(2)]], EW_ARGS) { binary_impl<T>(y, a, b, p, gid, gsize); }
BINARY(float, f32) BINARY(f16, f16) BINARY(bf16, bf16) BINARY(int, i32) BINARY(uchar, b8)

#define BINARY_SCALAR(T, S) kernel void binary_scalar_##S(device uchar* y [[buffer(0)]], const device T* a [[buffer(1)]], constant ScalarParams& p [[buffer(8)]], GRID_ARGS) { binary_scalar_impl<T>(y, a, p, gid, gsize); }
BINARY_SCALAR(float, f32) BINARY_SCALAR(f16, f16) BINARY_SCALAR(bf16, bf16) BINARY_SCALAR(int, i32)

kernel void fused_f32(device float* y [[buffer(0)]], const device float* x0 [[buffer(1)]], const device float* x1 [[buffer(2)]], const device float* x2 [[buffer(3)]], const device float* x3 [[buffer(4)]], constant FusedParams& p [[buffer(8)]], GRID_ARGS) { fused_impl(y, x0, x1, x2, x3, p, gid, gsize); }

#define BY_SIZE(X) X(uint, 4) X(ushort, 2) X(uchar, 1)
#define WHERE(T, S) kernel void where_##S(device T* y [[buffer(0)]], const device uchar* c [[buffer(1)]], const device T* a [[buffer(2)]], const device T* b [[buffer(3)]], EW_ARGS) { where_impl<T>(y, c, a, b, p, gid, gsize); }
BY_SIZE(WHERE)
#define COPY(T, S) kernel void copy_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], EW_ARGS) { copy_impl<T>(y, x, p, gid, gsize); }
BY_SIZE(COPY)
#define COPY_ROWS(T, S) kernel void copy_rows_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], const device int* offsets [[buffer(2)]], device atomic_int* error [[buffer(3)]], constant RowWriteParams& p [[buffer(8)]], GRID_ARGS) { copy_rows_impl<T>(y, x, offsets, error, p, gid, gsize); }
BY_SIZE(COPY_ROWS)
#define TAKE(T, S) kernel void take_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], const device int* idx [[buffer(2)]], device atomic_int* error [[buffer(3)]], constant TakeParams& p [[buffer(8)]], GRID_ARGS) { take_impl<T>(y, x, idx, error, p, gid, gsize); }
BY_SIZE(TAKE)

#define ASTYPE_TO(F, FS, T, TS) kernel void astype_##FS##_##TS(device T* y [[buffer(0)]], const device F* x [[buffer(1)]], EW_ARGS) { astype_impl<F, T>(y, x, p, gid, gsize); }
#define ASTYPE_FROM(F, FS) ASTYPE_TO(F, FS, float, f32) ASTYPE_TO(F, FS, f16, f16) ASTYPE_TO(F, FS, bf16, bf16) ASTYPE_TO(F, FS, int, i32) ASTYPE_TO(F, FS, uchar, b8)
ASTYPE_FROM(float, f32) ASTYPE_FROM(f16, f16) ASTYPE_FROM(bf16, bf16) ASTYPE_FROM(int, i32) ASTYPE_FROM(uchar, b8)

#define GROUP_ARGS uint tid [[thread_index_in_threadgroup]], uint group [[threadgroup_position_in_grid]]
#define REDUCE_G(T, S, ACC, G) kernel void reduce_##S##_g##G(device uchar* y [[buffer(0)]], const device T* x [[buffer(1)]], constant RowsParams& p [[buffer(8)]], GROUP_ARGS) { threadgroup RState<ACC> sh[256]; reduce_impl<T, ACC, G>(y, x, p, sh, tid, group); }
#define REDUCE_F(T, S) REDUCE_G(T, S, float, 1) REDUCE_G(T, S, float, 32) REDUCE_G(T, S, float, 256)
#define REDUCE_I(T, S) REDUCE_G(T, S, long, 1) REDUCE_G(T, S, long, 32) REDUCE_G(T, S, long, 256)
REDUCE_F(float, f32) REDUCE_F(f16, f16) REDUCE_F(bf16, bf16) REDUCE_I(int, i32) REDUCE_I(uchar, b8)

#define ROWS_G(T, S, G) \
  kernel void softmax_##S##_g##G(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], constant RowsParams& p [[buffer(8)]], GROUP_ARGS) { threadgroup float sh[256]; softmax_impl<T, G>(y, x, p, sh, tid, group); } \
  kernel void norm_##S##_g##G(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], const device T* w [[buffer(2)]], const device T* b [[buffer(3)]], constant RowsParams& p [[buffer(8)]], GROUP_ARGS) { threadgroup float sh[256]; norm_impl<T, G>(y, x, w, b, p, sh, tid, group); }
#define ROWS(T, S) ROWS_G(T, S, 1) ROWS_G(T, S, 32) ROWS_G(T, S, 256)
ROWS(float, f32) ROWS(f16, f16) ROWS(bf16, bf16)

#define ATTENTION(T, TKV, S) \
  kernel void attention_##S(device T* y [[buffer(0)]], const device T* q [[buffer(1)]], const device TKV* k [[buffer(2)]], const device TKV* v [[buffer(3)]], device float* scratch [[buffer(4)]], constant AttnParams& p [[buffer(8)]], GROUP_ARGS) { threadgroup float sh[256]; attention_impl<T, TKV>(y, q, k, v, scratch, nullptr, nullptr, p, sh, tid, group); } \
  kernel void attention_rows_##S(device T* y [[buffer(0)]], const device T* q [[buffer(1)]], const device TKV* k [[buffer(2)]], const device TKV* v [[buffer(3)]], device float* scratch [[buffer(4)]], const device int* lengths [[buffer(5)]], device atomic_int* error [[buffer(6)]], constant AttnParams& p [[buffer(8)]], GROUP_ARGS) { threadgroup float sh[256]; attention_impl<T, TKV>(y, q, k, v, scratch, lengths, error, p, sh, tid, group); }
ATTENTION(float, f16, f32_f16)
#define FUSED(T, S) \
  ATTENTION(T, T, S) \
  kernel void rope_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], constant RopeParams& p [[buffer(8)]], GRID_ARGS) { rope_impl<T>(y, x, nullptr, p, gid, gsize); } \
  kernel void rope_rows_##S(device T* y [[buffer(0)]], const device T* x [[buffer(1)]], const device int* offsets [[buffer(2)]], constant RopeParams& p [[buffer(8)]], GRID_ARGS) { rope_impl<T>(y, x, offsets, p, gid, gsize); } \
  kernel void matmul_##S(device T* y [[buffer(0)]], const device T* a [[buffer(1)]], const device T* b [[buffer(2)]], constant MatmulParams& p [[buffer(8)]], uint3 tid3 [[thread_position_in_threadgroup]], uint3 tile [[threadgroup_position_in_grid]]) { threadgroup float ta[16 * 17]; threadgroup float tb[16 * 17]; matmul_impl<T>(y, a, b, p, ta, tb, tid3.xy, tile); } \
  kernel void matmul_simdgroup_##S(device T* y [[buffer(0)]], const device T* a [[buffer(1)]], const device T* b [[buffer(2)]], constant MatmulParams& p [[buffer(8)]], uint tid [[thread_index_in_threadgroup]], uint simd_group [[simdgroup_index_in_threadgroup]], uint3 tile [[threadgroup_position_in_grid]]) { \
    threadgroup float ta[SG_TILE * SG_A_STRIDE]; threadgroup float tb[SG_K * SG_B_STRIDE]; threadgroup float tc[SG_TILE * SG_C_STRIDE]; \
    matmul_simdgroup_impl<T>(y, a, b, p, ta, tb, tc, tid, simd_group, tile); }
FUSED(float, f32) FUSED(f16, f16) FUSED(bf16, bf16)

#define QUANT(TS, TYPE, BYTES) \
  kernel void dequantize_##TS##_to_f32(device float* y [[buffer(0)]], const device uchar* w [[buffer(1)]], constant DequantParams& p [[buffer(8)]], GRID_ARGS) { dequantize_impl<TYPE, BYTES>(y, w, p, gid, gsize); } \
  kernel void take_dequantize_##TS(device float* y [[buffer(0)]], const device uchar* w [[buffer(1)]], const device int* idx [[buffer(2)]], device atomic_int* error [[buffer(3)]], constant TakeQuantParams& p [[buffer(8)]], GRID_ARGS) { take_dequantize_impl<TYPE, BYTES>(y, w, idx, error, p, gid, gsize); } \
  kernel void quantized_matmul_##TS(device float* y [[buffer(0)]], const device float* x [[buffer(1)]], const device uchar* w [[buffer(2)]], constant QuantMatmulParams& p [[buffer(8)]], \
                                    uint lane [[thread_index_in_simdgroup]], uint width [[threads_per_simdgroup]], uint simd_group [[simdgroup_index_in_threadgroup]], \
                                    uint simd_groups [[simdgroups_per_threadgroup]], uint group [[threadgroup_position_in_grid]], uint groups [[threadgroups_per_grid]]) { \
    quantized_matmul_impl<TYPE, BYTES>(y, x, w, p, lane, width, simd_group, simd_groups, group, groups); }
QUANT(q4_0, QT_Q4_0, 18) QUANT(q4_1, QT_Q4_1, 20) QUANT(q8_0, QT_Q8_0, 34)
