#include "driver.hpp"

#include <dlfcn.h>

#include <cstdlib>

#include <initializer_list>

#include "../ffi/src/status.hpp"

namespace lanes::cuda {
namespace {

void* open_first(std::initializer_list<const char*> names, std::string& tried) {
  for (const char* name : names) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return h;
    tried += tried.empty() ? name : std::string(", ") + name;
  }
  return nullptr;
}

// Binds `fn` to the first of `names` the library exports; false if none.
template <class Fn>
bool bind(void* lib, Fn& fn, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (void* p = dlsym(lib, name)) {
      fn = reinterpret_cast<Fn>(p);
      return true;
    }
  }
  return false;
}

std::string describe(const Driver& d, CUresult r) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (d.cuGetErrorName(r, &name) != CUDA_SUCCESS) name = nullptr;
  if (d.cuGetErrorString(r, &text) != CUDA_SUCCESS) text = nullptr;
  std::string out = name ? name : "CUDA error " + std::to_string(r);
  if (text) out += std::string(" (") + text + ")";
  return out;
}

#define BIND(lib, table, field, ...)                                                                       \
  if (!bind(lib, table.field, {__VA_ARGS__}))                                                              \
  throw_error(LANES_ERR_DEVICE, std::string("CUDA: the loaded library lacks ") + #field)

Driver load_driver() {
  std::string tried;
  void* lib = open_first({"libcuda.so.1", "libcuda.so"}, tried);
  if (!lib)
    throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=cuda: no NVIDIA driver library (tried " + tried +
                                      "); install the NVIDIA driver or use the cpu backend");
  Driver d{};
  BIND(lib, d, cuInit, "cuInit");
  BIND(lib, d, cuDriverGetVersion, "cuDriverGetVersion");
  BIND(lib, d, cuDeviceGetCount, "cuDeviceGetCount");
  BIND(lib, d, cuDeviceGet, "cuDeviceGet");
  BIND(lib, d, cuDeviceGetName, "cuDeviceGetName");
  BIND(lib, d, cuDeviceGetAttribute, "cuDeviceGetAttribute");
  BIND(lib, d, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  BIND(lib, d, cuCtxSetCurrent, "cuCtxSetCurrent");
  BIND(lib, d, cuDeviceCanAccessPeer, "cuDeviceCanAccessPeer");
  BIND(lib, d, cuCtxEnablePeerAccess, "cuCtxEnablePeerAccess");
  BIND(lib, d, cuGetErrorName, "cuGetErrorName");
  BIND(lib, d, cuGetErrorString, "cuGetErrorString");
  BIND(lib, d, cuMemAlloc, "cuMemAlloc_v2");
  BIND(lib, d, cuMemFree, "cuMemFree_v2");
  BIND(lib, d, cuMemGetInfo, "cuMemGetInfo_v2");
  BIND(lib, d, cuMemHostAlloc, "cuMemHostAlloc");
  BIND(lib, d, cuMemFreeHost, "cuMemFreeHost");
  BIND(lib, d, cuMemHostGetDevicePointer, "cuMemHostGetDevicePointer_v2");
  BIND(lib, d, cuMemcpyHtoD, "cuMemcpyHtoD_v2");
  BIND(lib, d, cuMemcpyDtoH, "cuMemcpyDtoH_v2");
  BIND(lib, d, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  BIND(lib, d, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  BIND(lib, d, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
  BIND(lib, d, cuEventCreate, "cuEventCreate");
  BIND(lib, d, cuEventRecord, "cuEventRecord");
  BIND(lib, d, cuEventSynchronize, "cuEventSynchronize");
  BIND(lib, d, cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy");
  BIND(lib, d, cuStreamWaitEvent, "cuStreamWaitEvent");
  BIND(lib, d, cuStreamBeginCapture, "cuStreamBeginCapture_v2", "cuStreamBeginCapture");
  BIND(lib, d, cuStreamEndCapture, "cuStreamEndCapture");
  BIND(lib, d, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
  BIND(lib, d, cuGraphLaunch, "cuGraphLaunch");
  BIND(lib, d, cuGraphDestroy, "cuGraphDestroy");
  BIND(lib, d, cuGraphExecDestroy, "cuGraphExecDestroy");
  BIND(lib, d, cuMemsetD8, "cuMemsetD8_v2");
  BIND(lib, d, cuMemsetD8Async, "cuMemsetD8Async");
  BIND(lib, d, cuStreamCreate, "cuStreamCreate");
  BIND(lib, d, cuStreamDestroy, "cuStreamDestroy_v2");
  BIND(lib, d, cuStreamQuery, "cuStreamQuery");
  BIND(lib, d, cuStreamSynchronize, "cuStreamSynchronize");
  BIND(lib, d, cuStreamWaitValue64, "cuStreamWaitValue64_v2", "cuStreamWaitValue64");
  BIND(lib, d, cuStreamWriteValue64, "cuStreamWriteValue64_v2", "cuStreamWriteValue64");
  BIND(lib, d, cuLaunchHostFunc, "cuLaunchHostFunc");
  BIND(lib, d, cuModuleLoadData, "cuModuleLoadData");
  BIND(lib, d, cuModuleGetFunction, "cuModuleGetFunction");
  BIND(lib, d, cuFuncSetAttribute, "cuFuncSetAttribute");
  BIND(lib, d, cuLaunchKernel, "cuLaunchKernel");
  bind(lib, d.cuLaunchKernelEx, {"cuLaunchKernelEx"});
  // Many lanes streams run at once: give them the most hardware queues the driver allows, so
  // independent streams do not share (and serialize in) the default 8. A user setting wins.
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0);
  if (CUresult r = d.cuInit(0); r != CUDA_SUCCESS)
    throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=cuda: cuInit failed: " + describe(d, r));
  return d;
}

Nvrtc load_nvrtc() {
  std::string tried;
  void* lib = open_first({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}, tried);
  if (!lib)
    throw_error(LANES_ERR_DEVICE, "LANES_BACKEND=cuda: NVRTC, which compiles lanes' kernels, is missing (tried " +
                                      tried + "); install the CUDA runtime compiler (cuda-nvrtc)");
  Nvrtc n{};
  BIND(lib, n, nvrtcVersion, "nvrtcVersion");
  BIND(lib, n, nvrtcCreateProgram, "nvrtcCreateProgram");
  BIND(lib, n, nvrtcCompileProgram, "nvrtcCompileProgram");
  BIND(lib, n, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
  BIND(lib, n, nvrtcGetProgramLog, "nvrtcGetProgramLog");
  BIND(lib, n, nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
  BIND(lib, n, nvrtcGetCUBIN, "nvrtcGetCUBIN");
  BIND(lib, n, nvrtcDestroyProgram, "nvrtcDestroyProgram");
  BIND(lib, n, nvrtcGetErrorString, "nvrtcGetErrorString");
  return n;
}

const CublasLt* load_cublaslt() {
  std::string tried;
  void* lib = open_first({"libcublasLt.so.13", "libcublasLt.so", "libcublasLt.so.12"}, tried);
  if (!lib) return nullptr;
  static CublasLt t{};
  try {
    BIND(lib, t, cublasLtCreate, "cublasLtCreate");
    BIND(lib, t, cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate");
    BIND(lib, t, cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy");
    BIND(lib, t, cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute");
    BIND(lib, t, cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate");
    BIND(lib, t, cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy");
    BIND(lib, t, cublasLtMatrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute");
    BIND(lib, t, cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate");
    BIND(lib, t, cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy");
    BIND(lib, t, cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute");
    BIND(lib, t, cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic");
    BIND(lib, t, cublasLtMatmul, "cublasLtMatmul");
  } catch (const Error&) {
    return nullptr;  // an unusable cuBLASLt is treated as absent: our own kernel serves
  }
  return &t;
}

}  // namespace

const Driver& driver() {
  static const Driver d = load_driver();  // a throw leaves it unset; the next call retries
  return d;
}

const Nvrtc& nvrtc() {
  static const Nvrtc n = load_nvrtc();
  return n;
}

const CublasLt* cublaslt() {
  static const CublasLt* t = load_cublaslt();
  return t;
}

std::string error_text(CUresult r) { return describe(driver(), r); }

void check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  throw_error(r == CUDA_ERROR_OUT_OF_MEMORY ? LANES_ERR_OUT_OF_MEMORY : LANES_ERR_DEVICE,
              std::string(what) + ": " + error_text(r));
}

}  // namespace lanes::cuda
