// Speed of the quantized matvec (m = 1) for SmolLM2-135M's shapes, on 1 thread and on the
// compute pool, in ns per call and GB/s of weight bytes. Build and run from the repo root:
//
//   g++ -std=c++20 -O2 -I. -Iffi/src -Iffi/include ffi/test/quant_bench.cpp cpu/quant.cpp \
//       cpu/compute_pool.cpp cpu/cpu_features.cpp ffi/src/config.cpp \
//       -pthread -o /tmp/quant_bench && /tmp/quant_bench
//
// "hot" calls one matrix over and over (it stays in L2/L3 where it fits); "cold" cycles through
// enough copies (>= 192 MiB) that every call reads its weights from DRAM, as a decode step of a
// model larger than L3 does. A plain read of the same bytes (sum of 64-bit words, AVX2) is
// the memory-bandwidth ceiling beside them. Each figure is the best of 100 rounds.
// `quant_bench model` instead times all matvecs of a SmolLM2-135M decode step, 1 and 2 threads.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include <immintrin.h>

#include "cpu/compute_pool.hpp"
#include "../../cpu/quant.hpp"

using lanes::cpu::BlockType;
using lanes::cpu::QuantKernel;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// CPU time of the whole process (all threads): on a shared machine, the time this work ran
// rather than waited for a core.
double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Best of 100 rounds (each >= 3 ms) of seconds per call of fn(i), i = 0, 1, 2, ...: short
// rounds, so some fall between the other work on this shared machine.
double time_per_call(const std::function<void(int64_t)>& fn) {
  double best = 1e30;
  int64_t i = 0;
  for (int round = 0; round < 100; ++round) {
    int64_t calls = 0;
    double t0 = now_s(), t = t0;
    while (t - t0 < 0.003) {
      fn(i++);
      calls += 1;
      t = now_s();
    }
    best = std::min(best, (t - t0) / double(calls));
  }
  return best;
}

__attribute__((target("avx2"))) uint64_t read_bytes(const uint8_t* p, size_t bytes) {
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= bytes; i += 64) {
    s0 = _mm256_add_epi64(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    s1 = _mm256_add_epi64(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(s0, s1));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

volatile uint64_t g_sink;

// Random blocks with sane float16 scales (bits 0x2000..0x2fff: about 0.008 .. 0.1).
std::vector<uint8_t> random_matrix(BlockType t, int64_t k, int64_t n, std::mt19937_64& rng) {
  size_t bb = lanes::cpu::block_bytes(t);
  std::vector<uint8_t> w(size_t(n * k / 32) * bb);
  for (size_t i = 0; i < w.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(&w[i], &r, std::min<size_t>(8, w.size() - i));
  }
  for (size_t b = 0; b < w.size(); b += bb) {
    w[b + 1] = uint8_t(0x20 | (w[b + 1] & 0x0f));
    if (t == BlockType::Q4_1) w[b + 3] = uint8_t(0x20 | (w[b + 3] & 0x0f));
  }
  return w;
}


struct Shape {
  const char* what;
  BlockType type;
  int64_t k, n;
};

void bench(const Shape& s, QuantKernel kernel) {
  size_t bytes = size_t(s.n * s.k / 32) * lanes::cpu::block_bytes(s.type);
  size_t copies = std::max<size_t>(2, (size_t(192) << 20) / bytes + 1);
  std::mt19937_64 rng(1);
  std::vector<uint8_t> w = random_matrix(s.type, s.k, s.n * int64_t(copies), rng);
  std::vector<float> x(size_t(s.k)), y(size_t(s.n));
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  lanes::cpu::force_quant_kernel(kernel);
  const char* kname = kernel == QuantKernel::Avx512Vnni ? "avx512" : kernel == QuantKernel::Avx2 ? "avx2" : "scalar";
  for (bool serial : {true, false}) {
    lanes::cpu::force_quant_serial(serial);
    int threads = serial ? 1 : lanes::cpu::pool_threads();
    double hot = time_per_call([&](int64_t) {
      lanes::cpu::quantized_matmul(s.type, x.data(), 1, s.k, s.k, w.data(), s.n, y.data());
    });
    double cold = time_per_call([&](int64_t i) {
      lanes::cpu::quantized_matmul(s.type, x.data(), 1, s.k, s.k, w.data() + bytes * size_t(i % int64_t(copies)), s.n, y.data());
    });
    double stream = time_per_call([&](int64_t i) {
      const uint8_t* p = w.data() + bytes * size_t(i % int64_t(copies));
      if (serial) {
        g_sink = read_bytes(p, bytes);
      } else {
        int64_t chunks = 64;
        size_t part = (bytes / size_t(chunks) + 63) / 64 * 64;
        lanes::cpu::parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
          for (int64_t c = c0; c < c1; ++c) {
            size_t begin = std::min(bytes, size_t(c) * part), end = std::min(bytes, begin + part);
            g_sink = read_bytes(p + begin, end - begin);
          }
        });
      }
    });
    std::printf("%-22s %-4s k=%-5lld n=%-6lld %-6s %d thr | hot %9.0f ns %6.1f GB/s | cold %9.0f ns %6.1f GB/s | plain read %6.1f GB/s\n",
                s.what, s.type == BlockType::Q4_1 ? "q4_1" : s.type == BlockType::Q4_0 ? "q4_0" : "q8_0", (long long)s.k,
                (long long)s.n, kname, threads, hot * 1e9, double(bytes) / hot / 1e9, cold * 1e9, double(bytes) / cold / 1e9,
                double(bytes) / stream / 1e9);
  }
  lanes::cpu::force_quant_serial(false);
}

