// The CUDA kernels of lanes, compiled at run time by NVRTC (so building liblanes needs no CUDA
// toolkit). The op codes (OP_*, R_*) are defined ahead of this text from lanes_table.def.
// Each kernel mirrors the CPU kernel of the same op: same accumulation types, same
// float16/bfloat16 rounding (done in software, bit for bit as ffi/src/half.hpp), fixed
// reduction orders, so results are deterministic under any concurrency.
typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define MAXD 32
struct KShape { i64 nd; i64 dims[MAXD]; };
struct KStrides { i64 offset; i64 s[MAXD]; };

struct f16 { u16 bits; };
struct bf16 { u16 bits; };

// ---- storage <-> compute ----------------------------------------------------------------------

__device__ __forceinline__ float to_float(bf16 h) { return __uint_as_float(u32(h.bits) << 16); }
__device__ __forceinline__ bf16 to_bf16(float f) {
  u32 u = __float_as_uint(f);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) { r.bits = u16((u >> 16) | 0x40); return r; }
  u += 0x7fffu + ((u >> 16) & 1);
  r.bits = u16(u >> 16);
  return r;
}
__device__ __forceinline__ float to_float(f16 h) {
  u32 sign = u32(h.bits & 0x8000) << 16;
  u32 e = (h.bits >> 10) & 0x1f;
  u32 mant = h.bits & 0x3ff;
  if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (mant << 13));
  if (e == 0) {
    if (mant == 0) return __uint_as_float(sign);
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((e + 112) << 23) | (mant << 13));
}
__device__ __forceinline__ f16 to_f16(float f) {
  u32 u = __float_as_uint(f);
  u16 sign = u16((u >> 16) & 0x8000);
  u32 a = u & 0x7fffffffu;
  f16 r;
  if (a > 0x7f800000u) { r.bits = u16(sign | 0x7e00); return r; }
  if (a >= 0x477ff000u) { r.bits = u16(sign | 0x7c00); return r; }
  if (a < 0x38800000u) {
    float scaled = __uint_as_float(a) * 16777216.0f;
    u32 q = u32(scaled);
    float rem = scaled - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1))) ++q;
    r.bits = u16(sign | q);
    return r;
  }
  u32 mant = a & 0x7fffffu;
  u32 e = (a >> 23) - 112;
  u32 h = (e << 10) | (mant >> 13);
  u32 rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) ++h;
  r.bits = u16(sign | h);
  return r;
}

// up: storage -> compute (halves widen to float); down: float -> storage.
__device__ __forceinline__ float up(float v) { return v; }
__device__ __forceinline__ float up(f16 v) { return to_float(v); }
__device__ __forceinline__ float up(bf16 v) { return to_float(v); }
__device__ __forceinline__ int up(int v) { return v; }
__device__ __forceinline__ int up(u8 v) { return v; }

template <class T> struct Down;
template <> struct Down<float> { static __device__ __forceinline__ float of(float v) { return v; } };
template <> struct Down<f16> { static __device__ __forceinline__ f16 of(float v) { return to_f16(v); } };
template <> struct Down<bf16> { static __device__ __forceinline__ bf16 of(float v) { return to_bf16(v); } };

