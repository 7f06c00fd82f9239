// The CUDA C++ source of every lanes kernel, compiled at run time by NVRTC.
#pragma once
#include <string>

namespace lanes::cuda {
const std::string& kernel_source();
}
