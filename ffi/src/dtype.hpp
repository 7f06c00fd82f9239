// Element types, from the table in lanes_table.def.
#pragma once
#include <cstddef>
#include <cstdint>
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

}  // namespace lanes
