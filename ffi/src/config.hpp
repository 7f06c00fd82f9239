// Every environment switch lanes reads, read once, with its default. The README lists them.
#pragma once
#include <chrono>
#include <optional>
#include <string>

#include "backend.hpp"

namespace lanes {

struct Config {
  // LANES_BACKEND: "cpu", "cuda" or "metal"; empty picks Metal on macOS and the CPU elsewhere.
  std::string backend;
  // LANES_LOCKING=global: one process-wide lock held across each whole evaluation (host
  // preparation, encoding, commit), as MLX PR #2104 did; for comparison with per-stream locks.
  bool global_locking = false;
  // LANES_WATCHDOG_MS: a host wait longer than this fails with a device error naming the
  // stream, timeline value and waiting threads instead of hanging. Unset: wait forever.
  std::optional<std::chrono::milliseconds> watchdog;
  // LANES_FUSE=0: compiled plans run every elementwise op as its own kernel instead of fusing
  // chains of them (for comparison; results are the same bits either way).
  bool fuse_elementwise = true;
  // LANES_FAULT_INJECTION=1: enables the test-only fault hooks (lanes_debug_*).
  bool fault_injection = false;
  // The backend's switches: LANES_CPU_SIMD, LANES_CPU_THREADS, LANES_CACHE_DIR, LANES_CUDA_*.
  BackendSettings backend_settings;
};

// The switches of this process, read from the environment on first use.
const Config& config();

}  // namespace lanes
