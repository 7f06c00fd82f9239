// Matmul with weights kept in ggml's quantized block formats (GGUF's Q4_0, Q4_1, Q8_0).
//
// Numerics follow ggml's CPU backend: each activation row is quantized once to 8-bit blocks of
// 32 (scale d = max|x| / 127 kept at float16 precision, q = round-to-nearest-even(x * 127 /
// max|x|), and for Q4_1 the block sum s = d * Σq, also at float16 precision), then every block
// contributes an exact integer dot product times the two scales (+ the weight min times s for
// Q4_1). Where a float16 scale would be subnormal or overflow the float32 value is kept, so
// tiny or huge activations stay accurate (ggml would flush or overflow them). A block holding
// a NaN or infinity makes that row's outputs NaN.
//
// Every kernel path (scalar, AVX2, AVX-512 VNNI) performs the same float operations in the
// same order for each output element, so results are bitwise identical across paths, thread
// counts, tilings and concurrent calls.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lanes::cpu {

enum class BlockType : int { Q4_0 = 0, Q4_1 = 1, Q8_0 = 2 };

// Bytes of one block of 32 weights: 18, 20, 34.
size_t block_bytes(BlockType t);

// y[i * n + j] = sum over kk of x[i * x_row_stride + kk] * W[j][kk]   for i < m, j < n.
// W: n rows of k weights (k % 32 == 0); row j starts at w + j * (k / 32) * block_bytes(type).
// The caller checks shapes. Thread-safe: concurrent calls share only the compute pool.
void quantized_matmul(BlockType type, const float* x, int64_t m, int64_t k, int64_t x_row_stride,
                      const void* w, int64_t n, float* y);

// count weights (count % 32 == 0) from consecutive blocks into floats. Thread-safe.
void dequantize(BlockType type, const void* blocks, int64_t count, float* out);

// Which kernel path quantized_matmul runs. Auto picks the best one this CPU supports; the
// environment variable LANES_CPU_SIMD=scalar|avx2|avx512 overrides Auto at first use.
enum class QuantKernel : int { Auto = 0, Scalar = 1, Avx2 = 2, Avx512Vnni = 3 };

// Test and benchmark hooks, process-wide: later calls run `kernel` (false, and no change, when
// this CPU lacks it), and run on the calling thread alone when `serial` is set. Not meant to be
// changed while other threads call quantized_matmul.
bool force_quant_kernel(QuantKernel kernel);
void force_quant_serial(bool serial);
// The path quantized_matmul runs now (never Auto).
QuantKernel active_quant_kernel();

}  // namespace lanes::cpu
