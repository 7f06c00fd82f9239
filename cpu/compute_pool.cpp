#include "compute_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>


namespace lanes::cpu {
namespace {

struct Job {
  const std::function<void(int64_t, int64_t)>* body;
  int64_t n = 0;
  int64_t chunk = 0;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> finished{0};
  std::mutex done_mutex;
  std::condition_variable done_cv;

  // Runs chunks until none are left; returns true if this call finished the job's last one.
  void work() {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      (*body)(begin, end);
      if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
        std::lock_guard lock(done_mutex);
        done_cv.notify_all();
      }
    }
  }
};

class Pool {
 public:
  Pool() {
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 1; i < hw; ++i) threads_.emplace_back([this] { loop(); });
    for (auto& t : threads_) t.detach();  // the pool lives as long as the process
  }

  int size() const { return static_cast<int>(threads_.size()) + 1; }

  void run(const std::shared_ptr<Job>& job) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(job);
    }
    available_.notify_all();
    job->work();
    std::unique_lock lock(job->done_mutex);
    job->done_cv.wait(lock, [&] { return job->finished.load(std::memory_order_acquire) == job->chunks; });
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mutex_);
        available_.wait(lock, [&] { return !jobs_.empty(); });
        job = jobs_.front();
        if (job->next.load(std::memory_order_relaxed) >= job->chunks) {
          jobs_.pop_front();  // exhausted: its owner is only waiting for stragglers
          continue;
        }
      }
      job->work();
    }
  }

  std::mutex mutex_;  // leaf; never held while running a chunk
  std::condition_variable available_;
  std::deque<std::shared_ptr<Job>> jobs_;
  std::vector<std::thread> threads_;
};

Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

int pool_threads() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = int64_t(pool().size()) * 4;
  int64_t chunk = std::max(grain, (n + max_chunks - 1) / max_chunks);
  if (chunk >= n || pool().size() == 1) {
    body(0, n);
    return;
  }
  auto job = std::make_shared<Job>();
  job->body = &body;
  job->n = n;
  job->chunk = chunk;
  job->chunks = (n + chunk - 1) / chunk;
  pool().run(job);
}

}  // namespace lanes::cpu
