// The kernel source NVRTC compiles: the op codes from the one table, then cuda/kernels.cu,
// which is embedded in the library at build time.
#include "kernels_source.hpp"

#include "../ffi/src/gpu/kernel_layout.hpp"

// cuda/kernels.cu and cuda/quant_kernels.cu, NUL-terminated, as read-only symbols (assembled
// from the files themselves).
extern "C" const char lanes_cuda_kernels_cu[];
extern "C" const char lanes_cuda_quant_kernels_cu[];
asm(".section .rodata\n"
    ".global lanes_cuda_kernels_cu\n"
    "lanes_cuda_kernels_cu:\n"
    ".incbin \"cuda/kernels.cu\"\n"
    ".byte 0\n"
    ".global lanes_cuda_quant_kernels_cu\n"
    "lanes_cuda_quant_kernels_cu:\n"
    ".incbin \"cuda/quant_kernels.cu\"\n"
    ".byte 0\n"
    ".previous\n");

namespace lanes::cuda {

const std::string& kernel_source() {
  static const std::string source =
      gpu::op_constants() + lanes_cuda_kernels_cu + "\n" + lanes_cuda_quant_kernels_cu;
  return source;
}

}  // namespace lanes::cuda
