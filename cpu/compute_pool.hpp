// A process-wide pool of compute threads shared by every stream's executor. Work is split into
// fixed chunks that depend only on (n, grain, pool size), never on which thread runs a chunk, so
// results are bitwise identical under any concurrency.
//
// Each caller publishes its job in a slot of its own (no shared queue); idle pool threads take
// chunks from any published job and sleep on a futex-backed counter when there are none, after
// a spin of a few microseconds. A job with a single chunk never leaves the caller.
#pragma once
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace lanes::cpu {

// A borrowed reference to a callable body(begin, end), called through its const operator() (pool
// threads call it at once). parallel_for returns only after every chunk has run, so the body
// never outlives the caller's lambda; a std::function may copy a lambda that captures several
// references to the heap on every call.
class ChunkBody {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, ChunkBody>>>
  ChunkBody(F&& f) : callable_(static_cast<const void*>(std::addressof(f))), call_(&call<std::remove_reference_t<F>>) {}  // NOLINT: implicit by design

  void operator()(int64_t begin, int64_t end) const { call_(callable_, begin, end); }

 private:
  template <class F>
  static void call(const void* f, int64_t begin, int64_t end) {
    (*static_cast<const F*>(f))(begin, end);
  }

  const void* callable_;
  void (*call_)(const void*, int64_t, int64_t);
};

// Runs body(begin, end) over [0, n) in chunks of at least `grain` items; the caller takes part.
// `grain` is the smallest share worth waking a thread for (a few microseconds of work): a job
// of one grain or less runs inline. Thread-safe; a body may call parallel_for again (the inner
// call runs its chunks on the calling thread). A job run inline stops at the first exception a
// chunk throws; one shared with the pool rethrows it on the caller once every chunk finished.
void parallel_for(int64_t n, int64_t grain, ChunkBody body);

// Threads that run chunks, the caller included: LANES_CPU_THREADS (1 to 1024, read once when the
// pool starts) or one per hardware thread. 1 runs every job on its caller.
int pool_threads();

}  // namespace lanes::cpu
