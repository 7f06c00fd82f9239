#include "modules.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "../ffi/src/status.hpp"
#include "kernels_source.hpp"

namespace lanes::cuda {
namespace {

constexpr const char* kFamilies[] = {"ELEMENTWISE", "REDUCE", "ROWS", "FUSED", "QUANT"};

// Which compile unit holds a kernel: by the prefix of its name.
std::string family_of(const std::string& name) {
  for (const char* p : {"reduce_"})
    if (name.rfind(p, 0) == 0) return "REDUCE";
  for (const char* p : {"softmax_", "norm_"})
    if (name.rfind(p, 0) == 0) return "ROWS";
  for (const char* p : {"attention_", "rope_", "matmul_"})
    if (name.rfind(p, 0) == 0) return "FUSED";
  for (const char* p : {"quantized_", "dequantize_", "take_dequantize_"})
    if (name.rfind(p, 0) == 0) return "QUANT";
  return "ELEMENTWISE";
}

uint64_t fnv1a(const std::string& text, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<char> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// Best effort: a cache that cannot be written only costs a recompile next time.
void write_file_atomically(const std::filesystem::path& p, const std::vector<char>& bytes) {
  std::error_code ec;
  std::filesystem::create_directories(p.parent_path(), ec);
  std::filesystem::path tmp = p;
  tmp += ".tmp" + std::to_string(std::rand());
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) return;
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return;
  }
  std::filesystem::rename(tmp, p, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

std::vector<char> compile(const std::string& family, const std::vector<std::string>& options) {
  const Nvrtc& n = nvrtc();
  void* prog = nullptr;
  if (int r = n.nvrtcCreateProgram(&prog, kernel_source().c_str(), ("lanes_" + family + ".cu").c_str(), 0, nullptr, nullptr))
    throw_error(LANES_ERR_DEVICE, std::string("NVRTC: ") + n.nvrtcGetErrorString(r));
  std::vector<const char*> opts;
  for (const std::string& o : options) opts.push_back(o.c_str());
  int rc = n.nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  std::vector<char> cubin;
  std::string log;
  if (rc == 0) {
    size_t size = 0;
    n.nvrtcGetCUBINSize(prog, &size);
    cubin.resize(size);
    if (size) n.nvrtcGetCUBIN(prog, cubin.data());
  } else {
    size_t size = 0;
    n.nvrtcGetProgramLogSize(prog, &size);
    log.resize(size);
    if (size) n.nvrtcGetProgramLog(prog, log.data());
  }
  n.nvrtcDestroyProgram(&prog);
  if (rc != 0) throw_error(LANES_ERR_DEVICE, "NVRTC could not compile the " + family + " kernels: " + log.substr(0, 2000));
  if (cubin.empty()) throw_error(LANES_ERR_DEVICE, "NVRTC produced no cubin for the " + family + " kernels");
  return cubin;
}

}  // namespace

CUmodule Modules::load_family(const std::string& family) {
  int major = 0, minor = 0;
  nvrtc().nvrtcVersion(&major, &minor);
  std::string arch = "-arch=sm_" + std::to_string(cc_major_) + std::to_string(cc_minor_);
  std::vector<std::string> options = {arch, "-std=c++17", "-DLANES_FAMILY_" + family};
  std::ostringstream key;
  key << kernel_source().c_str() << '\n' << major << '.' << minor;
  for (const std::string& o : options) key << ' ' << o;
  char name[64];
  std::snprintf(name, sizeof name, "%016llx.cubin", static_cast<unsigned long long>(fnv1a(key.str())));
  std::filesystem::path dir = cache_dir_.empty() ? std::filesystem::path() : std::filesystem::path(cache_dir_) / "cuda";
  std::vector<char> cubin = dir.empty() ? std::vector<char>{} : read_file(dir / name);
  CUmodule module = nullptr;
  if (!cubin.empty() && driver().cuModuleLoadData(&module, cubin.data()) == CUDA_SUCCESS) return module;
  cubin = compile(family, options);  // missing or unloadable (e.g. a truncated file): rebuild
  check(driver().cuModuleLoadData(&module, cubin.data()), "loading the compiled kernels");
  if (!dir.empty()) write_file_atomically(dir / name, cubin);
  return module;
}

Modules::Modules(int cc_major, int cc_minor, std::string cache_dir)
    : cc_major_(cc_major), cc_minor_(cc_minor), cache_dir_(std::move(cache_dir)) {
  for (const char* f : kFamilies) families_[f];
}

CUmodule Modules::module_of(const std::string& family) {
  Family& f = families_.at(family);
  std::lock_guard lock(f.mutex);
  if (!f.module) f.module = load_family(family);
  return f.module;
}

void Modules::prefetch(void (*make_current)(const void*), const void* arg) {
  for (const char* family : kFamilies) {
    std::thread([this, family, make_current, arg] {
      try {
        make_current(arg);
        module_of(family);
      } catch (...) {
        // The first real use reports the error.
      }
    }).detach();
  }
}

CUfunction Modules::function(const std::string& name) {
  {
    std::lock_guard lock(functions_mutex_);
    if (auto it = functions_.find(name); it != functions_.end()) return it->second;
  }
  CUmodule module = module_of(family_of(name));
  CUfunction fn = nullptr;
  check(driver().cuModuleGetFunction(&fn, module, name.c_str()), ("kernel " + name).c_str());
  std::lock_guard lock(functions_mutex_);
  functions_.emplace(name, fn);
  return fn;
}

}  // namespace lanes::cuda
