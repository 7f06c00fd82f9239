// A process-wide pool of compute threads shared by every stream's executor. Work is split into
// fixed chunks that never depend on which thread runs them, so results are bitwise identical
// under any concurrency.
#pragma once
#include <cstdint>
#include <functional>

namespace lanes::cpu {

// Runs body(begin, end) over [0, n) in chunks of at least `grain`; the caller takes part.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

int pool_threads();

}  // namespace lanes::cpu