__device__ __forceinline__ float qnan() { return __uint_as_float(0x7fc00000u); }
__device__ __forceinline__ float finf() { return __uint_as_float(0x7f800000u); }
__device__ __forceinline__ double dnan() { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ double dinf() { return __longlong_as_double(0x7ff0000000000000LL); }

// double -> storage with the CPU backend's rules: int32 saturates (NaN to 0), bool is "not
// zero", floats round through float32.
template <class T> struct FromDouble;
template <> struct FromDouble<float> { static __device__ float of(double v) { return float(v); } };
template <> struct FromDouble<f16> { static __device__ f16 of(double v) { return to_f16(float(v)); } };
template <> struct FromDouble<bf16> { static __device__ bf16 of(double v) { return to_bf16(float(v)); } };
template <> struct FromDouble<u8> { static __device__ u8 of(double v) { return v != 0 ? 1 : 0; } };
template <> struct FromDouble<int> {
  static __device__ int of(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return 2147483647;
    if (v <= -2147483648.0) return (-2147483647 - 1);
    return int(v);
  }
};

// ---- indexing --------------------------------------------------------------------------------

// i / n, with i % n in `rem`, for i >= 0 and n > 0: in 32 bits when both fit, a fraction of the
// instructions of a 64-bit division, which sets the time of the short strided kernels.
__device__ __forceinline__ i64 div_rem(i64 i, i64 n, i64& rem) {
  if (((u64(i) | u64(n)) >> 32) == 0) {
    u32 q = u32(i) / u32(n);
    rem = i64(u32(i) - q * u32(n));
    return q;
  }
  rem = i % n;
  return i / n;
}

__device__ __forceinline__ i64 offset_of(i64 i, const KShape& shape, const KStrides& st) {
  i64 off = st.offset;
  for (int d = int(shape.nd) - 1; d >= 0; --d) {
    i64 r;
    i = div_rem(i, shape.dims[d], r);
    off += r * st.s[d];
  }
  return off;
}

// Every kernel starts with this, before it touches memory: a compiled plan launches its kernels
// so that each may start while the one before it in the stream finishes (programmatic dependent
// launch, sm_90 on). The wait returns once the previous kernel has completed and its writes are
// visible, and then this kernel lets its own successor start, which does the same: at most one
// kernel runs ahead, its blocks resident and waiting instead of launched after a gap. Outside
// such launches both instructions return at once. scripts/check_cuda_kernels.py checks every
// entry point's PTX waits before its first global memory access.
__device__ __forceinline__ void await_previous_kernel() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#define GRID_STRIDE(i, n) for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += i64(gridDim.x) * blockDim.x)

// ---- creation --------------------------------------------------------------------------------

#if defined(LANES_FAMILY_ELEMENTWISE)
extern "C" __global__ void fill_4(u32* out, i64 n, u32 v) { await_previous_kernel(); GRID_STRIDE(i, n) out[i] = v; }
extern "C" __global__ void fill_2(u16* out, i64 n, u32 v) { await_previous_kernel(); GRID_STRIDE(i, n) out[i] = u16(v); }
extern "C" __global__ void fill_1(u8* out, i64 n, u32 v) { await_previous_kernel(); GRID_STRIDE(i, n) out[i] = u8(v); }
#endif

template <class T>
__device__ void arange_impl(T* out, i64 n, double start, double step) {
  GRID_STRIDE(i, n) out[i] = FromDouble<T>::of(start + double(i) * step);
}

__device__ __forceinline__ void philox(u32 c[4], u32 k0, u32 k1) {
  for (int round = 0; round < 10; ++round) {
    u64 p0 = u64(0xD2511F53u) * c[0];
    u64 p1 = u64(0xCD9E8D57u) * c[2];
    u32 n0 = u32(p1 >> 32) ^ c[1] ^ k0, n1 = u32(p1), n2 = u32(p0 >> 32) ^ c[3] ^ k1, n3 = u32(p0);
    c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

#if defined(LANES_FAMILY_ELEMENTWISE)
// Counter j yields elements 2j and 2j+1 (a Box-Muller pair for normal), as on the CPU.
extern "C" __global__ void random_f32(float* out, i64 n, u64 seed, double a, double b, int normal) {
  await_previous_kernel();
  const double k2pow32 = 4294967296.0;
  i64 pairs = (n + 1) / 2;
  GRID_STRIDE(j, pairs) {
    u32 c[4] = {u32(j), u32(u64(j) >> 32), 0, 0};
    philox(c, u32(seed), u32(seed >> 32));
    double v0, v1;
    if (normal) {
      double u1 = (double(c[0]) + 0.5) / k2pow32, u2 = (double(c[1]) + 0.5) / k2pow32;
      double radius = sqrt(-2.0 * log(u1));
      double angle = 2.0 * 3.14159265358979323846 * u2;
      v0 = a + b * radius * cos(angle);
      v1 = a + b * radius * sin(angle);
    } else {
      v0 = a + (b - a) * (double(c[0]) / k2pow32);
      v1 = a + (b - a) * (double(c[1]) / k2pow32);
    }
    out[2 * j] = float(v0);
    if (2 * j + 1 < n) out[2 * j + 1] = float(v1);
  }
}
#endif

// ---- elementwise -----------------------------------------------------------------------------


__device__ __forceinline__ float unary_float(int op, float x) {
  switch (op) {
    case OP_EXP: return expf(x);
    case OP_LOG: return logf(x);
    case OP_NEGATIVE: return -x;
    case OP_ABS: return fabsf(x);
    case OP_SQUARE: return __fmul_rn(x, x);
    case OP_SQRT: return sqrtf(x);
    case OP_RSQRT: return 1.0f / sqrtf(x);
    case OP_TANH: return tanhf(x);
    case OP_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case OP_SILU: return x / (1.0f + expf(-x));
    case OP_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case OP_GELU_APPROX: {
      float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(inner));
    }
    case OP_SIN: return sinf(x);
    case OP_COS: return cosf(x);
    default: __trap();  // the graph only builds known ops
  }
}

__device__ __forceinline__ int unary_int(int op, int x) {
  u32 u = u32(x);
  switch (op) {
    case OP_ABS: return x < 0 ? int(0u - u) : x;
    case OP_SQUARE: return int(u * u);
    case OP_NEGATIVE: return int(0u - u);
    default: __trap();  // floating-only ops never reach ints
  }
}

template <class T>
__device__ __forceinline__ T unary_one(int op, T x) { return Down<T>::of(unary_float(op, up(x))); }
template <>
__device__ __forceinline__ int unary_one<int>(int op, int x) { return unary_int(op, x); }

// 16-byte packs for the contiguous fast paths (callers check 16-byte alignment).
template <class T>
struct alignas(16) Pack {
  T v[16 / sizeof(T)];
};

// flags & 1: input and output are contiguous with the same shape (no index arithmetic);
// flags & 2: also 16-byte aligned, so whole packs move per load.
template <class T>
__device__ void unary_impl(T* y, const T* x, KStrides sx, KShape shape, i64 n, int op, int flags) {
  if (flags & 2) {
    constexpr int V = 16 / sizeof(T);
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x + sx.offset);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(y);
    GRID_STRIDE(i, n / V) {
      Pack<T> v = xp[i];
#pragma unroll
      for (int k = 0; k < V; ++k) v.v[k] = unary_one<T>(op, v.v[k]);
      yp[i] = v;
    }
    const T* xs = x + sx.offset;
    GRID_STRIDE(i, n % V) y[n / V * V + i] = unary_one<T>(op, xs[n / V * V + i]);
  } else if (flags & 1) {
    const T* xs = x + sx.offset;
    GRID_STRIDE(i, n) y[i] = unary_one<T>(op, xs[i]);
  } else {
    GRID_STRIDE(i, n) y[i] = unary_one<T>(op, x[offset_of(i, shape, sx)]);
  }
}

__device__ __forceinline__ float binary_float(int op, float a, float b) {
  switch (op) {
    // Rounded here, never contracted with a neighbouring op into a fused multiply-add: a fused
    // chain computes exactly what its ops stored one by one.
    case OP_ADD: return __fadd_rn(a, b);
    case OP_SUBTRACT: return __fsub_rn(a, b);
    case OP_MULTIPLY: return __fmul_rn(a, b);
    case OP_DIVIDE: return a / b;
    case OP_POWER: return powf(a, b);
    case OP_MINIMUM: return (a != a || b != b) ? qnan() : (a < b ? a : b);
    case OP_MAXIMUM: return (a != a || b != b) ? qnan() : (a > b ? a : b);
    default: __trap();  // comparisons take compare()
  }
}

__device__ __forceinline__ int binary_int(int op, int a, int b) {
  u32 ua = u32(a), ub = u32(b);
  switch (op) {
    case OP_ADD: return int(ua + ub);
    case OP_SUBTRACT: return int(ua - ub);
    case OP_MULTIPLY: return int(ua * ub);
    case OP_MINIMUM: return a < b ? a : b;
    case OP_MAXIMUM: return a > b ? a : b;
    default: __trap();  // divide and power are float-only (promoted in the graph)
  }
}

template <class T> struct Arith {
  static __device__ __forceinline__ T of(int op, T a, T b) { return Down<T>::of(binary_float(op, up(a), up(b))); }
};
template <> struct Arith<int> {
  static __device__ __forceinline__ int of(int op, int a, int b) { return binary_int(op, a, b); }
};
template <> struct Arith<u8> {
  static __device__ __forceinline__ u8 of(int, u8, u8) { return 0; }  // bools only compare
};

template <class T>
__device__ __forceinline__ u8 compare(int op, T a, T b) {
  auto av = up(a);
  auto bv = up(b);
  return op == OP_EQUAL ? av == bv : op == OP_LESS ? av < bv : av > bv;
}

// Contiguous, 16-byte aligned operands: whole packs per load. Op < 0: read `op` at run time.
template <class T, int Op>
__device__ void binary_packs(T* y, const T* a, const T* b, i64 n, int op = 0) {
  constexpr int V = 16 / sizeof(T);
  const Pack<T>* ap = reinterpret_cast<const Pack<T>*>(a);
  const Pack<T>* bp = reinterpret_cast<const Pack<T>*>(b);
  Pack<T>* yp = reinterpret_cast<Pack<T>*>(y);
  int o = Op >= 0 ? Op : op;
  GRID_STRIDE(i, n / V) {
    Pack<T> u = ap[i], v = bp[i];
#pragma unroll
    for (int k = 0; k < V; ++k) u.v[k] = Arith<T>::of(o, u.v[k], v.v[k]);
    yp[i] = u;
  }
  i64 done = n / V * V;
  GRID_STRIDE(i, n - done) y[done + i] = Arith<T>::of(o, a[done + i], b[done + i]);
}

template <class T>
__device__ void binary_impl(void* out, const T* a, KStrides sa, const T* b, KStrides sb, KShape shape, i64 n, int op,
                            int flags) {
  bool cmp = op >= OP_EQUAL;
  if ((flags & 2) && !cmp) {
    // The op is a template argument here, so the inner loop is a plain map.
    switch (op) {
      case OP_ADD: return binary_packs<T, OP_ADD>(static_cast<T*>(out), a + sa.offset, b + sb.offset, n);
      case OP_SUBTRACT: return binary_packs<T, OP_SUBTRACT>(static_cast<T*>(out), a + sa.offset, b + sb.offset, n);
      case OP_MULTIPLY: return binary_packs<T, OP_MULTIPLY>(static_cast<T*>(out), a + sa.offset, b + sb.offset, n);
      default: return binary_packs<T, -1>(static_cast<T*>(out), a + sa.offset, b + sb.offset, n, op);
    }
  }
  if (flags & 1) {
    const T* ap = a + sa.offset;
    const T* bp = b + sb.offset;
    if (cmp) { GRID_STRIDE(i, n) static_cast<u8*>(out)[i] = compare<T>(op, ap[i], bp[i]); }
    else { GRID_STRIDE(i, n) static_cast<T*>(out)[i] = Arith<T>::of(op, ap[i], bp[i]); }
    return;
  }
  GRID_STRIDE(i, n) {
    T av = a[offset_of(i, shape, sa)], bv = b[offset_of(i, shape, sb)];
    if (cmp) static_cast<u8*>(out)[i] = compare<T>(op, av, bv);
    else static_cast<T*>(out)[i] = Arith<T>::of(op, av, bv);
  }
}

// `a op scalar` (or `scalar op a`, flags & 4): the scalar is stored as the array's type first,
// exactly as an array of that type would hold it. flags & 1: contiguous.
template <class T>
__device__ void binary_scalar_impl(void* out, const T* a, KStrides sa, KShape shape, i64 n, int op, int flags, double scalar,
                                   const double* dyn) {
  const T s = FromDouble<T>::of(dyn ? *dyn : scalar);
  const bool first = flags & 4;
  const bool cmp = op >= OP_EQUAL;
  GRID_STRIDE(i, n) {
    T av = (flags & 1) ? a[sa.offset + i] : a[offset_of(i, shape, sa)];
    T l = first ? s : av, r = first ? av : s;
    if (cmp) static_cast<u8*>(out)[i] = compare<T>(op, l, r);
    else static_cast<T*>(out)[i] = Arith<T>::of(op, l, r);
  }
}

// A compiled plan's chain of float32 elementwise ops (ffi/src/gpu/kernel_layout.hpp's KFused and
// KFusedWalk): the running value starts as input 0 and each step applies the op its own kernel
// would.
struct KFusedWalk {
  i64 nd;
  i64 dims[FUSED_DIMS];
  i64 offset[FUSED_INPUTS];
  i64 strides[FUSED_INPUTS][FUSED_DIMS];
};
struct KFused {
  int steps;
  signed char kind[FUSED_STEPS];
  signed char subop[FUSED_STEPS];
  signed char operand[FUSED_STEPS];
  signed char value_first[FUSED_STEPS];
  float scalar[FUSED_STEPS];
};

#if defined(LANES_FAMILY_ELEMENTWISE) || defined(LANES_FAMILY_FUSED) || defined(LANES_FAMILY_QUANT)
// Called, not inlined, from each unrolled step: one copy of every op's code per kernel.
__device__ __noinline__ float fused_unary(int op, float v) { return unary_float(op, v); }
__device__ __noinline__ float fused_binary(int op, float a, float b) { return binary_float(op, a, b); }

// Where input j holds output element i (row-major over the walk's dims).
__device__ __forceinline__ i64 fused_offset(i64 i, const KFusedWalk& w, int j) {
  i64 off = w.offset[j];
#pragma unroll
  for (int d = FUSED_DIMS - 1; d >= 0; --d) {
    if (d >= w.nd) continue;
    i64 n = w.dims[d];
    off += (i % n) * w.strides[j][d];
    i /= n;
  }
  return off;
}

// The chain's value from its inputs' elements x (those it has).
__device__ __forceinline__ float fused_apply(const float (&x)[4], const KFused& f) {
  float v = x[0];
  // Unrolled, so each step's fields are read at a fixed offset of the parameter block.
#pragma unroll
  for (int k = 0; k < FUSED_STEPS; ++k) {
    if (k >= f.steps) break;
    if (f.kind[k] == 0) {
      v = fused_unary(f.subop[k], v);
    } else {
      int j = f.operand[k];
      float o = f.kind[k] == 2 ? f.scalar[k] : j == 0 ? x[0] : j == 1 ? x[1] : j == 2 ? x[2] : x[3];
      v = f.value_first[k] ? fused_binary(f.subop[k], v, o) : fused_binary(f.subop[k], o, v);
    }
  }
  return v;
}

// The chain's value for output element i, whose input 0 is `first`; inputs 1.. are read here.
__device__ __forceinline__ float fused_value(i64 i, float first, const float* x1, const float* x2, const float* x3,
                                             const KFusedWalk& w, const KFused& f, int inputs, int contiguous) {
  // Each input's element for this output element, read once.
  float x[4] = {first, 0, 0, 0};
  if (inputs > 1) x[1] = x1[contiguous ? w.offset[1] + i : fused_offset(i, w, 1)];
  if (inputs > 2) x[2] = x2[contiguous ? w.offset[2] + i : fused_offset(i, w, 2)];
  if (inputs > 3) x[3] = x3[contiguous ? w.offset[3] + i : fused_offset(i, w, 3)];
  return fused_apply(x, f);
}

// A chain of two inputs, both in hand (a quantized product's pair epilogue).
__device__ __forceinline__ float fused_pair_value(float first, float second, const KFused& f) {
  const float x[4] = {first, second, 0, 0};
  return fused_apply(x, f);
}
#endif

#if defined(LANES_FAMILY_ELEMENTWISE)
extern "C" __global__ void fused_f32(float* y, const float* x0, const float* x1, const float* x2, const float* x3, KFusedWalk w,
                                     i64 n, KFused f, int inputs, int contiguous) {
  await_previous_kernel();
  GRID_STRIDE(i, n) y[i] = fused_value(i, x0[contiguous ? w.offset[0] + i : fused_offset(i, w, 0)], x1, x2, x3, w, f, inputs, contiguous);
}
#endif

template <class T>
__device__ void where_impl(T* y, const u8* c, KStrides sc, const T* a, KStrides sa, const T* b, KStrides sb, KShape shape,
                           i64 n) {
  GRID_STRIDE(i, n) y[i] = c[offset_of(i, shape, sc)] ? a[offset_of(i, shape, sa)] : b[offset_of(i, shape, sb)];
}

// A compiled plan's copy between a caller's array and the plan's memory, inside the plan's CUDA
// graph: the caller's address is read from the plan's parameter block, which each replay writes.
extern "C" __global__ void copy_bound(u8* slot, const u64* bound, int into_plan, i64 bytes) {
  await_previous_kernel();
  u8* other = reinterpret_cast<u8*>(*bound);
  u8* y = into_plan ? slot : other;
  const u8* x = into_plan ? other : slot;
  if (((reinterpret_cast<u64>(y) | reinterpret_cast<u64>(x) | u64(bytes)) & 15) == 0) {
    GRID_STRIDE(i, bytes / 16) reinterpret_cast<uint4*>(y)[i] = reinterpret_cast<const uint4*>(x)[i];
  } else {
    GRID_STRIDE(i, bytes) y[i] = x[i];
  }
}

// Strided -> strided copy of `shape` elements (contiguous copies, concatenation, broadcasts).
template <class T>
__device__ void copy_impl(T* y, KStrides sy, const T* x, KStrides sx, KShape shape, i64 n) {
  GRID_STRIDE(i, n) y[offset_of(i, shape, sy)] = x[offset_of(i, shape, sx)];
}

// astype: same as the CPU (half<->half through float, everything else through double).
__device__ __forceinline__ double to_double(float v) { return v; }
__device__ __forceinline__ double to_double(f16 v) { return to_float(v); }
__device__ __forceinline__ double to_double(bf16 v) { return to_float(v); }
__device__ __forceinline__ double to_double(int v) { return v; }
__device__ __forceinline__ double to_double(u8 v) { return v; }

template <class F, class T> struct Convert { static __device__ T of(F v) { return FromDouble<T>::of(to_double(v)); } };
template <class T> struct Convert<T, T> { static __device__ T of(T v) { return v; } };
template <> struct Convert<f16, bf16> { static __device__ bf16 of(f16 v) { return to_bf16(to_float(v)); } };
template <> struct Convert<bf16, f16> { static __device__ f16 of(bf16 v) { return to_f16(to_float(v)); } };

template <class F, class T>
__device__ void astype_impl(T* y, const F* x, KStrides sx, KShape shape, i64 n) {
  GRID_STRIDE(i, n) y[i] = Convert<F, T>::of(x[offset_of(i, shape, sx)]);
}

// A strided copy that casts each element as astype does (a compiled plan's sliceUpdate of an
// update of another float dtype).
template <class F, class T>
__device__ void copy_cast_impl(T* y, KStrides sy, const F* x, KStrides sx, KShape shape, i64 n) {
  GRID_STRIDE(i, n) y[offset_of(i, shape, sy)] = Convert<F, T>::of(x[offset_of(i, shape, sx)]);
}

// ---- group reductions ------------------------------------------------------------------------
//
// A "group" of G consecutive threads reduces one row: lane l folds elements l, l+G, ... in
// order, then the lanes combine in a fixed tree. Every thread of the block reaches every
// __syncthreads (rows past the end reduce nothing).

enum { K_SUM, K_MAX, K_MIN, K_ARGMAX, K_ARGMIN, K_SUMEXP, K_SUMSQDEV };

template <class Acc>
struct RState {
  Acc v;
  i64 idx;  // index of the element held (extremes), or -1 while empty
};

template <class Acc>
__device__ __forceinline__ bool is_nan(Acc v) { return v != v; }

template <class Acc>
__device__ __forceinline__ RState<Acc> fold(int kind, RState<Acc> s, Acc v, i64 r, Acc shift) {
  switch (kind) {
    case K_SUM: s.v += v; break;
    case K_SUMEXP: s.v += Acc(exp(double(v - shift))); break;
    case K_SUMSQDEV: s.v += (v - shift) * (v - shift); break;
    case K_MAX:
    case K_ARGMAX:
      if (s.idx < 0 || (!is_nan(s.v) && (is_nan(v) || v > s.v))) { s.v = v; s.idx = r; }
      break;
    default:
      if (s.idx < 0 || (!is_nan(s.v) && (is_nan(v) || v < s.v))) { s.v = v; s.idx = r; }
      break;
  }
  return s;
}

// a holds earlier-starting lanes than b; ties keep the smaller index (the first extreme).
template <class Acc>
__device__ __forceinline__ RState<Acc> combine(int kind, RState<Acc> a, RState<Acc> b) {
  if (kind == K_SUM || kind == K_SUMEXP || kind == K_SUMSQDEV) { a.v += b.v; return a; }
  if (b.idx < 0) return a;
  if (a.idx < 0) return b;
  bool an = is_nan(a.v), bn = is_nan(b.v);
  if (an || bn) {
    if (an && bn) return a.idx < b.idx ? a : b;
    return an ? a : b;
  }
  bool is_max = kind == K_MAX || kind == K_ARGMAX;
  if (a.v == b.v) return a.idx < b.idx ? a : b;
  return (is_max ? b.v > a.v : b.v < a.v) ? b : a;
}

template <class T, class Acc, int G>
__device__ RState<Acc> group_reduce(int kind, const T* base, i64 n, i64 stride, Acc shift, RState<Acc>* sh) {
  int lane = threadIdx.x % G;
  RState<Acc> s;
  s.v = Acc(0);
  s.idx = -1;
  i64 r = lane;
  if (kind == K_MAX || kind == K_ARGMAX || kind == K_MIN || kind == K_ARGMIN) {
    // A long row's extremes (a decode step's argmax over the vocabulary) in batches of U
    // elements, all loaded before the first is folded: one load latency per batch. The fold
    // keeps its order, so the result is that of one element at a time.
    constexpr int U = 16;
    const bool is_max = kind == K_MAX || kind == K_ARGMAX;
    for (; r + (U - 1) * G < n; r += U * G) {
      T batch[U];
#pragma unroll
      for (int u = 0; u < U; ++u) batch[u] = base[(r + u * G) * stride];
#pragma unroll
      for (int u = 0; u < U; ++u) s = fold<Acc>(is_max ? K_MAX : K_MIN, s, Acc(up(batch[u])), r + u * G, shift);
    }
  }
#pragma unroll 4
  for (; r < n; r += G) s = fold<Acc>(kind, s, Acc(up(base[r * stride])), r, shift);
  if (G == 1) return s;
  sh[threadIdx.x] = s;
  __syncthreads();
  int first = threadIdx.x - lane;
  for (int width = G / 2; width > 0; width /= 2) {
    if (lane < width) sh[threadIdx.x] = combine<Acc>(kind, sh[threadIdx.x], sh[threadIdx.x + width]);
    __syncthreads();
  }
  RState<Acc> result = sh[first];
  __syncthreads();
  return result;
}

__device__ __forceinline__ double acc_to_double(double v) { return v; }
__device__ __forceinline__ double acc_to_double(i64 v) { return double(v); }

template <class Out, class Acc> __device__ __forceinline__ Out store_acc(Acc v);
template <> __device__ __forceinline__ float store_acc<float, double>(double v) { return float(v); }
template <> __device__ __forceinline__ f16 store_acc<f16, double>(double v) { return to_f16(float(v)); }
template <> __device__ __forceinline__ bf16 store_acc<bf16, double>(double v) { return to_bf16(float(v)); }
template <> __device__ __forceinline__ int store_acc<int, double>(double v) { return int(v); }
template <> __device__ __forceinline__ u8 store_acc<u8, double>(double v) { return u8(v); }
template <> __device__ __forceinline__ int store_acc<int, i64>(i64 v) { return int(v); }
template <> __device__ __forceinline__ u8 store_acc<u8, i64>(i64 v) { return u8(v); }
template <> __device__ __forceinline__ float store_acc<float, i64>(i64 v) { return float(v); }
template <> __device__ __forceinline__ f16 store_acc<f16, i64>(i64 v) { return to_f16(float(v)); }
template <> __device__ __forceinline__ bf16 store_acc<bf16, i64>(i64 v) { return to_bf16(float(v)); }


// Reduces x viewed as [outer, R, inner] over R; output o = outer_index * inner + inner_index.
// `arg` outputs are int32 indices; others have the input's storage type.
template <class T, class Acc, int G>
__device__ void reduce_impl(void* out, const T* x, i64 outer, i64 R, i64 inner, int op) {
  __shared__ RState<Acc> sh[256];
  i64 groups = blockDim.x / G;
  i64 o = i64(blockIdx.x) * groups + threadIdx.x / G;
  bool valid = o < outer * inner;
  i64 n = valid ? R : 0;
  const T* base = x + (valid ? (o / inner) * R * inner + o % inner : 0);
  Acc zero = Acc(0);
  bool write = valid && threadIdx.x % G == 0;
  switch (op) {
    case R_SUM: {
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, inner, zero, sh);
      if (write) static_cast<T*>(out)[o] = store_acc<T, Acc>(s.v);
      break;
    }
    case R_MEAN: {
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, inner, zero, sh);
      if (write) static_cast<T*>(out)[o] = store_acc<T, Acc>(n ? s.v / Acc(n) : Acc(dnan()));
      break;
    }
    case R_MAX:
    case R_MIN: {
      RState<Acc> s = group_reduce<T, Acc, G>(op == R_MAX ? K_MAX : K_MIN, base, n, inner, zero, sh);
      if (write) static_cast<T*>(out)[o] = store_acc<T, Acc>(s.v);
      break;
    }
    case R_ARGMAX:
    case R_ARGMIN: {
      RState<Acc> s = group_reduce<T, Acc, G>(op == R_ARGMAX ? K_ARGMAX : K_ARGMIN, base, n, inner, zero, sh);
      if (write) static_cast<int*>(out)[o] = int(s.idx < 0 ? 0 : s.idx);
      break;
    }
    case R_LOGSUMEXP: {
      RState<Acc> m = group_reduce<T, Acc, G>(K_MAX, base, n, inner, zero, sh);
      double mv = acc_to_double(m.v);
      bool special = n == 0 || mv != mv || isinf(mv);
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUMEXP, base, special ? 0 : n, inner, m.v, sh);
      double r = n == 0 ? -dinf() : special ? mv : mv + log(acc_to_double(s.v));
      if (write) static_cast<T*>(out)[o] = store_acc<T, Acc>(Acc(r));
      break;
    }
    default: {  // variance
      RState<Acc> s = group_reduce<T, Acc, G>(K_SUM, base, n, inner, zero, sh);
      Acc mean = n ? s.v / Acc(n) : zero;
      RState<Acc> q = group_reduce<T, Acc, G>(K_SUMSQDEV, base, n, inner, mean, sh);
      if (write) static_cast<T*>(out)[o] = store_acc<T, Acc>(n ? q.v / Acc(n) : Acc(dnan()));
      break;
    }
  }
}

