// One CUDA device as the backend uses it, and what the op translation (launch.cpp,
// matmul.cpp) needs while it encodes one committed epoch onto a CUstream.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../ffi/src/buffer.hpp"
#include "../ffi/src/command.hpp"
#include "driver.hpp"
#include "modules.hpp"

namespace lanes::cuda {

struct Device {
  int index = 0;  // lanes' device number (the CUDA ordinal)
  CUdevice device = 0;
  CUcontext context = nullptr;
  std::string name;
  int cc_major = 0, cc_minor = 0, sm_count = 1;
  bool tf32 = false;          // LANES_CUDA_TF32=1: float32 matmul may use TF32 tensor cores
  bool use_cublaslt = true;   // LANES_CUDA_CUBLASLT=0 forces lanes' own matmul kernel
  bool graphs = false;        // LANES_CUDA_GRAPHS=1: each epoch is captured and launched as a CUDA graph
  bool event_sync = false;    // LANES_CUDA_SYNC=events: cross-stream waits on events, not counters
  void* cublaslt_handle = nullptr;
  std::unique_ptr<Modules> modules;

  // Makes the device's context current on the calling thread (cheap when it already is).
  void make_current() const;
};

// Small host-visible words kernels write to report errors (pinned, mapped into the device).
class ErrorWords {
 public:
  struct Word {
    int* host;
    CUdeviceptr device;
  };
  Word take();
  void give_back(Word w);

 private:
  std::mutex mutex_;  // leaf
  std::vector<Word> free_;
};

// A take kernel's error word and what its message needs.
struct TakeCheck {
  ErrorWords::Word word;
  int axis;
  int64_t dim;
};

// State of one epoch being launched; the submission keeps it until the epoch completed, so
// scratch buffers outlive the kernels that use them.
struct LaunchContext {
  const Device& device;
  ErrorWords& error_words;
  CUstream stream;
  std::vector<std::shared_ptr<Buffer>> temps;
  std::vector<TakeCheck> take_checks;

  // Device scratch of `bytes`, from the caching allocator (counted against its limit).
  CUdeviceptr temp(size_t bytes);
};

// Launches the kernels of one command onto ctx.stream. Throws lanes::Error on failure.
void launch_command(const Command& command, LaunchContext& ctx);

// Matmul through cuBLASLt; false when cuBLASLt is unavailable or declines the problem (the
// caller then uses lanes' own kernel). a/b are device pointers with the given read strides.
struct MatmulOperands {
  CUdeviceptr a, b, y;
  int64_t batches, M, N, K;
  int64_t a_batch, a_row, a_col;  // element strides; batch stride applies to a flat batch index
  int64_t b_batch, b_row, b_col;
  DType dtype;
};
bool matmul_cublaslt(const MatmulOperands& m, LaunchContext& ctx);

}  // namespace lanes::cuda
