// One CUDA device as the backend uses it, and what the op translation (launch.cpp,
// matmul.cpp) produces for one command: the stream operations it becomes, recorded before the
// op lock and issued under it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../ffi/src/backend.hpp"
#include "../ffi/src/gpu/device_completions.hpp"
#include "../ffi/src/gpu/range_checks.hpp"
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
  int algo_index = 0;         // LANES_CUDA_ALGO_INDEX=k: cuBLASLt's k-th candidate (bench/cuda-algos.ts)
  bool read_by_copy = false;  // LANES_CUDA_READ=copy: small reads by the copy engine, not a kernel
  // A compiled plan's kernels each start while the one before finishes (sm_90 on, a CUDA 12.3
  // driver on, and not LANES_CUDA_OVERLAP=0); a plan whose graph cannot be captured so falls
  // back to plain launches.
  bool overlap_kernels = false;
  void* cublaslt_handle = nullptr;
  std::unique_ptr<Modules> modules;
  std::unique_ptr<gpu::DeviceCompletions> completions;
  CUstream probe = nullptr;  // never used for work: its query fails only once the context died

  // Makes the device's context current on the calling thread (cheap when it already is).
  void make_current() const;
};

// Small words kernels write to report errors: host-visible (pinned, mapped into the device), or
// device memory (`host` null) for a CUDA graph's checks, which each replay copies out to
// host-visible words of its own (a copy from mapped memory would run on the host, after the
// stream drained).
class ErrorWords {
 public:
  enum class Memory { Mapped, Device };
  struct Word {
    int* host;
    CUdeviceptr device;
  };
  explicit ErrorWords(Memory memory = Memory::Mapped) : memory_(memory) {}
  ~ErrorWords();
  ErrorWords(const ErrorWords&) = delete;
  ErrorWords& operator=(const ErrorWords&) = delete;
  // A mapped word comes zeroed; a device word holds whatever its last user left.
  Word take();
  void give_back(Word w);

 private:
  const Memory memory_;
  std::mutex mutex_;  // leaf
  std::vector<Word> free_;
  std::vector<CUdeviceptr> device_slabs_;
};

using TakeCheck = gpu::RangeCheck<ErrorWords::Word>;

// One operation on a CUstream: a kernel launch with its packed arguments, a copy to the host,
// or a library call.
struct StreamOp {
  CUfunction function = nullptr;
  unsigned grid[3] = {1, 1, 1};
  unsigned block = 1, shared = 0;
  std::vector<unsigned char> args;  // each argument at its natural alignment
  std::vector<size_t> offsets;
  void* host_dst = nullptr;  // a copy to the host when set
  CUdeviceptr src = 0;
  size_t bytes = 0;
  std::function<std::optional<std::string>(CUstream)> call;  // a library call (cuBLASLt) when set
  // The kernel may start while the previous kernel in the stream finishes (programmatic
  // dependent launch): every lanes kernel waits for it before touching memory (kernels.cu's
  // await_previous_kernel).
  bool overlap = false;

  // Issues the operation; what failed is returned, not thrown.
  std::optional<std::string> issue(CUstream stream) const;
};

// A translated command: its stream operations and range checks.
using CudaPrepared = gpu::Prepared<StreamOp, ErrorWords>;

// What translating one command needs.
struct LaunchContext {
  const Device& device;
  ErrorWords& error_words;
  Scratch& scratch;
  CudaPrepared& out;
  // A compiled plan's block of scalar parameters (8 bytes each), written before each replay;
  // 0 outside plans.
  CUdeviceptr dynamic = 0;
  // The kernels recorded may overlap their predecessors' ends (StreamOp::overlap).
  bool overlap = false;

  // Where a kernel reads scalar `i` of `params` at run time, or 0 when it is fixed.
  CUdeviceptr dynamic_scalar(const OpParams& params, int i) const {
    return dynamic && params.dynamic[i] >= 0 ? dynamic + 8 * static_cast<CUdeviceptr>(params.dynamic[i]) : 0;
  }