// ---- softmax, norms --------------------------------------------------------------------------

// Block-wide fixed-order combine of one float/double per thread within groups of G. Groups
// within a warp combine by shuffles, in the same tree as through shared memory (the same bits)
// but without its barriers.
template <class V, int G>
__device__ V group_fold(V v, bool is_max, V* sh) {
  if (G == 1) return v;
  if (G <= 32) {
    for (int width = G / 2; width > 0; width /= 2) {
      V b = __shfl_down_sync(0xffffffffu, v, width, G);
      v = is_max ? (b > v ? b : v) : v + b;
    }
    return __shfl_sync(0xffffffffu, v, 0, G);
  }
  int lane = threadIdx.x % G;
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int width = G / 2; width > 0; width /= 2) {
    if (lane < width) {
      V a = sh[threadIdx.x], b = sh[threadIdx.x + width];
      sh[threadIdx.x] = is_max ? (b > a ? b : a) : a + b;
    }
    __syncthreads();
  }
  V r = sh[threadIdx.x - lane];
  __syncthreads();
  return r;
}

// Rows of length L with element stride `inner` (x viewed as [outer, L, inner]).
template <class T, int G>
__device__ void softmax_impl(T* y, const T* x, i64 outer, i64 L, i64 inner) {
  __shared__ float shf[256];
  __shared__ double shd[256];
  i64 groups = blockDim.x / G;
  i64 row = i64(blockIdx.x) * groups + threadIdx.x / G;
  int lane = threadIdx.x % G;
  bool valid = row < outer * inner;
  i64 n = valid ? L : 0;
  i64 start = valid ? (row / inner) * L * inner + row % inner : 0;
  const T* xr = x + start;
  T* yr = y + start;
  float m = -finf();
  float nan_seen = 0.0f;
#pragma unroll 4
  for (i64 l = lane; l < n; l += G) {
    float v = up(xr[l * inner]);
    if (v != v) nan_seen = 1.0f;
    m = v > m ? v : m;
  }
  m = group_fold<float, G>(m, true, shf);
  nan_seen = group_fold<float, G>(nan_seen, true, shf);
  bool poisoned = nan_seen > 0.0f || m == finf();
  double sum = 0;
  if (!poisoned)
    for (i64 l = lane; l < n; l += G) sum += double(expf(float(up(xr[l * inner])) - m));
  sum = group_fold<double, G>(sum, false, shd);
  float inv = float(1.0 / sum);
  for (i64 l = lane; l < n; l += G)
    yr[l * inner] = poisoned ? Down<T>::of(qnan()) : Down<T>::of(expf(float(up(xr[l * inner])) - m) * inv);
}

