#pragma once
#include <cstdint>
#include <string>

#include "small_vector.hpp"

namespace lanes {

// Dimensions or element strides (inline up to 8: no allocation for usual shapes).
using Shape = SmallVector<int64_t, 8>;

// Largest element count we accept; keeps byte sizes far from overflow.
inline constexpr int64_t kMaxElements = int64_t(1) << 40;

std::string shape_str(const Shape& s);
// Element count; throws a shape error naming `op` on negative dims or overflow.
int64_t checked_numel(const Shape& s, const char* op);
inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
Shape contiguous_strides(const Shape& s);
// Strides that read an array of `shape` and `strides` in row-major order as `to` (same
// element count, > 0) without a copy; false when the layout does not allow it.
bool reshaped_strides(const Shape& shape, const Shape& strides, const Shape& to, Shape& out);
// numpy broadcasting of two shapes; throws a shape error naming `op`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Strides that read `in` (contiguous) as if it had shape `out` (broadcast, zero strides).
Shape broadcast_strides(const Shape& in, const Shape& out);
// Normalizes a possibly negative axis; throws naming `op`.
int normalize_axis(int axis, int ndim, const char* op);

}  // namespace lanes
