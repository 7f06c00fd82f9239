// CPU kernels: one function per op, each computing every output element in a fixed order
// (deterministic whatever the threading).
#pragma once
#include "../ffi/src/command.hpp"

namespace lanes::cpu {

void run_kernel(const Command& command);

}  // namespace lanes::cpu