// A normalized row's mean (0 for rmsNorm) and inverse deviation.
struct NormScale {
  double mean;
  float inv;
};

// The scale of row xr of length n (0: a row past the last) in a group of G threads, as every
// caller computes it: rmsNorm and layerNorm, and the quantized matvec that normalizes its
// activations (a compiled plan's folded rmsNorm). `packed`: x is read a pack (16 bytes) per
// load, which the whole input's alignment decides. All the block's threads call it.
template <class T, int G>
__device__ NormScale norm_scale(const T* xr, i64 n, i64 D, bool packed, double eps, int layer, double* shd) {
  constexpr int V = 16 / sizeof(T);
  int lane = threadIdx.x % G;
  const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
  i64 packs = packed ? n / V : 0, rest = packed ? n : 0;  // elements [rest, n) go one by one
  double mean = 0;
  if (layer) {
    double s = 0;
    for (i64 p = lane; p < packs; p += G) {
      Pack<T> v = xp[p];
#pragma unroll
      for (int k = 0; k < V; ++k) s += double(up(v.v[k]));
    }
    for (i64 i = rest + lane; i < n; i += G) s += double(up(xr[i]));
    s = group_fold<double, G>(s, false, shd);
    mean = s / double(D);
  }
  double ss = 0;
#pragma unroll 4
  for (i64 p = lane; p < packs; p += G) {
    Pack<T> v = xp[p];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      double d = double(up(v.v[k])) - mean;
      ss += d * d;
    }
  }
  for (i64 i = rest + lane; i < n; i += G) {
    double d = double(up(xr[i])) - mean;
    ss += d * d;
  }
  ss = group_fold<double, G>(ss, false, shd);
  return {mean, float(1.0 / sqrt(ss / double(D) + eps))};
}

// Element i of a normalized row, x its input.
template <class T>
__device__ __forceinline__ T norm_value(float x, NormScale scale, const T* w, const T* b, i64 i) {
  float v = float(double(x) - scale.mean) * scale.inv;
  if (w) v *= up(w[i]);
  if (b) v += up(b[i]);
  return Down<T>::of(v);
}

