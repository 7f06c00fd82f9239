// The two ways a command fails because of other work, worded the same on every backend: an
// input produced by failed work (the error follows the data), and a cross-stream wait on work
// that failed.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "command.hpp"
#include "timeline.hpp"

namespace lanes {

inline std::optional<std::string> poisoned_input(const Command& c) {
  for (const TensorArg& in : c.inputs)
    if (in.buffer->poisoned.load(std::memory_order_acquire))
      return std::string(op_name(c.op, c.params.subop)) + ": an input was produced by failed work";
  return std::nullopt;
}

// Waits (on the host) until `other` reached `value`; its error, if that work failed.
inline std::optional<std::string> failed_wait(Timeline& other, uint64_t value) {
  if (auto e = other.wait(value)) return "waited on stream " + std::to_string(other.stream_id()) + ", which failed: " + *e;
  return std::nullopt;
}

}  // namespace lanes