// Every matvec of one SmolLM2-135M decode step (30 blocks of q, k, v, o, gate, up, down in
// Q4_1, and the tied Q8_0 head), each matrix its own 96 MB of weights as in the model, so they
// come from DRAM as in a real decode. Prints the best and median ms per step.
void bench_model_step() {
  std::mt19937_64 rng(3);
  struct Mat {
    BlockType type;
    int64_t k, n;
    std::vector<uint8_t> w;
  };
  std::vector<Mat> mats;
  const int64_t shapes[7][2] = {{576, 576}, {576, 192}, {576, 192}, {576, 576}, {576, 1536}, {576, 1536}, {1536, 576}};
  for (int layer = 0; layer < 30; ++layer)
    for (auto& s : shapes) mats.push_back({BlockType::Q4_1, s[0], s[1], random_matrix(BlockType::Q4_1, s[0], s[1], rng)});
  mats.push_back({BlockType::Q8_0, 576, 49152, random_matrix(BlockType::Q8_0, 576, 49152, rng)});
  size_t bytes = 0;
  for (auto& m : mats) bytes += m.w.size();
  std::vector<float> x(1536), y(49152);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  lanes::cpu::force_quant_kernel(QuantKernel::Auto);
  for (bool serial : {true, false}) {
    lanes::cpu::force_quant_serial(serial);
    std::vector<double> times, cpu_times;
    for (int step = 0; step < 60; ++step) {
      double t0 = now_s(), c0 = cpu_s();
      for (auto& m : mats) lanes::cpu::quantized_matmul(m.type, x.data(), 1, m.k, m.k, m.w.data(), m.n, y.data());
      times.push_back(now_s() - t0);
      cpu_times.push_back(cpu_s() - c0);
    }
    std::sort(times.begin(), times.end());
    std::sort(cpu_times.begin(), cpu_times.end());
    std::printf("model step (SmolLM2-135M matvecs, %.1f MB of weights) %d thr: wall best %.2f ms (%.1f GB/s, %.0f steps/s), "
                "median %.2f ms; CPU time best %.2f ms, median %.2f ms\n",
                double(bytes) / 1e6, serial ? 1 : lanes::cpu::pool_threads(), times[0] * 1e3, double(bytes) / times[0] / 1e9,
                1.0 / times[0], times[times.size() / 2] * 1e3, cpu_times[0] * 1e3, cpu_times[cpu_times.size() / 2] * 1e3);
  }
  lanes::cpu::force_quant_serial(false);
}

}  // namespace

int main(int argc, char** argv) {
  // Arguments: "all" adds the AVX2 path; a number picks one shape; "model" times whole decode
  // steps' matvecs instead.
  bool all_kernels = false;
  int only = -1;
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "model") == 0) {
      bench_model_step();
      return 0;
    }
    if (std::strcmp(argv[a], "all") == 0) all_kernels = true;
    else only = std::atoi(argv[a]);
  }
  const Shape shapes[] = {
      {"attn q/o", BlockType::Q4_1, 576, 576},    {"ffn gate/up", BlockType::Q4_1, 576, 1536},
      {"ffn down", BlockType::Q4_1, 1536, 576},   {"tied head", BlockType::Q8_0, 576, 49152},
      {"ffn gate/up", BlockType::Q4_0, 576, 1536}, {"ffn gate/up", BlockType::Q8_0, 576, 1536},
  };
  std::vector<QuantKernel> kernels = {QuantKernel::Avx512Vnni};
  if (all_kernels) kernels = {QuantKernel::Avx512Vnni, QuantKernel::Avx2};
  for (QuantKernel kernel : kernels) {
    if (!lanes::cpu::force_quant_kernel(kernel)) continue;
    for (int i = 0; i < int(sizeof shapes / sizeof shapes[0]); ++i)
      if (only < 0 || only == i) bench(shapes[i], kernel);
  }
  return 0;
}