template <class T>
__device__ __forceinline__ bool norm_packed(const T* x, i64 D) {
  return D % (16 / sizeof(T)) == 0 && (reinterpret_cast<u64>(x) % 16) == 0;
}

// rmsNorm (layer = 0) and layerNorm over the last dimension D of contiguous rows.
template <class T, int G>
__device__ void norm_impl(T* y, const T* x, const T* w, const T* b, i64 rows, i64 D, double eps, int layer) {
  __shared__ double shd[256];
  i64 groups = blockDim.x / G;
  i64 row = i64(blockIdx.x) * groups + threadIdx.x / G;
  int lane = threadIdx.x % G;
  bool valid = row < rows;
  i64 n = valid ? D : 0;
  const T* xr = x + (valid ? row * D : 0);
  constexpr int V = 16 / sizeof(T);
  bool packed = norm_packed(x, D);
  NormScale scale = norm_scale<T, G>(xr, n, D, packed, eps, layer, shd);
  bool packed_out = packed && (reinterpret_cast<u64>(y) % 16) == 0;
  i64 written = 0;
  if (packed_out) {
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(y + row * D);
    for (i64 p = lane; p < n / V; p += G) {
      Pack<T> v = xp[p];
#pragma unroll
      for (int k = 0; k < V; ++k) v.v[k] = norm_value<T>(up(v.v[k]), scale, w, b, p * V + k);
      yp[p] = v;
    }
    written = n;
  }
  for (i64 i = written + lane; i < n; i += G) y[row * D + i] = norm_value<T>(up(xr[i]), scale, w, b, i);
}

// ---- attention, rope, take -------------------------------------------------------------------

// A query element as the scores use it: rounded to the KV cache's type where that differs
// (float32 queries over a float16 cache, as the CPU computes them).
template <class T, class TKV>
struct QueryAs {
  static __device__ __forceinline__ float of(T x) { return up(Down<TKV>::of(up(x))); }
};
template <class T>
struct QueryAs<T, T> {
  static __device__ __forceinline__ float of(T x) { return up(x); }
};

// The sum of v over a warp's lanes, the same bits in every lane (each butterfly step adds a
// pair in both lanes, and addition commutes).
__device__ __forceinline__ float warp_sum(float v) {
  for (int width = 16; width > 0; width /= 2) v += __shfl_xor_sync(0xffffffffu, v, width);
  return v;
}

// Attention works on chunks of 32 keys. A chunk gives the maximum m of its scores, the sum l of
// exp(score - m) and acc[d], the sum of exp(score - m) * v[d]; a row's chunks combine in key
// order, each step rescaling the running sums to the larger maximum. Whether a row's chunks run
// in one block (attention_*, for many rows: a prefill) or in a block each (attention_part_*, for
// the few rows of a decode step), combined by a second kernel (attention_combine_*) or, in a
// compiled plan, by the row's last block, every value is the same expression of the same
// operands, so a prefill's row equals the decode step at its position bit for bit.
// Per-row form (lengths set): batch entry b attends over its first lengths[b] keys; a length
// outside [0, Lk] is reported through `error` (as take reports an index) and attends over none.
struct Chunk {
  static constexpr int keys = 32, warps = 4;
  static constexpr int threads = 32 * warps;  // cuda/launch.cpp kAttentionBlock
  static constexpr int keys_per_warp = keys / warps;
  static constexpr i64 query_shared = 256, columns = 64;
};

struct AttentionArgs {
  i64 B, H, Lq, D, Hk, Lk, Dv;
  float scale;
  int causal;
  i64 used;
  const double* used_at;  // a compiled plan's key length, checked on the host
  const int* lengths;
  int* error;
};

// The key/value head a query row reads and how many keys it sees.
struct AttentionRow {
  i64 kv, visible;
};

__device__ AttentionRow attention_row(i64 r, const AttentionArgs& a, bool report) {
  i64 used = a.used_at ? i64(*a.used_at) : a.used;
  i64 i = r % a.Lq, h = (r / a.Lq) % a.H, bi = r / (a.Lq * a.H);
  if (a.lengths) {
    used = a.lengths[bi];
    if (used < 0 || used > a.Lk) {
      if (report && threadIdx.x == 0 && atomicCAS(a.error, 0, 1) == 0) a.error[1] = int(used);
      used = 0;
    }
  }
  // Only the first `used` keys hold data (a preallocated cache's filled prefix).
  i64 visible = used;
  if (a.causal) {
    i64 last = i + used - a.Lq + 1;
    visible = last < 0 ? 0 : (last < used ? last : used);
  }
  return {bi * a.Hk + h / (a.H / a.Hk), visible};
}

struct ChunkShared {
  float query[Chunk::query_shared];
  float scores[Chunk::keys];
  float partial[Chunk::warps][Chunk::columns];
};

// The query as the scores use it, once per block (a longer one than the buffer is read as it
// goes).
template <class T, class TKV>
__device__ void stage_query(ChunkShared& sh, const T* qi, i64 D) {
  for (i64 d = threadIdx.x; d < D && d < Chunk::query_shared; d += Chunk::threads) sh.query[d] = QueryAs<T, TKV>::of(qi[d]);
  __syncthreads();
}

// STAGED: the block staged the query (stage_query); else each warp reads it with its key loads,
// one latency for both (a block of one chunk, which would wait for the staging first).
template <class T, class TKV, bool STAGED>
__device__ __forceinline__ float query_at(const ChunkShared& sh, const T* qi, i64 d) {
  return STAGED && d < Chunk::query_shared ? sh.query[d] : QueryAs<T, TKV>::of(qi[d]);
}

// A cache element as float; float16 through the conversion instruction (exact, as to_float,
// without its branches between a group's loads and their use).
template <class V>
__device__ __forceinline__ float widen(V x) { return up(x); }
__device__ __forceinline__ float widen(f16 x) {
  float r;
  asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(x.bits));
  return r;
}

template <class V>
__device__ __forceinline__ V load_or_zero(const V* p, bool ok) { return ok ? *p : V{}; }

// One chunk of a row: keys [j0, j0 + n), 0 < n <= 32. Warp w takes keys w, w + 4, ... of the
// chunk, their loads in flight together. Calls start(m, l) in every thread (the same bits in
// all), then put(d, acc[d]) in threads below 64.
template <class T, class TKV, bool STAGED, class Start, class Put>
__device__ void attention_chunk(ChunkShared& sh, const T* qi, const TKV* kh, const TKV* vh, const AttentionArgs& a,
                                i64 j0, int n, Start start, Put put) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  constexpr int U = Chunk::keys_per_warp;
  bool valid[U];
#pragma unroll
  for (int u = 0; u < U; ++u) valid[u] = warp + u * Chunk::warps < n;
  // Every load of a group is issued before the first is used: the value rows' first 64 columns
  // beside the keys' first 64 features.
  TKV va[U], vb[U];
  auto load_values = [&](i64 d0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const TKV* row = vh + (j0 + warp + u * Chunk::warps) * a.Dv + d0;
      va[u] = load_or_zero(row + lane, valid[u] && d0 + lane < a.Dv);
      vb[u] = load_or_zero(row + lane + 32, valid[u] && d0 + lane + 32 < a.Dv);
    }
  };
  load_values(0);
  float dot[U];
#pragma unroll
  for (int u = 0; u < U; ++u) dot[u] = 0;
  for (i64 d0 = 0; d0 < a.D; d0 += 64) {
    TKV ka[U], kb[U];
    bool has_a = d0 + lane < a.D, has_b = d0 + lane + 32 < a.D;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const TKV* row = kh + (j0 + warp + u * Chunk::warps) * a.D + d0;
      ka[u] = load_or_zero(row + lane, valid[u] && has_a);
      kb[u] = load_or_zero(row + lane + 32, valid[u] && has_b);
    }
    float qa = has_a ? query_at<T, TKV, STAGED>(sh, qi, d0 + lane) : 0.0f;
    float qb = has_b ? query_at<T, TKV, STAGED>(sh, qi, d0 + lane + 32) : 0.0f;
#pragma unroll
    for (int u = 0; u < U; ++u) dot[u] = __fmaf_rn(qb, widen(kb[u]), __fmaf_rn(qa, widen(ka[u]), dot[u]));
  }