  // A compiled plan's memory zeroed once before its first replay (counters its kernels zero
  // again after use); null outside plans.
  std::vector<std::pair<CUdeviceptr, size_t>>* zeroed = nullptr;

  // Device scratch of `bytes`, alive until the command's epoch completed.
  CUdeviceptr temp(size_t bytes) { return reinterpret_cast<CUdeviceptr>(scratch.allocate(bytes)); }
  // Zeroed scratch of `bytes` for the life of a compiled plan's instance; 0 outside plans.
  CUdeviceptr zeroed_temp(size_t bytes) {
    if (!zeroed) return 0;
    CUdeviceptr p = temp(bytes);
    zeroed->emplace_back(p, bytes);
    return p;
  }
};

// Records the stream operations of one command. Throws lanes::Error on failure.
void translate(const Command& command, LaunchContext& ctx);
// Records two consecutive sliceUpdates of a compiled plan as one launch (a decode step's key and
// value cache writes) where each is one strided copy into a donated target and neither touches
// the other's memory; false (nothing recorded) otherwise.
bool translate_update_pair(const Command& a, const Command& b, LaunchContext& ctx);
// Records a compiled plan's float32 rope and the two sliceUpdates after it (a decode step's key
// and value cache writes) as one launch, where the two are an update pair as above, one copies a
// contiguous range of the rope's output and the other reads nothing the rope writes; false
// (nothing recorded) otherwise.
bool translate_rope_updates(const Command& rope, const Command& a, const Command& b, LaunchContext& ctx);
// Records a plan's copy of `bytes` between `slot` and the address stored at `bound` (a word of
// the plan's parameter block): into the slot when `into_plan`, else out of it.
void translate_bound_copy(CUdeviceptr slot, CUdeviceptr bound, bool into_plan, size_t bytes, LaunchContext& ctx);

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
// Float32 products of at most 96 in each dimension take lanes' own kernel, which is as fast as
// cuBLASLt's there or faster (bench/cuda-small-matmul.ts, docs/PERFORMANCE.md), and which a
// compiled plan can give an elementwise epilogue with the same bits.
inline bool small_matmul(int64_t M, int64_t N, int64_t K, DType dtype) {
  return dtype == DType::Float32 && M <= 96 && N <= 96 && K <= 96;
}

// Rows up to which the quantized matvec (8-bit activations, dp4a) runs; longer inputs (a prompt,
// a batched decode step of more than 16 sequences) round the activations to 8 bits the same way,
// dequantize the weights and take the dense matmul. The matvec reads each weight block once per 8 rows, so its time grows with the rows;
// the dense path's barely does. On an H200, SmolLM2-135M decoding 32 sequences at once ran at
// 1,434 tokens/s with 64 here and 4,163 with 16, the same within noise at 1 and 8 sequences
// (docs/CUDA.md, bench/quant-rows.ts).
constexpr int64_t kMatvecRows = 16;
// Features up to which the matvec takes a pair epilogue: one staged tile of activations
// (QMV_KTILE in quant_kernels.cu), so each column's sum is complete in one pass.
constexpr int64_t kMatvecPairColumns = 2048;
// Warps a block of the matvec's build for a column or two a warp (and of its pair epilogue):
// every block stages the whole activation tile, so with more warps each stages fewer of its
// blocks. On an H200, 16 warps against 8 took a SmolLM2-shaped decode step from 1.37 to 1.32 ms
// (its matvecs' kernel time by 7 %); 32 do not fit their registers. A block of 16 warps leaves
// each thread 128 registers: those builds take 78 to 120 with NVRTC 12.9 for sm_90, and more
// would fail every launch ("too many resources requested"), which the GPU suite shows. A launch
// bound would hold them under it, but it changes the code ptxas emits for all of them, which
// was measured without one.
constexpr int64_t kMatvecFewWarps = 16;

}  // namespace lanes::cuda
