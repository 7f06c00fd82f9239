#include "watchdog.hpp"

#include <cstdlib>

namespace lanes {

std::optional<std::chrono::milliseconds> watchdog_limit() {
  static const std::optional<std::chrono::milliseconds> limit = []() -> std::optional<std::chrono::milliseconds> {
    const char* v = std::getenv("LANES_WATCHDOG_MS");
    if (!v || !*v) return std::nullopt;
    long ms = std::strtol(v, nullptr, 10);
    if (ms <= 0) return std::nullopt;
    return std::chrono::milliseconds(ms);
  }();
  return limit;
}

}  // namespace lanes
