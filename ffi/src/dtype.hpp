// Element types, from the table in lanes_table.def.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "lanes.h"
#include "status.hpp"

namespace lanes {

enum class DType : int {
  Float32 = LANES_FLOAT32,
  Int32 = LANES_INT32,
  Bool = LANES_BOOL,
  Float16 = LANES_FLOAT16,
  BFloat16 = LANES_BFLOAT16,
  Q4_0 = LANES_Q4_0,
  Q4_1 = LANES_Q4_1,
  Q8_0 = LANES_Q8_0,
};

struct DTypeInfo {
  const char* name;
  size_t bytes;  // per element, or per block for the quantized types
  int64_t block;  // elements per block (1: not quantized)
};

inline constexpr DTypeInfo kDTypes[] = {
#define LANES_DTYPE(code, NAME, name, bytes, block) {#name, bytes, block},
#include "lanes_table.def"
};
inline constexpr int kDTypeCount = static_cast<int>(sizeof(kDTypes) / sizeof(kDTypes[0]));

inline const DTypeInfo& dtype_info(DType d) { return kDTypes[static_cast<int>(d)]; }
inline const char* dtype_name(DType d) { return dtype_info(d).name; }
inline bool is_quantized(DType d) { return dtype_info(d).block > 1; }
// Bytes per element of a type that is not quantized.
inline size_t dtype_size(DType d) { return dtype_info(d).bytes; }
// Bytes of `count` elements (a whole number of blocks for the quantized types).
inline size_t dtype_bytes(DType d, int64_t count) {
  const DTypeInfo& info = dtype_info(d);
  return static_cast<size_t>(count / info.block) * info.bytes;
}

inline bool is_floating(DType d) { return d == DType::Float32 || d == DType::Float16 || d == DType::BFloat16; }

inline DType dtype_from_abi(lanes_dtype d, const char* op) {
  if (d >= 0 && d < kDTypeCount) return static_cast<DType>(d);
  throw_error(LANES_ERR_DTYPE, std::string(op) + ": unknown dtype code " + std::to_string(d));
}

// Type promotion, MLX's table restricted to our dtypes:
//   bool < int32 < {float16, bfloat16} < float32;  float16 with bfloat16 gives float32.
// Quantized types never promote: ops that take them say so.
inline DType promote(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType d) {
    switch (d) {
      case DType::Bool: return 0;
      case DType::Int32: return 1;
      case DType::Float16:
      case DType::BFloat16: return 2;
      default: return 3;
    }
  };
  if (rank(a) == 2 && rank(b) == 2) return DType::Float32;
  return rank(a) >= rank(b) ? a : b;
}

// The float type an op that needs floating point computes in: halves stay half.
inline DType floating_of(DType d) { return is_floating(d) ? d : DType::Float32; }

// ---- float16 and bfloat16 storage types with float32 conversions (round to nearest even), done in
// software so results are the same on every CPU.
struct f16 {
  uint16_t bits;
};
struct bf16 {
  uint16_t bits;
};

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float to_float(bf16 h) { return bits_float(uint32_t(h.bits) << 16); }
inline bf16 to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1);
  return bf16{uint16_t(u >> 16)};
}

inline float to_float(f16 h) {
  uint32_t sign = uint32_t(h.bits & 0x8000) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1f;
  uint32_t mant = h.bits & 0x3ff;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    float v = float(mant) * (1.0f / 16777216.0f);  // subnormal: mant * 2^-24
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

inline f16 to_f16(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return f16{uint16_t(sign | 0x7e00)};  // NaN
  if (abs >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00)};  // rounds to inf
  if (abs < 0x38800000u) {
    // Subnormal or zero in half: scale by 2^24 and round to an integer count of 2^-24.
    float scaled = bits_float(abs) * 16777216.0f;
    uint32_t q = uint32_t(scaled);
    float rem = scaled - float(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1))) ++q;
    return f16{uint16_t(sign | q)};
  }
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 112;
  uint32_t half = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1))) ++half;  // carries into exp correctly
  return f16{uint16_t(sign | half)};
}

}  // namespace lanes