#pragma unroll
  for (int u = 0; u < U; ++u) {
    float s = __fmul_rn(warp_sum(dot[u]), a.scale);
    if (lane == 0 && valid[u]) sh.scores[warp + u * Chunk::warps] = s;
  }
  __syncthreads();  // publishes the scores
  // Every warp folds the chunk's scores in the same butterfly order: the same m and l in all.
  float s = lane < n ? sh.scores[lane] : -finf();
  float m = s;
  for (int width = 16; width > 0; width /= 2) {
    float o = __shfl_xor_sync(0xffffffffu, m, width);
    m = o > m ? o : m;
  }
  float p = lane < n ? expf(s - m) : 0.0f;
  start(m, warp_sum(p));
  // 64 columns at a time, two per lane: each warp sums its keys' share, then the warps' sums
  // are added in warp order.
  for (i64 d0 = 0; d0 < a.Dv; d0 += Chunk::columns) {
    if (d0 > 0) load_values(d0);
    float acc_a = 0, acc_b = 0;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float pu = __shfl_sync(0xffffffffu, p, warp + u * Chunk::warps);
      acc_a = __fmaf_rn(pu, widen(va[u]), acc_a);
      acc_b = __fmaf_rn(pu, widen(vb[u]), acc_b);
    }
    sh.partial[warp][lane] = acc_a;
    sh.partial[warp][lane + 32] = acc_b;
    __syncthreads();
    if (threadIdx.x < Chunk::columns && d0 + threadIdx.x < a.Dv) {
      float sum = sh.partial[0][threadIdx.x];
#pragma unroll
      for (int w = 1; w < Chunk::warps; ++w) sum = __fadd_rn(sum, sh.partial[w][threadIdx.x]);
      put(d0 + threadIdx.x, sum);
    }
    __syncthreads();
  }
}

// A row's running maximum and sum over the chunks so far.
struct Running {
  float m = -finf(), l = 0;
};

// Takes in a chunk's m and l; its acc and the running acc then combine through fold_chunk with
// the returned scales.
__device__ __forceinline__ void take_chunk(Running& run, float m, float l, float& keep, float& add) {
  float top = m > run.m ? m : run.m;
  keep = expf(run.m - top);
  add = expf(m - top);
  run.l = __fmaf_rn(l, add, __fmul_rn(run.l, keep));
  run.m = top;
}

__device__ __forceinline__ float fold_chunk(float acc, float keep, float chunk_acc, float add) {
  return __fmaf_rn(chunk_acc, add, __fmul_rn(acc, keep));
}

__device__ __forceinline__ float attention_out(float acc, const Running& run) {
  return run.l > 0 ? __fdiv_rn(acc, run.l) : 0.0f;
}

// One block per row, its chunks in turn; the running acc in dynamic shared memory (Dv floats).
template <class T, class TKV>
__device__ void attention_rows(T* y, const T* q, const TKV* k, const TKV* v, const AttentionArgs& a) {
  extern __shared__ float acc[];
  __shared__ ChunkShared sh;
  i64 r = blockIdx.x;
  AttentionRow row = attention_row(r, a, true);
  const T* qi = q + r * a.D;
  const TKV *kh = k + row.kv * a.Lk * a.D, *vh = v + row.kv * a.Lk * a.Dv;
  for (i64 d = threadIdx.x; d < a.Dv; d += Chunk::threads) acc[d] = 0;
  stage_query<T, TKV>(sh, qi, a.D);  // its barrier also publishes acc's zeros
  Running run;
  for (i64 j0 = 0; j0 < row.visible; j0 += Chunk::keys) {
    int n = int(row.visible - j0 < Chunk::keys ? row.visible - j0 : Chunk::keys);
    float keep, add;
    attention_chunk<T, TKV, true>(
        sh, qi, kh, vh, a, j0, n, [&](float m, float l) { take_chunk(run, m, l, keep, add); },
        [&](i64 d, float chunk_acc) { acc[d] = fold_chunk(acc[d], keep, chunk_acc, add); });
  }
  for (i64 d = threadIdx.x; d < a.Dv; d += Chunk::threads) y[r * a.Dv + d] = Down<T>::of(attention_out(acc[d], run));
}

// Row r's chunk records combined in key order, as attention_rows combines its chunks, into y.
// `fresh`: the records were written by other blocks of this kernel, read past the L1 cache.
template <class T>
__device__ void combine_records(T* y, const float* records, i64 used_chunks, i64 r, i64 Dv, bool fresh) {
  auto read = [fresh](const float* p) { return fresh ? __ldcg(p) : *p; };
  for (i64 d = threadIdx.x; d < Dv; d += blockDim.x) {
    Running run;
    float acc = 0;
    // U records at a time, all read before the first is folded (in key order, as one at a time).
    constexpr int U = 16;
    for (i64 c0 = 0; c0 < used_chunks; c0 += U) {
      float m[U], l[U], x[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float* record = records + (c0 + u) * (Dv + 2);
        bool ok = c0 + u < used_chunks;
        m[u] = ok ? read(record) : 0.0f;
        l[u] = ok ? read(record + 1) : 0.0f;
        x[u] = ok ? read(record + 2 + d) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (c0 + u >= used_chunks) break;
        float keep, add;
        take_chunk(run, m[u], l[u], keep, add);
        acc = fold_chunk(acc, keep, x[u], add);
      }
    }
    y[r * Dv + d] = Down<T>::of(attention_out(acc, run));
  }
}

// A block per chunk of a row: its m, l and acc, as record [m, l, acc...] (Dv + 2 floats) of
// `parts`, rows x gridDim.y of them. With `counters` (a compiled plan's, one per row, zero
// before the launch), the row's last block to finish combines the records and zeroes its
// counter again; without, attention_combine does.
template <class T, class TKV>
__device__ void attention_part(T* y, float* parts, int* counters, const T* q, const TKV* k, const TKV* v, const AttentionArgs& a) {
  __shared__ ChunkShared sh;
  __shared__ bool last;
  i64 r = blockIdx.x, j0 = i64(blockIdx.y) * Chunk::keys;
  AttentionRow row = attention_row(r, a, blockIdx.y == 0);
  if (row.visible == 0 && counters && blockIdx.y == 0) combine_records(y, parts, 0, r, a.Dv, false);
  if (j0 >= row.visible) return;
  int n = int(row.visible - j0 < Chunk::keys ? row.visible - j0 : Chunk::keys);
  const T* qi = q + r * a.D;
  const TKV *kh = k + row.kv * a.Lk * a.D, *vh = v + row.kv * a.Lk * a.Dv;
  float* records = parts + r * gridDim.y * (a.Dv + 2);
  float* record = records + blockIdx.y * (a.Dv + 2);
  attention_chunk<T, TKV, false>(
      sh, qi, kh, vh, a, j0, n,
      [&](float m, float l) {
        if (threadIdx.x == 0) record[0] = m, record[1] = l;
      },
      [&](i64 d, float chunk_acc) { record[2 + d] = chunk_acc; });
  if (!counters) return;
  __threadfence();  // this thread's share of the record, before the count that publishes it
  __syncthreads();
  i64 used_chunks = (row.visible + Chunk::keys - 1) / Chunk::keys;
  if (threadIdx.x == 0) last = atomicAdd(&counters[r], 1) == used_chunks - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  combine_records(y, records, used_chunks, r, a.Dv, true);
  if (threadIdx.x == 0) counters[r] = 0;
}

// A block per row: its chunks' records combined in key order.
template <class T>
__device__ void attention_combine(T* y, const float* parts, i64 chunks, const AttentionArgs& a) {
  i64 r = blockIdx.x;
  AttentionRow row = attention_row(r, a, false);
  i64 used_chunks = (row.visible + Chunk::keys - 1) / Chunk::keys;
  combine_records(y, parts + r * chunks * (a.Dv + 2), used_chunks, r, a.Dv, false);
}

// Rotated element d < dims of row r, whose position is offset + r % L.
template <class T>
__device__ __forceinline__ float rope_rotated(const T* x, i64 r, i64 d, i64 L, i64 D, int dims, double base, double scale, double offset,
                                              int traditional) {
  int half = dims / 2;
  int i = traditional ? int(d / 2) : int(d < half ? d : d - half);
  bool first = traditional ? (d % 2 == 0) : d < half;
  i64 a = traditional ? 2 * i : i, b = traditional ? 2 * i + 1 : i + half;
  i64 row_in_entry;
  div_rem(r, L, row_in_entry);
  double pos = (offset + double(row_in_entry)) * scale;
  double theta = pos * pow(base, -2.0 * i / dims);
  float cs = float(cos(theta)), sn = float(sin(theta));
  float xa = up(x[r * D + a]), xb = up(x[r * D + b]);
  return first ? xa * cs - xb * sn : xa * sn + xb * cs;
}

// Per-row form (offsets set): the rows of leading entry b (rows_per_entry of them) start at offsets[b].
template <class T>
__device__ void rope_impl(T* y, const T* x, i64 rows, i64 L, i64 D, int dims, double base, double scale, double offset,
                          int traditional, const double* dyn, const int* offsets, i64 rows_per_entry) {
  if (dyn) offset = *dyn;
  GRID_STRIDE(e, rows * D) {
    i64 d, r = div_rem(e, D, d);
    if (offsets) offset = double(offsets[r / rows_per_entry]);
    y[e] = d < dims ? Down<T>::of(rope_rotated(x, r, d, L, D, dims, base, scale, offset, traditional)) : x[e];
  }
}

