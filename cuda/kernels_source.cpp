// The kernel source NVRTC compiles: the op codes from the one table, then cuda/kernels.cu,
// which is embedded in the library at build time.
#include "kernels_source.hpp"

#include "../ffi/src/gpu/kernel_layout.hpp"

// cuda/kernels.cu and cuda/quant_kernels.cu, NUL-terminated. Zig builds link cuda/embed.zig,
// whose @embedFile zig's cache tracks (LANES_CUDA_EMBED_OBJECT); the sanitizer builds (clang and
// g++ from Debian, always from scratch) take the files with .incbin.
#if defined(LANES_CUDA_EMBED_OBJECT)
extern "C" const char* const lanes_cuda_kernels_cu;
extern "C" const char* const lanes_cuda_quant_kernels_cu;
#else
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
#endif

namespace lanes::cuda {

const std::string& kernel_source() {
  static const std::string source =
      gpu::op_constants() + lanes_cuda_kernels_cu + "\n" + lanes_cuda_quant_kernels_cu;
  return source;
}

}  // namespace lanes::cuda
