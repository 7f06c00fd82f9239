// The deadlock watchdog: with LANES_WATCHDOG_MS set, a host wait that exceeds it gives up
// with a device error that names what it waited for (stream, timeline value, waiting threads)
// instead of hanging. Off (wait forever) when unset.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>

namespace lanes {

// The watchdog limit, or nullopt when waits are unbounded.
std::optional<std::chrono::milliseconds> watchdog_limit();

}  // namespace lanes
