// Every environment switch lanes reads, read once, with its default. The README lists them.
#pragma once
#include <chrono>
#include <optional>
#include <string>

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
  // LANES_FAULT_INJECTION=1: enables the test-only fault hooks (lanes_debug_*).
  bool fault_injection = false;
  // LANES_CACHE_DIR: compiled CUDA kernels (default $XDG_CACHE_HOME/lanes or ~/.cache/lanes).
  std::string cache_dir;
  // LANES_CPU_SIMD: "scalar", "avx2" or "avx512" caps the CPU kernels' instruction set (tests
  // force each path); unset: the best this CPU has.
  std::string cpu_simd;
  // LANES_CPU_THREADS: threads of the CPU compute pool, the caller included (1 to 1024; 1 runs
  // every job on its caller). Unset or out of range (0 here): one per hardware thread.
  int cpu_threads = 0;
  // LANES_CUDA_TF32=1: float32 matmul may use TF32 tensor cores.
  bool cuda_tf32 = false;
  // LANES_CUDA_CUBLASLT=0: lanes' own matmul kernel instead of cuBLASLt.
  bool cuda_cublaslt = true;
  // LANES_CUDA_ALGO_INDEX=k: cuBLASLt's k-th candidate algorithm (default 0, its first choice).
  int cuda_algo_index = 0;
  // LANES_CUDA_READ=wait: a read of work in flight waits for it, then copies (instead of a copy
  // queued on the stream behind the kernels).
  bool cuda_read_wait = false;
};

// The switches of this process, read from the environment on first use.
const Config& config();

}  // namespace lanes
