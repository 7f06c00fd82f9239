#pragma once
#include <cstddef>
#include <string>

#include "lanes.h"
#include "status.hpp"

namespace lanes {

enum class DType : int { Float32 = LANES_FLOAT32, Int32 = LANES_INT32 };

inline size_t dtype_size(DType) { return 4; }

inline const char* dtype_name(DType d) { return d == DType::Float32 ? "float32" : "int32"; }

inline DType dtype_from_abi(lanes_dtype d, const char* op) {
  if (d == LANES_FLOAT32) return DType::Float32;
  if (d == LANES_INT32) return DType::Int32;
  throw_error(LANES_ERR_DTYPE, std::string(op) + ": unknown dtype code " + std::to_string(d));
}

// MLX promotion restricted to the dtypes we have: any float wins over int.
inline DType promote(DType a, DType b) { return (a == DType::Float32 || b == DType::Float32) ? DType::Float32 : DType::Int32; }

}  // namespace lanes
