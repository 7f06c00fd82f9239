#include "config.hpp"

#include <cstdlib>
#include <cstring>

namespace lanes {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string default_cache_dir() {
  if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return xdg + "/lanes";
  if (std::string home = env("HOME"); !home.empty()) return home + "/.cache/lanes";
  return "";
}

Config read_config() {
  Config c;
  c.backend = env("LANES_BACKEND");
  c.global_locking = env("LANES_LOCKING") == "global";
  if (long ms = std::strtol(env("LANES_WATCHDOG_MS").c_str(), nullptr, 10); ms > 0) c.watchdog = std::chrono::milliseconds(ms);
  c.fuse_elementwise = env("LANES_FUSE") != "0";
  c.fault_injection = env("LANES_FAULT_INJECTION") == "1";
  BackendSettings& b = c.backend_settings;
  b.cache_dir = env("LANES_CACHE_DIR");
  if (b.cache_dir.empty()) b.cache_dir = default_cache_dir();
  b.cpu_simd = env("LANES_CPU_SIMD");
  b.cpu_quant_sum = env("LANES_CPU_QUANT_SUM");
  b.cpu_llama_build = env("LANES_CPU_LLAMA_BUILD");
  if (long n = std::strtol(env("LANES_CPU_THREADS").c_str(), nullptr, 10); n >= 1 && n <= 1024) b.cpu_threads = static_cast<int>(n);
  b.cuda_tf32 = env("LANES_CUDA_TF32") == "1";
  b.cuda_cublaslt = env("LANES_CUDA_CUBLASLT") != "0";
  b.cuda_algo_index = static_cast<int>(std::strtol(env("LANES_CUDA_ALGO_INDEX").c_str(), nullptr, 10));
  b.cuda_read_wait = env("LANES_CUDA_READ") == "wait";
  b.cuda_read_copy = env("LANES_CUDA_READ") == "copy";
  b.cuda_overlap = env("LANES_CUDA_OVERLAP") != "0";
  return c;
}

}  // namespace

const Config& config() {
  static const Config c = read_config();
  return c;
}

}  // namespace lanes
