// The CUDA C++ source of every lanes kernel, compiled at run time by NVRTC.
#pragma once

namespace lanes::cuda {
extern const char* const kKernelSource;
}
