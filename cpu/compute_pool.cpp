#include "compute_pool.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "cpu_features.hpp"
#include "../ffi/src/backend.hpp"

namespace lanes::cpu {
namespace {

using Body = ChunkBody;

// Chunks per pool thread at most: enough for dynamic claiming to even out uneven chunks and
// threads busy with other streams' jobs, few enough that claiming stays negligible.
constexpr int64_t kChunksPerThread = 16;
// Callers that can have a job published at once; more concurrent callers run inline.
constexpr int kSlots = 64;
// How long an idle pool thread polls for new work before it sleeps. The ops between two
// kernels that fan out (norms, ropes, a prefill's elementwise ops) often take a few hundred
// microseconds, and a futex wake costs tens of microseconds on a virtual machine; the polling
// yields the core between short bursts, so it costs little when other threads need it.
constexpr auto kIdleSpin = std::chrono::microseconds(300);
// How long a caller polls for the last chunks of its job before it sleeps on them.
constexpr auto kJoinSpin = std::chrono::microseconds(200);

thread_local bool t_inside_chunk = false;

unsigned configured_threads() {
  if (int n = settings().cpu_threads; n > 0) return static_cast<unsigned>(n);
  return std::max(1u, std::thread::hardware_concurrency());
}

struct Job {
  const Body* body = nullptr;
  int64_t n = 0, chunk = 0;
  int32_t chunks = 0;
  std::atomic<int32_t> next{0};
  std::atomic<int32_t> unfinished{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by whoever set `failed`

  bool exhausted() const { return next.load(std::memory_order_relaxed) >= chunks; }

  void run_chunk(int32_t c) {
    int64_t begin = c * chunk, end = std::min(n, begin + chunk);
    bool outer = t_inside_chunk;
    t_inside_chunk = true;
    try {
      (*body)(begin, end);
    } catch (...) {
      if (!failed.exchange(true, std::memory_order_acq_rel)) error = std::current_exception();
    }
    t_inside_chunk = outer;
  }

  // Runs chunks until none are left to claim; returns whether it ran any.
  bool work() {
    bool ran = false;
    for (;;) {
      int32_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return ran;
      run_chunk(c);
      ran = true;
      if (unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) unfinished.notify_one();
    }
  }
};

// One caller's published job. `users` counts pool threads that may be touching the job: the
// caller clears `job` and then waits for `users` to drain before its stack frame (the job) goes.
struct alignas(64) Slot {
  std::atomic<Job*> job{nullptr};
  std::atomic<int32_t> users{0};
};

class Pool {
 public:
  Pool() {
    unsigned threads = configured_threads();
    for (unsigned i = 1; i < threads; ++i) std::thread([this, i] { loop(i); }).detach();  // lives as long as the process
    helpers_ = static_cast<int>(threads) - 1;
  }

  int size() const { return helpers_ + 1; }

  // Runs every chunk of `job`, with whichever pool threads are free.
  void run(Job& job) {
    int s = claim_slot();
    if (s < 0) {  // more concurrent callers than slots: this one runs alone
      job.work();
      return;
    }
    Slot& slot = slots_[s];
    slot.job.store(&job, std::memory_order_seq_cst);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    wake(job.chunks - 1);
    job.work();
    // The last chunks are usually a few microseconds from done, and waking from a futex costs
    // tens of microseconds on a busy virtual machine: poll first.
    spin_until([&] { return job.unfinished.load(std::memory_order_acquire) == 0; }, kJoinSpin);
    for (int32_t left; (left = job.unfinished.load(std::memory_order_acquire)) != 0;) job.unfinished.wait(left, std::memory_order_acquire);
    slot.job.store(nullptr, std::memory_order_seq_cst);
    spin_until([&] { return slot.users.load(std::memory_order_seq_cst) == 0; }, kJoinSpin);
    for (int32_t users; (users = slot.users.load(std::memory_order_seq_cst)) != 0;) slot.users.wait(users, std::memory_order_seq_cst);
    claimed_.fetch_and(~(uint64_t(1) << s), std::memory_order_release);
  }

 private:
  int claim_slot() {
    uint64_t bits = claimed_.load(std::memory_order_relaxed);
    while (~bits != 0) {
      int s = std::countr_one(bits);
      if (claimed_.compare_exchange_weak(bits, bits | (uint64_t(1) << s), std::memory_order_acquire, std::memory_order_relaxed)) return s;
    }
    return -1;
  }

  void wake(int32_t wanted) {
    int32_t sleeping = sleepers_.load(std::memory_order_seq_cst);
    if (wanted <= 0 || sleeping == 0) return;
    if (wanted >= sleeping) {
      epoch_.notify_all();
      return;
    }
    for (int32_t i = 0; i < wanted; ++i) epoch_.notify_one();
  }

  // One pass over the published jobs, starting after the last slot this thread served so that
  // concurrent jobs share the pool threads. Returns whether any chunk ran.
  bool help(int& cursor) {
    uint64_t bits = claimed_.load(std::memory_order_acquire);
    bits = std::rotr(bits, cursor);
    bool ran = false;
    while (bits) {
      int s = (std::countr_zero(bits) + cursor) % kSlots;
      bits &= bits - 1;
      Slot& slot = slots_[s];
      slot.users.fetch_add(1, std::memory_order_seq_cst);
      Job* job = slot.job.load(std::memory_order_seq_cst);
      if (job && !job->exhausted() && job->work()) {
        ran = true;
        cursor = (s + 1) % kSlots;
      }
      if (slot.users.fetch_sub(1, std::memory_order_seq_cst) == 1) slot.users.notify_one();
    }
    return ran;
  }

  void loop(unsigned index) {
    int cursor = static_cast<int>(index % kSlots);
    for (;;) {
      uint32_t seen = epoch_.load(std::memory_order_seq_cst);
      if (help(cursor)) continue;
      if (spin_until([&] { return epoch_.load(std::memory_order_relaxed) != seen; }, kIdleSpin)) continue;
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (epoch_.load(std::memory_order_seq_cst) == seen) epoch_.wait(seen, std::memory_order_seq_cst);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  Slot slots_[kSlots];
  std::atomic<uint64_t> claimed_{0};  // bit s: slot s belongs to a caller
  std::atomic<uint32_t> epoch_{0};    // bumped by every publish; idle threads sleep on it
  std::atomic<int32_t> sleepers_{0};
  int helpers_ = 0;
};

static_assert(kSlots == 64, "claimed_ is one 64-bit mask");

Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int pool_threads() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, ChunkBody body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = int64_t(pool().size()) * kChunksPerThread;
  const int64_t chunk = std::max(grain, (n + max_chunks - 1) / max_chunks);
  const int32_t chunks = static_cast<int32_t>((n + chunk - 1) / chunk);
  if (chunks == 1 || pool().size() == 1 || t_inside_chunk) {
    // The same chunks in order on this thread, with nothing to publish or wake: most kernels
    // of a small model's step take this path, hundreds of times per step.
    struct InsideChunk {
      bool outer = t_inside_chunk;
      InsideChunk() { t_inside_chunk = true; }
      ~InsideChunk() { t_inside_chunk = outer; }
    } inside;
    for (int64_t begin = 0; begin < n; begin += chunk) body(begin, std::min(n, begin + chunk));
    return;
  }
  Job job;
  job.body = &body;
  job.n = n;
  job.chunk = chunk;
  job.chunks = chunks;
  job.unfinished.store(job.chunks, std::memory_order_relaxed);
  pool().run(job);
  if (job.failed.load(std::memory_order_acquire)) std::rethrow_exception(job.error);
}

}  // namespace lanes::cpu
