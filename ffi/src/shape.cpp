#include "shape.hpp"

#include "status.hpp"

namespace lanes {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t checked_numel(const Shape& s, const char* op) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw_error(LANES_ERR_SHAPE, std::string(op) + ": negative dimension in shape " + shape_str(s));
    if (d != 0 && n > kMaxElements / d)
      throw_error(LANES_ERR_SHAPE, std::string(op) + ": shape " + shape_str(s) + " has too many elements");
    n *= d;
  }
  return n;
}

bool reshaped_strides(const Shape& shape, const Shape& strides, const Shape& to, Shape& out) {
  Shape dims, steps;  // the axes of more than one element
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] != 1) dims.push_back(shape[i]), steps.push_back(strides[i]);
  out.assign(to.size(), 1);
  size_t i = 0, j = 0;
  // Each run of old axes i..i2 holding as many elements as new axes j..j2 must be one
  // evenly strided block; the new axes then step through it.
  while (i < dims.size() && j < to.size()) {
    size_t i2 = i + 1, j2 = j + 1;
    int64_t old_count = dims[i], new_count = to[j];
    while (old_count != new_count) {
      if (new_count < old_count)
        new_count *= to[j2++];
      else
        old_count *= dims[i2++];
    }
    for (size_t k = i; k + 1 < i2; ++k)
      if (steps[k] != steps[k + 1] * dims[k + 1]) return false;
    out[j2 - 1] = steps[i2 - 1];
    for (size_t k = j2 - 1; k > j; --k) out[k - 1] = out[k] * to[k];
    i = i2, j = j2;
  }
  return true;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw_error(LANES_ERR_SHAPE,
                  std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape st(out.size(), 0);
  Shape cs = contiguous_strides(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : cs[i];
  return st;
}

int normalize_axis(int axis, int ndim, const char* op) {
  if (axis < -ndim || axis >= ndim)
    throw_error(LANES_ERR_SHAPE, std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " +
                                     std::to_string(ndim) + "-d array");
  return axis < 0 ? axis + ndim : axis;
}

}  // namespace lanes
