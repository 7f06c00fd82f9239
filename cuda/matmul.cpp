// Matmul through cuBLASLt. lanes arrays are row-major; cuBLASLt is column-major, so
// Y = A·B is computed as Yᵀ = Bᵀ·Aᵀ: a row-major matrix with row stride ld is the same
// memory as a column-major one with leading dimension ld, transposed. Transposed views
// (unit row stride) become op T with no copy. A plan (and so its algorithm) is fixed per
// shape for the life of the process, so results are deterministic run to run.
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <tuple>

#include "../ffi/src/status.hpp"
#include "device.hpp"

namespace lanes::cuda {
namespace {

constexpr int CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14;
constexpr int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int DESC_TRANSA = 3, DESC_TRANSB = 4;
constexpr int LAYOUT_BATCH_COUNT = 5, LAYOUT_STRIDED_BATCH_OFFSET = 6;
constexpr int PREF_MAX_WORKSPACE_BYTES = 1;
constexpr int PREF_MIN_ALIGNMENT_A = 5, PREF_MIN_ALIGNMENT_B = 6, PREF_MIN_ALIGNMENT_C = 7, PREF_MIN_ALIGNMENT_D = 8;
constexpr uint64_t kMaxWorkspace = uint64_t(32) << 20;

// One operand as cuBLASLt sees it: column-major rows x cols with leading dimension ld.
struct Operand {
  int op = CUBLAS_OP_N;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
};

// The column-major view of a row-major R x C matrix with element strides (row, col), as the
// C x R transposed operand cuBLASLt multiplies. False when neither stride is unit.
bool column_major_view(int64_t R, int64_t C, int64_t row, int64_t col, Operand& out) {
  if ((col == 1 || C == 1) && (row >= C || R == 1)) {  // rows contiguous: op N on C x R, ld = row
    out = {CUBLAS_OP_N, uint64_t(C), uint64_t(R), R == 1 ? std::max<int64_t>(C, 1) : row};
    return true;
  }
  if ((row == 1 || R == 1) && (col >= R || C == 1)) {  // columns contiguous: op T of R x C, ld = col
    out = {CUBLAS_OP_T, uint64_t(R), uint64_t(C), C == 1 ? std::max<int64_t>(R, 1) : col};
    return true;
  }
  return false;
}

uint32_t alignment_of(CUdeviceptr p) {
  uint32_t a = 256;
  while (a > 1 && p % a) a /= 2;
  return a;
}

int data_type(DType d) { return d == DType::Float16 ? CUDA_R_16F : d == DType::BFloat16 ? CUDA_R_16BF : CUDA_R_32F; }

void lt_check(int status, const char* what) {
  if (status != 0) throw_error(LANES_ERR_DEVICE, std::string("cuBLASLt ") + what + " failed with status " + std::to_string(status));
}

// Everything cuBLASLt needs for one problem shape, built once: descriptors, the algorithm
// the heuristic chose and its workspace size. Plans are kept for the life of the process
// (up to kMaxPlans shapes), so a repeated matmul costs one lookup and one launch.
struct Plan {
  const CublasLt* lt = nullptr;
  bool usable = false;  // false: cuBLASLt declined; lanes' kernel serves this shape
  void* desc = nullptr;
  void* layouts[3] = {nullptr, nullptr, nullptr};
  CublasLtHeuristic heuristic{};
  ~Plan() {
    for (void* l : layouts)
      if (l) lt->cublasLtMatrixLayoutDestroy(l);
    if (desc) lt->cublasLtMatmulDescDestroy(desc);
  }
};

struct Preference {
  const CublasLt& lt;
  void* pref = nullptr;
  ~Preference() {
    if (pref) lt.cublasLtMatmulPreferenceDestroy(pref);
  }
};

using PlanKey = std::tuple<int, int, int, int, uint64_t, uint64_t, uint64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           uint32_t, uint32_t, uint32_t>;
constexpr size_t kMaxPlans = 4096;
std::shared_mutex g_plans_mutex;  // leaf
std::map<PlanKey, std::shared_ptr<Plan>> g_plans;

}  // namespace

bool matmul_cublaslt(const MatmulOperands& m, LaunchContext& ctx) {
  const CublasLt* lt = cublaslt();
  if (!lt || !ctx.device.cublaslt_handle) return false;
  // cuBLASLt's "A" is our B (as N x K), its "B" is our A (as K x M); D is Yᵀ, N x M, ld N.
  Operand ob, oa;
  if (!column_major_view(m.K, m.N, m.b_row, m.b_col, ob) || !column_major_view(m.M, m.K, m.a_row, m.a_col, oa)) return false;
  int type = data_type(m.dtype);
  int compute = m.dtype == DType::Float32 && ctx.device.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  int32_t batches = static_cast<int32_t>(m.batches);
  if (m.batches > INT32_MAX) return false;
  int64_t y_batch = m.M * m.N;

  uint32_t align_a = alignment_of(m.b), align_b = alignment_of(m.a), align_d = alignment_of(m.y);
  PlanKey key{ctx.device.index, type, compute, ob.op * 2 + oa.op, uint64_t(m.M), uint64_t(m.N), uint64_t(m.K), ob.ld, oa.ld,
              m.b_batch, m.a_batch, m.batches, align_a, align_b, align_d};
  // A per-thread copy of the plans this thread used: the common lookup takes no lock.
  thread_local std::map<PlanKey, std::shared_ptr<Plan>> t_plans;
  std::shared_ptr<Plan> plan;
  if (auto it = t_plans.find(key); it != t_plans.end()) plan = it->second;
  if (!plan) {
    std::shared_lock lock(g_plans_mutex);
    if (auto it = g_plans.find(key); it != g_plans.end()) plan = it->second;
  }
  if (!plan) {
    plan = std::make_shared<Plan>();
    plan->lt = lt;
    lt_check(lt->cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F), "descriptor");
    lt_check(lt->cublasLtMatmulDescSetAttribute(plan->desc, DESC_TRANSA, &ob.op, sizeof ob.op), "transa");
    lt_check(lt->cublasLtMatmulDescSetAttribute(plan->desc, DESC_TRANSB, &oa.op, sizeof oa.op), "transb");
    const Operand* ops[2] = {&ob, &oa};
    int64_t batch_strides[3] = {m.b_batch, m.a_batch, y_batch};
    for (int i = 0; i < 3; ++i) {
      uint64_t rows = i < 2 ? ops[i]->rows : uint64_t(m.N), cols = i < 2 ? ops[i]->cols : uint64_t(m.M);
      int64_t ld = i < 2 ? ops[i]->ld : std::max<int64_t>(m.N, 1);
      lt_check(lt->cublasLtMatrixLayoutCreate(&plan->layouts[i], type, rows, cols, ld), "layout");
      if (batches > 1) {
        lt_check(lt->cublasLtMatrixLayoutSetAttribute(plan->layouts[i], LAYOUT_BATCH_COUNT, &batches, sizeof batches), "batch count");
        lt_check(lt->cublasLtMatrixLayoutSetAttribute(plan->layouts[i], LAYOUT_STRIDED_BATCH_OFFSET, &batch_strides[i],
                                                      sizeof(int64_t)),
                 "batch stride");
      }
    }
    Preference p{*lt};
    lt_check(lt->cublasLtMatmulPreferenceCreate(&p.pref), "preference");
    uint64_t max_ws = kMaxWorkspace;
    lt->cublasLtMatmulPreferenceSetAttribute(p.pref, PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws);
    lt->cublasLtMatmulPreferenceSetAttribute(p.pref, PREF_MIN_ALIGNMENT_A, &align_a, sizeof align_a);
    lt->cublasLtMatmulPreferenceSetAttribute(p.pref, PREF_MIN_ALIGNMENT_B, &align_b, sizeof align_b);
    lt->cublasLtMatmulPreferenceSetAttribute(p.pref, PREF_MIN_ALIGNMENT_C, &align_d, sizeof align_d);
    lt->cublasLtMatmulPreferenceSetAttribute(p.pref, PREF_MIN_ALIGNMENT_D, &align_d, sizeof align_d);
    int returned = 0;
    CublasLtHeuristic candidates[8]{};
    int status = lt->cublasLtMatmulAlgoGetHeuristic(ctx.device.cublaslt_handle, plan->desc, plan->layouts[0], plan->layouts[1],
                                                    plan->layouts[2], plan->layouts[2], p.pref, 8, candidates, &returned);
    const int pick = std::max(0, ctx.device.algo_index);
    if (status == 0 && returned > 0) plan->heuristic = candidates[std::min(pick, returned - 1)];
    plan->usable = status == 0 && returned > 0 && plan->heuristic.state == 0;
    std::unique_lock lock(g_plans_mutex);
    if (g_plans.size() < kMaxPlans) plan = g_plans.emplace(key, plan).first->second;
  }
  if (t_plans.size() < kMaxPlans) t_plans.emplace(key, plan);
  if (!plan->usable) return false;
  CUdeviceptr workspace = plan->heuristic.workspace_size ? ctx.temp(plan->heuristic.workspace_size) : 0;
  void* handle = ctx.device.cublaslt_handle;
  StreamOp op;
  op.call = [lt, handle, plan, m, workspace](CUstream stream) -> std::optional<std::string> {
    const CublasLtHeuristic& h = plan->heuristic;
    float alpha = 1.0f, beta = 0.0f;
    int status = lt->cublasLtMatmul(handle, plan->desc, &alpha, reinterpret_cast<const void*>(m.b), plan->layouts[0],
                                    reinterpret_cast<const void*>(m.a), plan->layouts[1], &beta,
                                    reinterpret_cast<const void*>(m.y), plan->layouts[2], reinterpret_cast<void*>(m.y),
                                    plan->layouts[2], &h.algo, reinterpret_cast<void*>(workspace), h.workspace_size, stream);
    if (status == 0) return std::nullopt;
    return "cuBLASLt matmul failed with status " + std::to_string(status);
  };
  ctx.out.ops.push_back(std::move(op));
  return true;
}

}  // namespace lanes::cuda
