// The kernel source NVRTC compiles: the op codes from the one table, then cuda/kernels.cu,
// which is embedded in the library at build time.
#include "kernels_source.hpp"

#include "../ffi/src/gpu/kernel_layout.hpp"

// cuda/kernels.cu and cuda/quant_kernels.cu, NUL-terminated. #embed puts the two files in the
// compiler's dependency list, so editing a kernel rebuilds the library (zig's clang has it); a
// compiler without it (the sanitizer builds' g++ and clang 14) takes them with .incbin.
#if defined(__has_embed)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wc23-extensions"
static const char lanes_cuda_kernels_cu[] = {
#embed "kernels.cu"
    , 0};
static const char lanes_cuda_quant_kernels_cu[] = {
#embed "quant_kernels.cu"
    , 0};
#pragma clang diagnostic pop
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