// A compiled plan's float32 rope and the two cache writes after it, in one launch (a decode
// step's key and value, cuda/launch.cpp's translate_rope_updates). The first write copies
// elements from0 .. from0 + n0 of the rope's output: the thread that computes one stores it there
// too, cast as the copy would. The threads after the rope's copy the second write's update.
template <class C>
__device__ void rope_store_pair_impl(float* y, const float* x, i64 rows, i64 L, i64 D, int dims, double base, double scale,
                                     double offset, int traditional, const double* dyn, C* y0, KStrides sy0, KShape shape0,
                                     i64 from0, i64 n0, const double* dyn0, i64 step0, C* y1, KStrides sy1, const float* x1,
                                     KStrides sx1, KShape shape1, i64 n1, const double* dyn1, i64 step1) {
  if (dyn) offset = *dyn;
  if (dyn0) y0 += i64(*dyn0) * step0;
  if (dyn1) y1 += i64(*dyn1) * step1;
  i64 n = rows * D;
  GRID_STRIDE(e, n + n1) {
    if (e >= n) {
      i64 j = e - n;
      y1[offset_of(j, shape1, sy1)] = Convert<float, C>::of(x1[offset_of(j, shape1, sx1)]);
      continue;
    }
    i64 d, r = div_rem(e, D, d);
    float v = d < dims ? rope_rotated(x, r, d, L, D, dims, base, scale, offset, traditional) : x[e];
    y[e] = v;
    i64 i = e - from0;
    if (i >= 0 && i < n0) y0[offset_of(i, shape0, sy0)] = Convert<float, C>::of(v);
  }
}

// A per-row sliceUpdate: element e of the contiguous update goes to its leading entry's own
// offset along the axis (see gpu::RowWrite); an offset outside [0, C - U] is reported through
// `error` and that entry is not written.
template <class T>
__device__ void copy_rows_impl(T* y, const T* x, const int* offsets, i64 n, i64 per_entry, i64 U, i64 C, i64 R, int* error) {
  GRID_STRIDE(e, n) {
    i64 b = e / per_entry, rest = e % per_entry;
    i64 r = rest % R, t = (rest / R) % U, a = rest / (R * U);
    i64 at = offsets[b];
    if (at < 0 || at > C - U) {
      if (atomicCAS(error, 0, 1) == 0) error[1] = int(at);
      continue;
    }
    y[((b * (per_entry / (U * R)) + a) * C + at + t) * R + r] = x[e];
  }
}

// error[0] becomes 1 and error[1] the first bad index seen (as on the CPU, the launch fails).
template <class T>
__device__ void take_impl(T* y, const T* x, const int* idx, i64 outer, i64 dim, i64 inner, i64 count, int* error) {
  GRID_STRIDE(e, outer * count * inner) {
    i64 r = e / inner, c = e % inner;
    i64 o = r / count, i = r % count;
    i64 v = idx[i];
    if (v < 0) v += dim;
    if (v < 0 || v >= dim) {
      if (atomicCAS(error, 0, 1) == 0) error[1] = idx[i];
      y[e] = T();
      continue;
    }
    y[e] = x[(o * dim + v) * inner + c];
  }
}

// ---- matmul (small products, epilogues, and where cuBLASLt is missing or declines the layout) ---

// Y[batch, M, N] = A @ B, operands read through strides. A block of 256 threads computes a 16x16
// tile, loading 64 of K per round (small products wait for one round of loads, not four) and
// summing in k order over whole steps of 16 with zeros past K, as a tiling by 16 does. Batch
// offsets come from the batch shape and the operands' batch strides.
// `store(e, acc)` writes output element e (row-major over batch, M, N) from its float sum.
#define MATMUL_CHUNK 64
template <class T, class Store>
__device__ void matmul_impl(const T* a, const T* b, i64 M, i64 N, i64 K, i64 a_row, i64 a_col, i64 b_row,
                            i64 b_col, const KShape& batch, const KStrides& ab, const KStrides& bb, i64 batches, Store store) {
  __shared__ float ta[16][MATMUL_CHUNK + 1];
  __shared__ float tb[MATMUL_CHUNK][17];
  int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  i64 row0 = i64(blockIdx.y) * 16, col0 = i64(blockIdx.x) * 16;
  for (i64 z = blockIdx.z; z < batches; z += gridDim.z) {
    const T* az = a + offset_of(z, batch, ab);
    const T* bz = b + offset_of(z, batch, bb);
    float acc = 0;
    for (i64 k0 = 0; k0 < K; k0 += MATMUL_CHUNK) {
#pragma unroll
      for (int round = 0; round < 16 * MATMUL_CHUNK / 256; ++round) {
        int e = round * 256 + int(threadIdx.x);
        int ar = e / MATMUL_CHUNK, ak = e % MATMUL_CHUNK;  // A: neighbouring threads along k
        ta[ar][ak] = (row0 + ar < M && k0 + ak < K) ? float(up(az[(row0 + ar) * a_row + (k0 + ak) * a_col])) : 0.0f;
        int bk = e / 16, bc = e % 16;  // B: neighbouring threads along the columns
        tb[bk][bc] = (k0 + bk < K && col0 + bc < N) ? float(up(bz[(k0 + bk) * b_row + (col0 + bc) * b_col])) : 0.0f;
      }
      __syncthreads();
      i64 padded = (K - k0 + 15) / 16 * 16;
      int steps = padded < MATMUL_CHUNK ? int(padded) : MATMUL_CHUNK;
      for (int kk = 0; kk < steps; ++kk) acc += ta[ty][kk] * tb[kk][tx];
      __syncthreads();
    }
    i64 row = row0 + ty, col = col0 + tx;
    if (row < M && col < N) store(z * M * N + row * N + col, acc);
  }
}

// ---- instantiations --------------------------------------------------------------------------

#define FLOATING(X) X(float, f32) X(f16, f16) X(bf16, bf16)
#define ALL_TYPES(X) X(float, f32) X(f16, f16) X(bf16, bf16) X(int, i32) X(u8, b8)

#if defined(LANES_FAMILY_ELEMENTWISE)
#define ARANGE(T, S) extern "C" __global__ void arange_##S(T* out, i64 n, double start, double step) { await_previous_kernel(); arange_impl<T>(out, n, start, step); }
ALL_TYPES(ARANGE)

#define UNARY(T, S) extern "C" __global__ void unary_##S(T* y, const T* x, KStrides sx, KShape shape, i64 n, int op, int flags) { await_previous_kernel(); unary_impl<T>(y, x, sx, shape, n, op, flags); }
FLOATING(UNARY)
UNARY(int, i32)

#define BINARY(T, S) extern "C" __global__ void binary_##S(void* y, const T* a, KStrides sa, const T* b, KStrides sb, KShape shape, i64 n, int op, int flags) { await_previous_kernel(); binary_impl<T>(y, a, sa, b, sb, shape, n, op, flags); }
ALL_TYPES(BINARY)
#define BINARY_SCALAR(T, S) extern "C" __global__ void binary_scalar_##S(void* y, const T* a, KStrides sa, KShape shape, i64 n, int op, int flags, double scalar, const double* dyn) { await_previous_kernel(); binary_scalar_impl<T>(y, a, sa, shape, n, op, flags, scalar, dyn); }
FLOATING(BINARY_SCALAR)
BINARY_SCALAR(int, i32)

#define BY_SIZE(X) X(u32, 4) X(u16, 2) X(u8, 1)
#define WHERE(T, S) extern "C" __global__ void where_##S(T* y, const u8* c, KStrides sc, const T* a, KStrides sa, const T* b, KStrides sb, KShape shape, i64 n) { await_previous_kernel(); where_impl<T>(y, c, sc, a, sa, b, sb, shape, n); }
BY_SIZE(WHERE)
#define COPY(T, S) extern "C" __global__ void copy_##S(T* y, KStrides sy, const T* x, KStrides sx, KShape shape, i64 n) { await_previous_kernel(); copy_impl<T>(y, sy, x, sx, shape, n); }
BY_SIZE(COPY)
// A copy whose destination moves by `*dyn` · `step` elements (a compiled plan's sliceUpdate offset).
#define COPY_AT(T, S) extern "C" __global__ void copy_at_##S(T* y, KStrides sy, const T* x, KStrides sx, KShape shape, i64 n, const double* dyn, i64 step) { await_previous_kernel(); copy_impl<T>(y + (dyn ? i64(*dyn) * step : 0), sy, x, sx, shape, n); }
BY_SIZE(COPY_AT)
#define COPY_ROWS(T, S) extern "C" __global__ void copy_rows_##S(T* y, const T* x, const int* offsets, i64 n, i64 per_entry, i64 U, i64 C, i64 R, int* error) { await_previous_kernel(); copy_rows_impl<T>(y, x, offsets, n, per_entry, U, C, R, error); }
BY_SIZE(COPY_ROWS)
#define TAKE(T, S) extern "C" __global__ void take_##S(T* y, const T* x, const int* idx, i64 outer, i64 dim, i64 inner, i64 count, int* error) { await_previous_kernel(); take_impl<T>(y, x, idx, outer, dim, inner, count, error); }
BY_SIZE(TAKE)

