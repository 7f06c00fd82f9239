#pragma once
#include <cstddef>
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
};

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::Bool: return 1;
    case DType::Float16:
    case DType::BFloat16: return 2;
    default: return 4;
  }
}

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Int32: return "int32";
    case DType::Bool: return "bool";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}

inline bool is_floating(DType d) { return d == DType::Float32 || d == DType::Float16 || d == DType::BFloat16; }

inline DType dtype_from_abi(lanes_dtype d, const char* op) {
  if (d >= LANES_FLOAT32 && d <= LANES_BFLOAT16) return static_cast<DType>(d);
  throw_error(LANES_ERR_DTYPE, std::string(op) + ": unknown dtype code " + std::to_string(d));
}

// Type promotion, MLX's table restricted to our dtypes:
//   bool < int32 < {float16, bfloat16} < float32;  float16 with bfloat16 gives float32.
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
