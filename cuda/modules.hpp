// Kernel modules: NVRTC compiles each kernel family on first use for the device's compute
// capability; the cubin is cached in memory for the process and on disk across processes,
// keyed by a hash of the source, the options, the NVRTC version and the compute capability.
#pragma once
#include <map>
#include <mutex>
#include <string>

#include "driver.hpp"

namespace lanes::cuda {

class Modules {
 public:
  // `cache_dir`: where compiled kernels are kept across processes (empty: not kept).
  Modules(int cc_major, int cc_minor, std::string cache_dir);
  // The kernel `name` (compiling its family first if needed). Thread-safe. The caller's
  // thread must have the device's context current.
  CUfunction function(const std::string& name);
  // Starts loading every family in the background (one thread each, `make_current` called
  // first in each), so the first kernel of each family waits less.
  void prefetch(void (*make_current)(const void*), const void* arg);

 private:
  struct Family {
    std::mutex mutex;  // leaf; held across the compile so each family compiles once
    CUmodule module = nullptr;
  };
  CUmodule module_of(const std::string& family);
  CUmodule load_family(const std::string& family);

  const int cc_major_, cc_minor_;
  const std::string cache_dir_;
  std::map<std::string, Family> families_;  // fixed at construction
  std::mutex functions_mutex_;              // leaf
  std::map<std::string, CUfunction> functions_;
};

}  // namespace lanes::cuda
