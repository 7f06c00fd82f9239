// The Metal kernel source newLibraryWithSource compiles: the op codes of the one table
// (gpu::op_constants(): OP_EXP, R_SUM, ...), then the text metal/embed.zig embeds
// (kernel_params.hpp, then kernels.metal). Plain C++, so metal/check/print_source.cpp prints
// exactly this text on Linux for the type check.
#pragma once
#include <string>

#include "../ffi/src/gpu/kernel_layout.hpp"

extern "C" const char* const lanes_metal_kernel_source;  // metal/embed.zig

namespace lanes::metal {

inline std::string kernel_source() { return gpu::op_constants() + lanes_metal_kernel_source; }

}  // namespace lanes::metal