#define COPY_AT_CAST(F, FS, T, TS) extern "C" __global__ void copy_at_##FS##_##TS(T* y, KStrides sy, const F* x, KStrides sx, KShape shape, i64 n, const double* dyn, i64 step) { await_previous_kernel(); copy_cast_impl<F, T>(y + (dyn ? i64(*dyn) * step : 0), sy, x, sx, shape, n); }
#define COPY_AT_CAST_FROM(F, FS) COPY_AT_CAST(F, FS, float, f32) COPY_AT_CAST(F, FS, f16, f16) COPY_AT_CAST(F, FS, bf16, bf16)
FLOATING(COPY_AT_CAST_FROM)
// Two such copies in one launch (a compiled plan's key and value cache writes), each grid-stride
// over its own elements: they touch disjoint memory, so any order is theirs alone.
#define COPY_AT_PAIR_ARGS(T, F) T* y0, KStrides sy0, const F* x0, KStrides sx0, KShape shape0, i64 n0, const double* dyn0, i64 step0, \
                                T* y1, KStrides sy1, const F* x1, KStrides sx1, KShape shape1, i64 n1, const double* dyn1, i64 step1
#define COPY_AT_PAIR(T, S) extern "C" __global__ void copy_at_pair_##S(COPY_AT_PAIR_ARGS(T, T)) { await_previous_kernel(); \
  copy_impl<T>(y0 + (dyn0 ? i64(*dyn0) * step0 : 0), sy0, x0, sx0, shape0, n0); copy_impl<T>(y1 + (dyn1 ? i64(*dyn1) * step1 : 0), sy1, x1, sx1, shape1, n1); }
BY_SIZE(COPY_AT_PAIR)
#define COPY_AT_PAIR_CAST(F, FS, T, TS) extern "C" __global__ void copy_at_pair_##FS##_##TS(COPY_AT_PAIR_ARGS(T, F)) { await_previous_kernel(); \
  copy_cast_impl<F, T>(y0 + (dyn0 ? i64(*dyn0) * step0 : 0), sy0, x0, sx0, shape0, n0); copy_cast_impl<F, T>(y1 + (dyn1 ? i64(*dyn1) * step1 : 0), sy1, x1, sx1, shape1, n1); }
#define COPY_AT_PAIR_CAST_FROM(F, FS) COPY_AT_PAIR_CAST(F, FS, float, f32) COPY_AT_PAIR_CAST(F, FS, f16, f16) COPY_AT_PAIR_CAST(F, FS, bf16, bf16)
FLOATING(COPY_AT_PAIR_CAST_FROM)
#define ASTYPE_TO(F, FS, T, TS) extern "C" __global__ void astype_##FS##_##TS(T* y, const F* x, KStrides sx, KShape shape, i64 n) { await_previous_kernel(); astype_impl<F, T>(y, x, sx, shape, n); }
#define ASTYPE_FROM(F, FS) ASTYPE_TO(F, FS, float, f32) ASTYPE_TO(F, FS, f16, f16) ASTYPE_TO(F, FS, bf16, bf16) ASTYPE_TO(F, FS, int, i32) ASTYPE_TO(F, FS, u8, b8)
ALL_TYPES(ASTYPE_FROM)

#endif

#if defined(LANES_FAMILY_REDUCE)
#define REDUCE_G(T, S, ACC, G) extern "C" __global__ void reduce_##S##_g##G(void* y, const T* x, i64 outer, i64 R, i64 inner, int op) { await_previous_kernel(); reduce_impl<T, ACC, G>(y, x, outer, R, inner, op); }
#define REDUCE_F(T, S) REDUCE_G(T, S, double, 1) REDUCE_G(T, S, double, 32) REDUCE_G(T, S, double, 256)
#define REDUCE_I(T, S) REDUCE_G(T, S, i64, 1) REDUCE_G(T, S, i64, 32) REDUCE_G(T, S, i64, 256)
FLOATING(REDUCE_F)
REDUCE_I(int, i32)
REDUCE_I(u8, b8)

#endif

#if defined(LANES_FAMILY_ROWS)
#define ROWS_G(T, S, G) \
  extern "C" __global__ void softmax_##S##_g##G(T* y, const T* x, i64 outer, i64 L, i64 inner) { await_previous_kernel(); softmax_impl<T, G>(y, x, outer, L, inner); } \
  extern "C" __global__ void norm_##S##_g##G(T* y, const T* x, const T* w, const T* b, i64 rows, i64 D, double eps, int layer) { await_previous_kernel(); norm_impl<T, G>(y, x, w, b, rows, D, eps, layer); }
#define ROWS(T, S) ROWS_G(T, S, 1) ROWS_G(T, S, 32) ROWS_G(T, S, 256)
FLOATING(ROWS)

#endif

#if defined(LANES_FAMILY_FUSED)
#define ATTENTION(T, TKV, S) \
  extern "C" __global__ void __launch_bounds__(Chunk::threads) attention_##S(T* y, const T* q, const TKV* k, const TKV* v, i64 B, i64 H, i64 Lq, i64 D, i64 Hk, i64 Lk, i64 Dv, float scale, int causal, i64 used, const double* dyn, const int* lengths, int* error) { await_previous_kernel(); attention_rows<T, TKV>(y, q, k, v, AttentionArgs{B, H, Lq, D, Hk, Lk, Dv, scale, causal, used, dyn, lengths, error}); } \
  extern "C" __global__ void __launch_bounds__(Chunk::threads) attention_part_##S(T* y, float* parts, int* counters, const T* q, const TKV* k, const TKV* v, i64 B, i64 H, i64 Lq, i64 D, i64 Hk, i64 Lk, i64 Dv, float scale, int causal, i64 used, const double* dyn, const int* lengths, int* error) { await_previous_kernel(); attention_part<T, TKV>(y, parts, counters, q, k, v, AttentionArgs{B, H, Lq, D, Hk, Lk, Dv, scale, causal, used, dyn, lengths, error}); } \
  extern "C" __global__ void attention_combine_##S(T* y, const float* parts, i64 chunks, i64 B, i64 H, i64 Lq, i64 D, i64 Hk, i64 Lk, i64 Dv, float scale, int causal, i64 used, const double* dyn, const int* lengths, int* error) { await_previous_kernel(); attention_combine<T>(y, parts, chunks, AttentionArgs{B, H, Lq, D, Hk, Lk, Dv, scale, causal, used, dyn, lengths, error}); }
ATTENTION(float, f16, f32_f16)
#define FUSED(T, S) \
  ATTENTION(T, T, S) \
  extern "C" __global__ void rope_##S(T* y, const T* x, i64 rows, i64 L, i64 D, int dims, double base, double scale, double offset, int traditional, const double* dyn, const int* offsets, i64 rows_per_entry) { await_previous_kernel(); rope_impl<T>(y, x, rows, L, D, dims, base, scale, offset, traditional, dyn, offsets, rows_per_entry); } \
  extern "C" __global__ void matmul_##S(T* y, const T* a, const T* b, i64 M, i64 N, i64 K, i64 a_row, i64 a_col, i64 b_row, i64 b_col, KShape batch, KStrides ab, KStrides bb, i64 batches) { await_previous_kernel(); matmul_impl<T>(a, b, M, N, K, a_row, a_col, b_row, b_col, batch, ab, bb, batches, [y](i64 e, float acc) { y[e] = Down<T>::of(acc); }); }
FLOATING(FUSED)
#define ROPE_STORE_PAIR(C, CS) \
  extern "C" __global__ void rope_store_pair_f32_##CS(float* y, const float* x, i64 rows, i64 L, i64 D, int dims, double base, double scale, double offset, int traditional, const double* dyn, \
                                                      C* y0, KStrides sy0, KShape shape0, i64 from0, i64 n0, const double* dyn0, i64 step0, \
                                                      C* y1, KStrides sy1, const float* x1, KStrides sx1, KShape shape1, i64 n1, const double* dyn1, i64 step1) { \
    await_previous_kernel(); \
    rope_store_pair_impl<C>(y, x, rows, L, D, dims, base, scale, offset, traditional, dyn, y0, sy0, shape0, from0, n0, dyn0, step0, y1, sy1, x1, sx1, shape1, n1, dyn1, step1); }
ROPE_STORE_PAIR(float, f32)
ROPE_STORE_PAIR(f16, f16)
ROPE_STORE_PAIR(bf16, bf16)
// A compiled plan's float32 matmul with the elementwise chain that alone reads its product: the
// product is the chain's input 0, taken from the sum as matmul_f32 would have stored it.
extern "C" __global__ void matmul_epilogue_f32(float* y, const float* a, const float* b, i64 M, i64 N, i64 K, i64 a_row, i64 a_col, i64 b_row, i64 b_col, KShape batch, KStrides ab, KStrides bb, i64 batches,
                                               const float* x1, const float* x2, const float* x3, KFusedWalk w, KFused f, int inputs, int contiguous) {
  await_previous_kernel();
  matmul_impl<float>(a, b, M, N, K, a_row, a_col, b_row, b_col, batch, ab, bb, batches,
                     [&](i64 e, float acc) { y[e] = fused_value(e, acc, x1, x2, x3, w, f, inputs, contiguous); });
}
#endif

