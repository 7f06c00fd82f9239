// Native tests of the core through the C ABI: handles, shared nodes computed once, random
// cross-stream graphs from many threads compared bitwise with a serial run, stream lifetime
// races, tiny epoch budgets, and the lock-order checker. Built with the core compiled in; run
// under ThreadSanitizer by `zig build test -Dsanitize=thread`.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../../cpu/compute_pool.hpp"
#include "../../cpu/sgemm.hpp"
#include "lanes.h"
#include "buffer.hpp"
#include "gpu/device_completions.hpp"
#include "gpu/kernel_layout.hpp"
#include "runtime.hpp"
#include "sampling.hpp"
#include "stream.hpp"
#include "pointer_set.hpp"
#include "small_vector.hpp"

extern char** environ;

namespace {

int g_passed = 0, g_failed = 0;
thread_local std::string t_failure;

#define EXPECT(cond)                                                                      \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      if (t_failure.empty())                                                              \
        t_failure = std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " #cond +   \
                    " (last error: " + lanes_last_error() + ")";                          \
    }                                                                                     \
  } while (0)

#define OK(call) EXPECT((call) == LANES_OK)

// `lanes-native-test TEXT` runs only the tests whose name contains TEXT.
const char* g_only = nullptr;

void run(const char* name, const std::function<void()>& test) {
  if (g_only && !std::strstr(name, g_only)) return;
  t_failure.clear();
  test();
  if (t_failure.empty()) {
    ++g_passed;
    std::printf("ok   %s\n", name);
  } else {
    ++g_failed;
    std::printf("FAIL %s: %s\n", name, t_failure.c_str());
  }
  std::fflush(stdout);
}

uint64_t stat(int which) {
  uint64_t v[LANES_STAT_COUNT] = {};
  lanes_stats_read(v, LANES_STAT_COUNT);
  return v[which];
}

uint64_t from_floats(const std::vector<float>& data, std::vector<int64_t> shape) {
  uint64_t h = 0;
  if (lanes_array_from_data(data.data(), data.size() * 4, LANES_FLOAT32, shape.data(), (int32_t)shape.size(), &h))
    t_failure = std::string("from_data: ") + lanes_last_error();
  return h;
}

std::vector<float> read(uint64_t h, size_t n) {
  std::vector<float> out(n);
  if (lanes_array_read(h, out.data(), n * 4)) t_failure = std::string("read: ") + lanes_last_error();
  return out;
}

// ---- handles -----------------------------------------------------------------------------------

void test_handles() {
  uint64_t a = from_floats({1, 2, 3}, {3});
  uint64_t s = 0;
  OK(lanes_stream_new(&s));
  float out[3];
  EXPECT(lanes_array_read(s, out, sizeof out) == LANES_ERR_INVALID_HANDLE);  // stream used as array
  EXPECT(lanes_array_read(0x123456789ull, out, sizeof out) == LANES_ERR_INVALID_HANDLE);
  OK(lanes_array_release(a));
  EXPECT(lanes_array_release(a) == LANES_ERR_INVALID_HANDLE);  // double release
  EXPECT(lanes_array_read(a, out, sizeof out) == LANES_ERR_INVALID_HANDLE);
  EXPECT(std::strstr(lanes_last_error(), "invalid array handle") != nullptr);
  uint64_t b = from_floats({1, 2, 3}, {3});
  EXPECT(b != a);  // the slot is reused under a new generation
  EXPECT(lanes_array_read(a, out, sizeof out) == LANES_ERR_INVALID_HANDLE);
  OK(lanes_stream_release(s));
  uint64_t c = 0;
  EXPECT(lanes_array_unary(LANES_OP_EXP, b, s, &c) == LANES_ERR_INVALID_HANDLE);  // stale stream
  EXPECT(lanes_array_read(b, out, 8) == LANES_ERR_INVALID_ARGUMENT);              // wrong size
  OK(lanes_array_release(b));
}

// ---- exactly-once ------------------------------------------------------------------------------

void test_shared_node_computed_once() {
  for (int round = 0; round < 20; ++round) {
    uint64_t s = 0, x = 0, m = 0, y = 0;
    OK(lanes_stream_new(&s));
    int64_t shape[2] = {64, 64};
    OK(lanes_array_random(LANES_RANDOM_NORMAL, 7, 0, 1, shape, 2, s, &x));
    OK(lanes_array_matmul(x, x, s, &m));
    OK(lanes_array_softmax(m, -1, s, &y));
    OK(lanes_eval(&x, 1));
    uint64_t before = stat(LANES_STAT_KERNELS_EXECUTED);
    std::atomic<int> go{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t)
      threads.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        OK(lanes_eval(&y, 1));
      });
    go.store(1);
    for (auto& t : threads) t.join();
    EXPECT(stat(LANES_STAT_KERNELS_EXECUTED) - before == 2);  // matmul + softmax, once
    lanes_array_release(x);
    lanes_array_release(m);
    lanes_array_release(y);
    lanes_stream_release(s);
  }
}

// ---- random cross-stream graphs ----------------------------------------------------------------

constexpr int64_t kN = 24;

struct GraphSpec {
  uint32_t seed;
};

// Builds one bounded-valued random graph over `shared` inputs; every op on a stream picked by
// `pick_stream`. Returns the output handle and the intermediate handles to release.
uint64_t build_graph(const GraphSpec& spec, const std::vector<uint64_t>& shared, const std::function<uint64_t()>& pick_stream,
                     std::vector<uint64_t>& owned) {
  std::mt19937 rng(spec.seed);
  std::vector<uint64_t> pool(shared);
  auto any = [&] { return pool[rng() % pool.size()]; };
  auto keep = [&](uint64_t h) {  // an intermediate: released later, not an operand
    owned.push_back(h);
    return h;
  };
  auto scalar = [&](float v) {
    uint64_t h = 0;
    lanes_array_from_data(&v, 4, LANES_FLOAT32, nullptr, 0, &h);
    owned.push_back(h);
    return h;
  };
  uint64_t last = any();
  int steps = 4 + static_cast<int>(rng() % 8);
  for (int i = 0; i < steps; ++i) {
    uint64_t s = pick_stream(), a = any(), b = any(), t = 0, u = 0;
    switch (rng() % 8) {
      case 0:
        lanes_array_binary(LANES_OP_ADD, a, b, s, &t);
        lanes_array_binary(LANES_OP_MULTIPLY, keep(t), scalar(0.5f), pick_stream(), &u);
        break;
      case 1:
        lanes_array_binary(LANES_OP_MAXIMUM, a, b, s, &u);
        break;
      case 2:
        lanes_array_matmul(a, b, s, &t);
        lanes_array_binary(LANES_OP_MULTIPLY, keep(t), scalar(1.0f / kN), pick_stream(), &u);
        break;
      case 3:
        lanes_array_softmax(a, static_cast<int32_t>(rng() % 2), s, &u);
        break;
      case 4:
        lanes_array_unary(LANES_OP_EXP, a, s, &t);
        lanes_array_binary(LANES_OP_MULTIPLY, keep(t), scalar(0.36787944f), pick_stream(), &u);
        break;
      case 5: {
        int32_t axis = static_cast<int32_t>(rng() % 2);
        lanes_array_reduce(LANES_REDUCE_MEAN, a, &axis, 1, 1, s, &t);
        lanes_array_binary(LANES_OP_SUBTRACT, a, keep(t), pick_stream(), &u);
        break;
      }
      case 6: {
        int32_t axis = static_cast<int32_t>(rng() % 2);
        lanes_array_reduce(LANES_REDUCE_MAX, b, &axis, 1, 1, s, &t);
        lanes_array_binary(LANES_OP_SUBTRACT, a, keep(t), pick_stream(), &u);
        break;
      }
      default: {
        // A strided view (no kernel) consumed on another stream.
        lanes_array_transpose(a, nullptr, -1, s, &t);
        lanes_array_binary(LANES_OP_MAXIMUM, keep(t), b, pick_stream(), &u);
      }
    }
    owned.push_back(u);
    pool.push_back(u);
    last = u;
  }
  return last;
}

std::vector<uint64_t> make_shared_inputs(uint32_t seed, uint64_t stream) {
  std::vector<uint64_t> inputs;
  int64_t shape[2] = {kN, kN};
  for (int i = 0; i < 3; ++i) {
    uint64_t h = 0;
    lanes_array_random(LANES_RANDOM_UNIFORM, seed + i, -1, 1, shape, 2, stream, &h);
    inputs.push_back(h);
  }
  // Unevaluated shared intermediates: concurrent evaluations race to claim these.
  uint64_t m = 0, sm = 0;
  lanes_array_matmul(inputs[0], inputs[1], stream, &m);
  lanes_array_softmax(m, -1, stream, &sm);
  inputs.push_back(sm);
  return inputs;
}

void stress_random_graphs(int threads, int streams, int graphs_per_thread) {
  const int total = threads * graphs_per_thread;
  // Serial reference on the default stream.
  std::vector<std::vector<float>> expected(total);
  {
    std::vector<uint64_t> shared = make_shared_inputs(100, 0);
    for (int g = 0; g < total; ++g) {
      std::vector<uint64_t> owned;
      uint64_t out = build_graph(GraphSpec{static_cast<uint32_t>(g + 1)}, shared, [] { return uint64_t(0); }, owned);
      expected[g] = read(out, kN * kN);
      for (uint64_t h : owned) lanes_array_release(h);
    }
    for (uint64_t h : shared) lanes_array_release(h);
  }
  std::vector<uint64_t> stream_handles(streams);
  for (auto& s : stream_handles) OK(lanes_stream_new(&s));
  std::vector<uint64_t> shared = make_shared_inputs(100, stream_handles[0]);
  std::atomic<int> mismatches{0}, errors{0};
  std::mutex first_error_mutex;
  std::string first_error;  // a worker's, since lanes_last_error() is per thread
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      std::mt19937 pick(1000 + t);
      for (int i = 0; i < graphs_per_thread; ++i) {
        int g = t * graphs_per_thread + i;
        std::vector<uint64_t> owned;
        uint64_t out = build_graph(GraphSpec{static_cast<uint32_t>(g + 1)}, shared,
                                   [&] { return stream_handles[pick() % stream_handles.size()]; }, owned);
        std::vector<float> got(kN * kN);
        if (lanes_array_read(out, got.data(), got.size() * 4) != LANES_OK) {
          if (errors.fetch_add(1) == 0) {
            std::lock_guard lock(first_error_mutex);
            first_error = lanes_last_error();
          }
        }
        else if (std::memcmp(got.data(), expected[g].data(), got.size() * 4) != 0) ++mismatches;
        for (uint64_t h : owned) lanes_array_release(h);
      }
    });
  for (auto& w : workers) w.join();
  if (errors.load()) t_failure = "a worker's read failed: " + first_error;
  EXPECT(errors.load() == 0);
  EXPECT(mismatches.load() == 0);
  for (uint64_t h : shared) lanes_array_release(h);
  for (uint64_t s : stream_handles) OK(lanes_stream_release(s));
}

// A queue whose buffers complete only when the test completes them, in the order it picks.
class HandDrivenQueue final : public lanes::Queue {
 public:
  explicit HandDrivenQueue(std::vector<lanes::Completion*>& committed) : committed_(committed) {}
  std::unique_ptr<lanes::CommandBuffer> new_command_buffer() override { return std::make_unique<Buffer>(); }
  void commit(std::unique_ptr<lanes::CommandBuffer>, uint64_t, lanes::Completion* done, lanes::Start) override {
    committed_.push_back(done);
  }
  std::shared_ptr<lanes::Fence> fence() override { return fence_; }
  void debug_pause(bool) override {}

 private:
  struct Buffer final : lanes::CommandBuffer {
    void encode(lanes::Command&&, std::unique_ptr<lanes::Prepared>) override {}
    void encode_wait(lanes::Fence&, uint64_t) override {}
    void encode_plan(lanes::PlanInstance&, const double*, int, void* const*) override {}
  };
  std::vector<lanes::Completion*>& committed_;
  std::shared_ptr<lanes::Fence> fence_ = std::make_shared<lanes::Fence>();
};

// An epoch that waited on several streams completes on the host once the last of them did,
// whichever order they finish in: its device work first, then each producer in turn.
void test_epoch_waiting_on_several_streams() {
  lanes::runtime();
  constexpr int kProducers = 3;
  std::vector<lanes::Completion*> committed[kProducers + 1];
  std::vector<std::shared_ptr<lanes::Stream>> streams;
  for (int i = 0; i <= kProducers; ++i)
    streams.push_back(std::make_shared<lanes::Stream>(1000 + i, 0, std::make_unique<HandDrivenQueue>(committed[i]),
                                                      lanes::runtime().allocator().new_pool(0)));
  auto commit_one = [](lanes::Stream& stream, const std::vector<std::shared_ptr<lanes::Stream>>& waits) {
    lanes::StreamOpLock lock(stream);
    for (const auto& producer : waits) lock.encode_wait(*producer, 1);
    lock.encode(lanes::PlannedCommand{});
    lock.commit(lanes::Start::Now);
  };
  std::vector<std::shared_ptr<lanes::Stream>> producers(streams.begin(), streams.begin() + kProducers);
  for (const auto& producer : producers) commit_one(*producer, {});
  lanes::Stream& consumer = *streams.back();
  commit_one(consumer, producers);
  committed[kProducers].at(0)->complete(nullptr);
  for (int p = 0; p < kProducers; ++p) {
    EXPECT(consumer.timeline()->completed() == 0);
    committed[p].at(0)->complete(nullptr);
    EXPECT(producers[p]->timeline()->completed() == 1);
  }
  EXPECT(consumer.timeline()->completed() == 1);
  // A consumer that never completed would block its destructor: leave it, so the failure shows.
  if (consumer.timeline()->completed() != 1) new std::shared_ptr<lanes::Stream>(streams.back());
}

void test_stress_cross_stream() { stress_random_graphs(6, 4, 12); }

void test_tiny_epochs() {
  lanes::EpochBudget saved = lanes::epoch_budget();
  OK(lanes_set_epoch_budget(1, 1));
  uint64_t before = stat(LANES_STAT_EPOCHS_COMMITTED), kernels = stat(LANES_STAT_KERNELS_EXECUTED);
  stress_random_graphs(4, 3, 6);
  // With a budget of one op, every kernel is its own epoch.
  EXPECT(stat(LANES_STAT_EPOCHS_COMMITTED) - before >= stat(LANES_STAT_KERNELS_EXECUTED) - kernels);
  OK(lanes_set_epoch_budget(saved.max_ops, saved.max_bytes));
}

// ---- stream lifetime ---------------------------------------------------------------------------

void test_stream_dispose_races_with_use() {
  std::atomic<int> crashes_would_be_here{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 30; ++i) {
        uint64_t s = 0, x = 0, y = 0;
        if (lanes_stream_new(&s)) continue;
        int64_t shape[1] = {4096};
        lanes_array_full(2.0, LANES_FLOAT32, shape, 1, s, &x);
        lanes_array_unary(LANES_OP_EXP, x, s, &y);
        std::thread releaser([s] { lanes_stream_release(s); });
        float out[4096];
        lanes_status st = lanes_array_read(y, out, sizeof out);
        if (st == LANES_OK) {
          if (std::fabs(out[(t * 31 + i) % 4096] - std::exp(2.0f)) > 1e-5f) ++wrong;
        } else if (st != LANES_ERR_DISPOSED && st != LANES_ERR_INVALID_HANDLE) {
          ++crashes_would_be_here;
        }
        releaser.join();
        lanes_array_release(x);
        lanes_array_release(y);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT(wrong.load() == 0);
  EXPECT(crashes_would_be_here.load() == 0);
}

void test_dispose_waits_for_in_flight_work() {
  uint64_t s = 0, a = 0, m = 0, pending = 0;
  int32_t done = -2;  // neither answer
  OK(lanes_stream_new(&s));
  int64_t shape[2] = {192, 192};
  OK(lanes_array_full(1.0, LANES_FLOAT32, shape, 2, s, &a));
  OK(lanes_array_matmul(a, a, s, &m));
  OK(lanes_eval_async(&m, 1, 0, 0, 0, &done) == LANES_ERR_INVALID_HANDLE ? LANES_OK : LANES_ERR_INTERNAL);
  uint64_t q = 0;
  OK(lanes_completion_queue_new(&q));
  OK(lanes_eval_async(&m, 1, q, 42, 0, &done));
  EXPECT(done == -1);
  OK(lanes_array_unary(LANES_OP_NEGATIVE, m, s, &pending));  // never evaluated before dispose
  OK(lanes_stream_release(s));  // waits for the matmul, then frees the queue
  std::vector<float> got = read(m, 192 * 192);
  EXPECT(got[0] == 192.0f && got[192 * 192 - 1] == 192.0f);
  float out[192 * 192];
  EXPECT(lanes_array_read(pending, out, sizeof out) == LANES_ERR_DISPOSED);
  uint64_t token = 0;
  int32_t status = -1, count = 0;
  OK(lanes_completion_queue_wait(q, 5000));
  OK(lanes_completion_queue_drain(q, &token, &status, 1, &count));
  EXPECT(count == 1 && token == 42 && status == LANES_OK);
  lanes_completion_queue_release(q);
  lanes_array_release(a);
  lanes_array_release(m);
  lanes_array_release(pending);
}

// An eval_async given time to run does the CPU work on the calling thread: it is done when the
// call returns, and nothing is posted. Without the time the work is the executor's, and reports
// through the queue.
void test_eval_async_runs_on_caller() {
  uint64_t q = 0, s = 0, a = 0, y = 0, z = 0;
  OK(lanes_completion_queue_new(&q));
  OK(lanes_stream_new(&s));
  int64_t shape[1] = {4};
  OK(lanes_array_full(2.0, LANES_FLOAT32, shape, 1, s, &a));
  OK(lanes_array_unary(LANES_OP_NEGATIVE, a, s, &y));
  int32_t done = -2;  // neither answer
  EXPECT(lanes_eval_async(&y, 1, q, 7, 1001, &done) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_eval_async(&y, 1, q, 7, 10, nullptr) == LANES_ERR_INVALID_ARGUMENT);
  OK(lanes_eval_async(&y, 1, q, 7, 1000, &done));
  EXPECT(done >= 0 && done < 1000000);
  uint64_t token = 0;
  int32_t status = -1, count = 0;
  OK(lanes_completion_queue_drain(q, &token, &status, 1, &count));
  EXPECT(count == 0);
  EXPECT(read(y, 4)[3] == -2.0f);
  OK(lanes_array_binary_scalar(LANES_OP_MULTIPLY, y, 3.0, 0, -1, s, &z));
  OK(lanes_eval_async(&z, 1, q, 8, 0, &done));
  EXPECT(done == -1);
  count = 0;
  for (int i = 0; i < 100 && count == 0; ++i) {
    OK(lanes_completion_queue_wait(q, 50));
    OK(lanes_completion_queue_drain(q, &token, &status, 1, &count));
  }
  EXPECT(count == 1 && token == 8 && status == LANES_OK);
  EXPECT(read(z, 4)[0] == -6.0f);
  OK(lanes_completion_queue_drain(q, &token, &status, 1, &count));
  EXPECT(count == 0);  // drained: nothing left to report
  for (uint64_t h : {a, y, z}) lanes_array_release(h);
  lanes_stream_release(s);
  lanes_completion_queue_release(q);
}

// A replay's work is left for the thread that evaluates its results; when none does, it still
// runs, without any wait asking for it.
// Once after the stream's executor fell asleep (a quiet spell), once while it still looks on
// its timer (right after the first).
void test_replay_nobody_evaluates_still_runs() {
  int64_t shape[1] = {8};
  uint64_t x = 0, y = 0, plan = 0, s = 0;
  OK(lanes_array_placeholder(LANES_FLOAT32, shape, 1, &x));
  OK(lanes_array_unary(LANES_OP_NEGATIVE, x, 0, &y));
  OK(lanes_plan_new(&x, 1, &y, 1, 0, nullptr, nullptr, &plan));
  OK(lanes_stream_new(&s));
  uint64_t in = from_floats({1, 2, 3, 4, 5, 6, 7, 8}, {8});
  OK(lanes_eval(&in, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int replay = 0; replay < 2; ++replay) {
    uint64_t before = stat(LANES_STAT_KERNELS_EXECUTED), out = 0;
    OK(lanes_plan_run(plan, s, &in, 1, nullptr, 0, &out, 1));
    for (int i = 0; i < 5000 && stat(LANES_STAT_KERNELS_EXECUTED) == before; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT(stat(LANES_STAT_KERNELS_EXECUTED) > before);
    EXPECT(read(out, 8)[7] == -8.0f);
    lanes_array_release(out);
  }
  for (uint64_t h : {x, y, in}) lanes_array_release(h);
  OK(lanes_plan_release(plan));
  lanes_stream_release(s);
}

// ---- GPU completions run by a waiting thread -------------------------------------------------

// The completions of two fake queues' epochs, in the order they ran.
class CompletionLog {
 public:
  // What the completion of epoch `value` of queue `queue` runs.
  lanes::gpu::DeviceCompletions::Complete entry(int queue, uint64_t value) {
    return [this, queue, value](const std::optional<std::string>& lost) {
      EXPECT(!lost);
      std::lock_guard lock(mutex_);
      order_.emplace_back(queue, value);
    };
  }
  size_t size() {
    std::lock_guard lock(mutex_);
    return order_.size();
  }
  // Waits up to 2 s for `n` completions; whether exactly `n` ran.
  bool wait_for(size_t n) {
    for (int i = 0; i < 2000 && size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return size() == n;
  }
  // Every epoch 1..last[q] of each queue completed once, in its queue's order.
  void expect_in_order(uint64_t last0, uint64_t last1) {
    uint64_t next[2] = {1, 1};
    for (auto [q, v] : order_) {
      EXPECT(v == next[q]);
      next[q] = v + 1;
    }
    EXPECT(next[0] == last0 + 1 && next[1] == last1 + 1);
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<int, uint64_t>> order_;  // (queue, value)
};

// Two fake queues whose counter words the test writes as a device would. Every epoch must
// complete exactly once, in its queue's order, whether its callback, the completion thread or
// a spinning waiter (progress) gets there first.
void test_device_completions_progress() {
  CompletionLog log;
  {
    lanes::gpu::DeviceCompletions completions([]() -> std::optional<std::string> { return std::nullopt; }, nullptr);
    alignas(8) uint64_t words[2] = {0, 0};  // written with atomic stores, as the device's writes are
    constexpr uint64_t kEpochs = 2000;
    std::vector<void*> tokens[2];
    auto expect = [&](int q, uint64_t v) { tokens[q].push_back(completions.expect(log.entry(q, v), &words[q], v)); };
    // Without a word written, progress completes nothing.
    expect(0, 1);
    completions.progress();
    EXPECT(log.size() == 0);
    __atomic_store_n(&words[0], 1, __ATOMIC_RELEASE);
    completions.progress();
    EXPECT(log.size() == 1);
    lanes::gpu::DeviceCompletions::arrive(tokens[0][0]);  // a late callback: no second completion

    std::atomic<bool> stop{false};
    std::thread waiter([&] {
      while (!stop.load()) completions.progress();
    });
    for (uint64_t v = 2; v <= kEpochs; ++v) {
      expect(0, v);
      expect(1, v - 1);
    }
    // The "device": counters move on in order, callbacks come after their counter, sometimes
    // long after (queue 1's come in bursts).
    std::thread device([&] {
      uint64_t arrived1 = 1;  // queue 1's next value whose callback is due
      auto arrive1_through = [&](uint64_t last) {
        for (; arrived1 <= last; ++arrived1) lanes::gpu::DeviceCompletions::arrive(tokens[1][arrived1 - 1]);
      };
      for (uint64_t v = 2; v <= kEpochs; ++v) {
        __atomic_store_n(&words[0], v, __ATOMIC_RELEASE);
        lanes::gpu::DeviceCompletions::arrive(tokens[0][v - 1]);
        __atomic_store_n(&words[1], v - 1, __ATOMIC_RELEASE);
        if (v % 16 == 0) arrive1_through(v - 1);
      }
      arrive1_through(kEpochs - 1);
    });
    device.join();
    EXPECT(log.wait_for(2 * kEpochs - 1));
    stop = true;
    waiter.join();
  }
  log.expect_in_order(2000, 1999);
}

// Epochs without a callback of their own (CUDA's, since a host function holds its stream):
// the completion thread's reads of the words, a mark, and settle each complete them, and a
// spinning waiter and late marks together still complete each once, in queue order.
void test_device_completions_without_callbacks() {
  CompletionLog log;
  {
    lanes::gpu::DeviceCompletions completions([]() -> std::optional<std::string> { return std::nullopt; }, nullptr);
    alignas(8) uint64_t words[2] = {0, 0};
    std::vector<void*> tokens[2];
    auto expect = [&](int q, uint64_t v) {
      tokens[q].push_back(completions.expect(log.entry(q, v), &words[q], v, /*callback=*/false));
    };
    for (uint64_t v = 1; v <= 7; ++v) expect(0, v);
    // Nobody waits: the completion thread sees the word within its read period.
    __atomic_store_n(&words[0], 3, __ATOMIC_RELEASE);
    EXPECT(log.wait_for(3));
    // A mark through 6 arrives before the word shows it (the host function ran after them).
    lanes::gpu::DeviceCompletions::arrive_through(completions.new_mark(&words[0], 6));
    EXPECT(log.wait_for(6));
    // A marked queue's other epochs stay: 7 completes only when settled.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT(log.size() == 6);
    completions.settle(tokens[0][6]);
    EXPECT(log.wait_for(7));

    constexpr uint64_t kEpochs = 2000;
    for (uint64_t v = 1; v <= kEpochs; ++v) expect(1, v);
    std::atomic<bool> stop{false};
    std::thread waiter([&] {
      while (!stop.load()) completions.progress();
    });
    std::thread device([&] {
      for (uint64_t v = 1; v <= kEpochs; ++v) {
        __atomic_store_n(&words[1], v, __ATOMIC_RELEASE);
        if (v % 100 == 0) lanes::gpu::DeviceCompletions::arrive_through(completions.new_mark(&words[1], v - 50));
      }
    });
    device.join();
    EXPECT(log.wait_for(7 + kEpochs));
    stop = true;
    waiter.join();
  }
  log.expect_in_order(7, 2000);
}

// A waiter whose epoch has later work queued behind it (so no mark follows it closely)
// hurries it: the completion thread then reads the words until it finished, instead of every
// `collect_period` (a minute here, which no part of this test waits for).
void test_device_completions_hurried() {
  CompletionLog log;
  {
    lanes::gpu::DeviceCompletions completions([]() -> std::optional<std::string> { return std::nullopt; }, nullptr,
                                              std::chrono::minutes(1));
    alignas(8) uint64_t word = 0;
    std::vector<void*> tokens;
    for (uint64_t v = 1; v <= 3; ++v) tokens.push_back(completions.expect(log.entry(0, v), &word, v, /*callback=*/false));
    // The thread settles into its long sleep; the device finishes epoch 2, epoch 3 runs on.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    __atomic_store_n(&word, 2, __ATOMIC_RELEASE);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT(log.size() == 0);  // nobody reads the word for a minute
    completions.hurry(&word, 2);
    EXPECT(log.wait_for(2));
    // Epoch 3 is not hurried: once 2 completed the thread sleeps long again.
    __atomic_store_n(&word, 3, __ATOMIC_RELEASE);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT(log.size() == 2);
    completions.settle(tokens[2]);
    EXPECT(log.wait_for(3));
  }
  log.expect_in_order(3, 0);
}

// ---- a failure part-way through a batch --------------------------------------------------------

// Nodes encoded before an encode fails stay scheduled: they run once, not again on a retry.
void test_partial_batch_failure_keeps_encoded_nodes() {
  uint64_t s = 0, a = 0, b = 0, c = 0, d = 0;
  OK(lanes_stream_new(&s));
  int64_t shape[1] = {1000};
  OK(lanes_array_full(1.0, LANES_FLOAT32, shape, 1, s, &a));
  OK(lanes_array_binary_scalar(LANES_OP_MULTIPLY, a, 2.0, 0, -1, s, &b));
  OK(lanes_array_binary_scalar(LANES_OP_ADD, b, 1.0, 0, -1, s, &c));
  OK(lanes_array_binary_scalar(LANES_OP_MULTIPLY, c, 3.0, 0, -1, s, &d));
  uint64_t before = stat(LANES_STAT_KERNELS_EXECUTED);
  lanes::runtime().streams.get(s)->inject_encode_failure(2);  // a and b encode, c fails
  EXPECT(lanes_eval(&d, 1) == LANES_ERR_INTERNAL);
  EXPECT(std::strstr(lanes_last_error(), "injected encode failure") != nullptr);
  OK(lanes_eval(&d, 1));
  std::vector<float> y = read(d, 1000);
  EXPECT(y[0] == 9.0f && y[999] == 9.0f);
  OK(lanes_stream_synchronize(s));
  EXPECT(stat(LANES_STAT_KERNELS_EXECUTED) - before == 4);  // each node once
  for (uint64_t h : {a, b, c, d}) OK(lanes_array_release(h));
  OK(lanes_stream_release(s));
}

// ---- compiled plans ----------------------------------------------------------------------------

// A plan replayed by 8 threads at once, each on its own stream, equals a serial replay bitwise.
// Its maximum and broadcast add are one fused kernel.
void test_plan_replayed_from_threads() {
  int64_t shape[2] = {32, 32}, row[2] = {1, 32};
  uint64_t w = 0, b = 0, x = 0, p = 0, h = 0, r = 0, a = 0, y = 0, plan = 0;
  OK(lanes_array_random(LANES_RANDOM_NORMAL, 3, 0, 0.2, shape, 2, 0, &w));
  OK(lanes_array_random(LANES_RANDOM_NORMAL, 4, 0, 1, row, 2, 0, &b));
  OK(lanes_array_placeholder(LANES_FLOAT32, shape, 2, &x));
  OK(lanes_array_matmul(x, w, 0, &p));
  OK(lanes_array_binary_scalar(LANES_OP_MULTIPLY, p, 0.0, 0, /*param*/ 0, 0, &h));
  OK(lanes_array_binary_scalar(LANES_OP_MAXIMUM, h, -0.25, 0, -1, 0, &r));
  OK(lanes_array_binary(LANES_OP_ADD, r, b, 0, &a));
  OK(lanes_array_softmax(a, -1, 0, &y));
  OK(lanes_plan_new(&x, 1, &y, 1, 1, nullptr, nullptr, &plan));
  for (uint64_t t : {x, p, h, r, a, y}) OK(lanes_array_release(t));
  int32_t inputs = 0, outputs = 0, scalars = 0, steps = 0;
  uint64_t arena = 0;
  OK(lanes_plan_info(plan, &inputs, &outputs, &scalars, &steps, &arena));
  EXPECT(steps == 4);  // matmul, multiply (a parameter), maximum + add fused, softmax
  auto run_one = [&](uint64_t stream, int i) {
    uint64_t in = 0, out = 0;
    OK(lanes_array_random(LANES_RANDOM_UNIFORM, 100 + i, -1, 1, shape, 2, stream, &in));
    double scale = 0.5 + i;
    OK(lanes_plan_run(plan, stream, &in, 1, &scale, 1, &out, 1));
    std::vector<float> v = read(out, 32 * 32);
    OK(lanes_array_release(in));
    OK(lanes_array_release(out));
    return v;
  };
  constexpr int kThreads = 8, kRuns = 12;
  std::vector<std::vector<float>> serial;
  for (int i = 0; i < kThreads * kRuns; ++i) serial.push_back(run_one(0, i));
  std::vector<std::vector<std::vector<float>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      uint64_t s = 0;
      OK(lanes_stream_new(&s));
      for (int r = 0; r < kRuns; ++r) got[t].push_back(run_one(s, t * kRuns + r));
      OK(lanes_stream_release(s));
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t)
    for (int r = 0; r < kRuns; ++r) EXPECT(std::memcmp(got[t][r].data(), serial[t * kRuns + r].data(), 32 * 32 * 4) == 0);
  OK(lanes_plan_release(plan));
  OK(lanes_array_release(w));
  OK(lanes_array_release(b));
}

// Evaluating a graph that reads a placeholder fails with a typed error every time, and the
// nodes it claimed on the way are handed back: a later evaluation or read fails the same way
// instead of waiting forever on a claim (found by the ABI fuzzer).
void test_failed_walk_releases_its_claims() {
  int64_t shape[2] = {4, 4};
  uint64_t x = 0, a = 0, b = 0, q = 0;
  OK(lanes_array_placeholder(LANES_FLOAT32, shape, 2, &x));
  OK(lanes_array_binary_scalar(LANES_OP_MINIMUM, x, 1.0, 0, -1, 0, &a));
  OK(lanes_array_unary(LANES_OP_EXP, a, 0, &b));
  OK(lanes_completion_queue_new(&q));
  int32_t done = -1;
  EXPECT(lanes_eval_async(&b, 1, q, 7, 100, &done) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_eval(&a, 1) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(std::strstr(lanes_last_error(), "has no value outside its trace") != nullptr);
  float out[16];
  EXPECT(lanes_array_read(b, out, sizeof out) == LANES_ERR_INVALID_ARGUMENT);
  for (uint64_t h : {x, a, b}) OK(lanes_array_release(h));
  OK(lanes_completion_queue_release(q));
}

// ---- small vectors -----------------------------------------------------------------------------

// Shapes use an inline vector: random operations must match std::vector's.
// Inserts, lookups and clears of random pointers (some repeated, some near each other) agree
// with std::unordered_set, across growth and reuse after clear().
void test_pointer_set_matches_unordered_set() {
  std::mt19937 rng(7);
  std::vector<char> arena(1 << 16);
  lanes::PointerSet a;
  for (int round = 0; round < 200; ++round) {
    std::unordered_set<const void*> b;
    int inserts = static_cast<int>(rng() % 400);
    for (int k = 0; k < inserts; ++k) {
      const void* p = &arena[rng() % (round % 2 ? 64 : arena.size())];
      EXPECT(a.insert(p) == b.insert(p).second);
      const void* q = &arena[rng() % arena.size()];
      EXPECT(a.contains(q) == (b.count(q) == 1));
    }
    EXPECT(a.size() == b.size());
    for (const void* p : b) EXPECT(a.contains(p));
    a.clear();
    EXPECT(a.size() == 0);
    for (const void* p : b) EXPECT(!a.contains(p));
  }
}

// The GPU backends read an operand in place when is_contiguous says its elements lie in
// row-major order: checked against walking every element, for random shapes and strides
// (size-1 dims with any stride, transposes, broadcasts, padded rows).
void test_gpu_contiguity_matches_element_walk() {
  std::mt19937 rng(3);
  int in_place = 0;
  for (int round = 0; round < 4000; ++round) {
    size_t rank = 1 + rng() % 4;
    lanes::Shape shape(rank), strides(rank);
    for (size_t i = 0; i < rank; ++i) shape[i] = 1 + static_cast<int64_t>(rng() % 3);
    lanes::Shape row_major = lanes::contiguous_strides(shape);
    for (size_t i = 0; i < rank; ++i) {
      switch (rng() % 4) {
        case 0: strides[i] = static_cast<int64_t>(rng() % 40); break;  // anything, broadcast included
        default: strides[i] = row_major[i];
      }
    }
    lanes::TensorArg a;
    a.shape = shape;
    a.strides = strides;
    bool walk_in_order = true;
    int64_t n = lanes::numel(shape);
    for (int64_t e = 0; e < n; ++e) {
      int64_t rest = e, at = 0;
      for (size_t i = rank; i-- > 0;) {
        at += (rest % shape[i]) * strides[i];
        rest /= shape[i];
      }
      walk_in_order &= at == e;
    }
    EXPECT(lanes::gpu::is_contiguous(a) == walk_in_order);
    in_place += walk_in_order;
  }
  EXPECT(in_place > 500 && in_place < 3900);  // both answers were exercised
  lanes::TensorArg q;  // a decode step's queries: [1, 1, 9, 64] with heads and positions swapped
  q.shape = {1, 9, 1, 64};
  q.strides = {576, 64, 576, 1};
  EXPECT(lanes::gpu::is_contiguous(q));
  q.shape = {1, 9, 2, 64};  // two positions: a real transpose
  q.strides = {1152, 64, 576, 1};
  EXPECT(!lanes::gpu::is_contiguous(q));
}

void test_small_vector_matches_std_vector() {
  std::mt19937 rng(1);
  for (int it = 0; it < 2000; ++it) {
    lanes::SmallVector<int64_t, 4> a;
    std::vector<int64_t> b;
    for (int k = 0; k < 40; ++k) {
      int op = static_cast<int>(rng() % 6);
      if (op == 0) {
        int64_t v = rng();
        a.push_back(v);
        b.push_back(v);
      } else if (op == 1 && !b.empty()) {
        a.pop_back();
        b.pop_back();
      } else if (op == 2) {
        size_t at = b.empty() ? 0 : rng() % (b.size() + 1);
        int64_t v[3] = {int64_t(rng()), int64_t(rng()), int64_t(rng())};
        size_t n = rng() % 4;
        a.insert(a.begin() + at, v, v + n);
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), v, v + n);
      } else if (op == 3 && !b.empty()) {
        size_t at = rng() % b.size();
        a.erase(a.begin() + at);
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
      } else if (op == 4) {
        lanes::SmallVector<int64_t, 4> c = a;
        a = std::move(c);
      } else if (op == 5) {
        size_t n = rng() % 12;
        a.resize(n, 7);
        b.resize(n, 7);
      }
      EXPECT(a.size() == b.size() && std::equal(b.begin(), b.end(), a.begin()));
    }
  }
}


// ---- compute pool and sgemm ----------------------------------------------------------------------

// Jobs of every size from many threads at once, some nested: every index runs exactly once, in
// chunks whose boundaries do not depend on the thread that ran them.
void test_pool_concurrent_jobs() {
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t)
    threads.emplace_back([t] {
      std::mt19937 rng(t);
      for (int round = 0; round < 60; ++round) {
        int64_t n = int64_t(rng() % 5000), grain = 1 + int64_t(rng() % 300);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<std::pair<int64_t, int64_t>> chunks_a, chunks_b;
        std::mutex m;
        for (auto* chunks : {&chunks_a, &chunks_b}) {
          for (auto& h : hits) h.store(0);
          lanes::cpu::parallel_for(n, grain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
            if (round % 7 == 0)  // nested: runs on this thread, same chunking rules
              lanes::cpu::parallel_for(e - b, 4, [&](int64_t, int64_t) {});
            std::lock_guard lock(m);
            chunks->emplace_back(b, e);
          });
          for (auto& h : hits) EXPECT(h.load() == 1);
        }
        std::sort(chunks_a.begin(), chunks_a.end());
        std::sort(chunks_b.begin(), chunks_b.end());
        EXPECT(chunks_a == chunks_b);
        for (auto& [b, e] : chunks_a) EXPECT(e - b >= std::min(grain, n) || e == n);
      }
    });
  for (auto& t : threads) t.join();
}

// The sampler's exp against std::exp: within 2 units in the last place wherever e^x is normal,
// and 0 below -700, over x from -745 to 0 (every bucket distance a sampler sees, and past it).
void test_sampling_exp() {
  std::mt19937_64 gen(20261205);
  std::uniform_real_distribution<double> wide(-745.0, 0.0), near(-1.0, 0.0);
  auto ulps = [](double a, double b) {
    return std::abs(static_cast<double>(std::bit_cast<int64_t>(a) - std::bit_cast<int64_t>(b)));
  };
  double worst = 0;
  for (int i = 0; i < 2000000; ++i) {
    const double x = i % 2 ? wide(gen) : near(gen);
    const double got = lanes::exp_nonpositive(x);
    if (x < -700.0) {
      EXPECT(got == 0.0);
    } else {
      worst = std::max(worst, ulps(got, std::exp(x)));
    }
  }
  EXPECT(worst <= 2);
  EXPECT(lanes::exp_nonpositive(0.0) == 1.0 && lanes::exp_nonpositive(-0.0) == 1.0);
  EXPECT(lanes::exp_nonpositive(-INFINITY) == 0.0 && lanes::exp_nonpositive(NAN) == 0.0);
}

// lanes_logits_sample refuses bad arguments with a typed error and answers edge cases.
void test_logits_sample_arguments() {
  const float logits[4] = {0.5f, 2.0f, 2.0f, -1.0f};
  int64_t token = -1, kept = -1;
  EXPECT(lanes_logits_sample(nullptr, 4, 1.0, 0, 1.0, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_logits_sample(logits, 0, 1.0, 0, 1.0, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_logits_sample(logits, int64_t(1) << 31, 1.0, 0, 1.0, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  for (double t : {0.0, -1.0, double(NAN), double(INFINITY)})
    EXPECT(lanes_logits_sample(logits, 4, t, 0, 1.0, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_logits_sample(logits, 4, 1.0, -1, 1.0, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  for (double p : {0.0, 1.5, double(NAN)}) EXPECT(lanes_logits_sample(logits, 4, 1.0, 0, p, 0.5, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  for (double u : {-0.1, 1.0, double(NAN)}) EXPECT(lanes_logits_sample(logits, 4, 1.0, 0, 1.0, u, &token, &kept) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_logits_sample(logits, 4, 1.0, 0, 1.0, 0.5, nullptr, &kept) == LANES_ERR_INVALID_ARGUMENT);
  // u = 0 takes the most likely token, ties to the lower index; top_k 2 keeps the two tied ones.
  OK(lanes_logits_sample(logits, 4, 1.0, 2, 1.0, 0.0, &token, &kept));
  EXPECT(token == 1 && kept == 2);
  const float nans[3] = {NAN, NAN, NAN};
  OK(lanes_logits_sample(nans, 3, 1.0, 0, 1.0, 0.5, &token, &kept));
  EXPECT(token == 0 && kept == 0);
}

void test_pool_rethrows_on_caller() {
  bool caught = false;
  try {
    lanes::cpu::parallel_for(1000, 1, [](int64_t b, int64_t e) {
      if (b <= 500 && 500 < e) throw std::runtime_error("chunk 500");
    });
  } catch (const std::runtime_error& e) {
    caught = std::strcmp(e.what(), "chunk 500") == 0;
  }
  EXPECT(caught);
  std::atomic<int64_t> sum{0};
  lanes::cpu::parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  EXPECT(sum.load() == 1000);  // the pool still works
}

// Each element of c = a @ b against the float64 sum, within K + 1 roundings of the sum of the
// products' magnitudes.
void expect_near_float64_product(const lanes::cpu::MatrixView& av, const lanes::cpu::MatrixView& bv, const std::vector<float>& c,
                                 int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double want = 0, magnitude = 0;
      for (int64_t k = 0; k < K; ++k) {
        double p = double(av.data[i * av.row + k * av.col]) * bv.data[k * bv.row + j * bv.col];
        want += p;
        magnitude += std::fabs(p);
      }
      EXPECT(std::fabs(c[static_cast<size_t>(i * N + j)] - want) <= (K + 1) * 0x1p-24 * magnitude);
    }
}

// Every microkernel this CPU has, on sizes around the panel and tile edges, plain and
// transposed operands, against a float64 reference; the paths agree bit for bit.
void test_sgemm_paths() {
  using lanes::cpu::SimdLevel;
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::Avx2, SimdLevel::Avx512})
    if (l <= lanes::cpu::simd_level()) levels.push_back(l);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t sizes[] = {1, 13, 32, 33, 95, 97, 200, 520};
  int cases = 0;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : {int64_t(1), int64_t(31), int64_t(257), int64_t(600)}) {
        if (M * N * K > 12'000'000 || (cases++ % 3 != 0 && M * N * K > 1'000'000)) continue;
        std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
        for (auto& x : a) x = uniform(rng);
        for (auto& x : b) x = uniform(rng);
        bool at = rng() % 2, bt = rng() % 2;  // stored transposed: A as [K, M], B as [N, K]
        lanes::cpu::MatrixView av = at ? lanes::cpu::MatrixView{a.data(), 1, M} : lanes::cpu::MatrixView{a.data(), K, 1};
        lanes::cpu::MatrixView bv = bt ? lanes::cpu::MatrixView{b.data(), 1, K} : lanes::cpu::MatrixView{b.data(), N, 1};
        std::vector<std::vector<float>> results;
        for (SimdLevel l : levels) {
          std::vector<float> c(static_cast<size_t>(M * N), std::nanf(""));
          EXPECT(lanes::cpu::sgemm_packed_with(l, av, bv, c.data(), M, N, K));
          results.push_back(std::move(c));
        }
        for (auto& c : results) expect_near_float64_product(av, bv, c, M, N, K);
        for (auto& c : results) EXPECT(std::memcmp(c.data(), results[0].data(), c.size() * sizeof(float)) == 0);
      }
  EXPECT(!lanes::cpu::sgemm_packed_with(SimdLevel::Scalar, {nullptr, 0, 0}, {nullptr, 0, 0}, nullptr, 1, 1, 1));
}

// Decode-sized products, which have kernels of their own: one row against B read in place, and
// up to 12 rows against a transposed B (a tied output head). Against a float64 reference, and
// bitwise equal to the AVX2 path (strips and packed kernels), which computes the same chains.
void test_sgemm_few_rows() {
  using lanes::cpu::SimdLevel;
  if (lanes::cpu::simd_level() != SimdLevel::Avx512) return;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int64_t M = 1; M <= 12; ++M)
    for (int64_t N : {1, 15, 16, 17, 64, 257, 390, 800})
      for (int64_t K : {1, 15, 16, 17, 128, 300}) {
        std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
        for (auto& x : a) x = uniform(rng);
        for (auto& x : b) x = uniform(rng);
        for (bool bt : {false, true}) {
          bool at = rng() % 2;
          lanes::cpu::MatrixView av = at ? lanes::cpu::MatrixView{a.data(), 1, M} : lanes::cpu::MatrixView{a.data(), K, 1};
          lanes::cpu::MatrixView bv = bt ? lanes::cpu::MatrixView{b.data(), 1, K} : lanes::cpu::MatrixView{b.data(), N, 1};
          std::vector<float> c(static_cast<size_t>(M * N), std::nanf("")), c2(c);
          EXPECT(lanes::cpu::sgemm_packed_with(SimdLevel::Avx512, av, bv, c.data(), M, N, K));
          EXPECT(lanes::cpu::sgemm_packed_with(SimdLevel::Avx2, av, bv, c2.data(), M, N, K));
          EXPECT(std::memcmp(c.data(), c2.data(), c.size() * sizeof(float)) == 0);
          expect_near_float64_product(av, bv, c, M, N, K);
        }
      }
}

// K long enough that its packed steps go in two stages: a sample of elements against a float64
// reference, and the paths bitwise equal over the whole product.
void test_sgemm_staged_k() {
  using lanes::cpu::SimdLevel;
  if (lanes::cpu::simd_level() == SimdLevel::Scalar) return;
  constexpr int64_t M = 300, N = 300, K = 3600;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> a(M * K), b(K * N);
  for (auto& x : a) x = uniform(rng);
  for (auto& x : b) x = uniform(rng);
  std::vector<float> c(M * N), c2(M * N);
  EXPECT(lanes::cpu::sgemm_packed_with(SimdLevel::Avx2, {a.data(), K, 1}, {b.data(), N, 1}, c.data(), M, N, K));
  for (int sample = 0; sample < 400; ++sample) {
    int64_t i = rng() % M, j = rng() % N;
    double want = 0, magnitude = 0;
    for (int64_t k = 0; k < K; ++k) {
      want += double(a[i * K + k]) * b[k * N + j];
      magnitude += std::fabs(double(a[i * K + k]) * b[k * N + j]);
    }
    EXPECT(std::fabs(c[i * N + j] - want) <= (K + 1) * 0x1p-24 * magnitude);
  }
  if (lanes::cpu::simd_level() == SimdLevel::Avx512) {
    EXPECT(lanes::cpu::sgemm_packed_with(SimdLevel::Avx512, {a.data(), K, 1}, {b.data(), N, 1}, c2.data(), M, N, K));
    EXPECT(std::memcmp(c.data(), c2.data(), c.size() * sizeof(float)) == 0);
  }
}

// Products large enough to fan out, from several threads at once: bitwise equal to one run alone.
void test_sgemm_concurrent_equals_serial() {
  if (lanes::cpu::simd_level() == lanes::cpu::SimdLevel::Scalar) return;
  constexpr int64_t M = 190, N = 330, K = 700;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> a(M * K), b(K * N);
  for (auto& x : a) x = uniform(rng);
  for (auto& x : b) x = uniform(rng);
  std::vector<float> want(M * N);
  EXPECT(lanes::cpu::sgemm_packed({a.data(), K, 1}, {b.data(), N, 1}, want.data(), M, N, K));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 3; ++round) {
        std::vector<float> got(M * N);
        EXPECT(lanes::cpu::sgemm_packed({a.data(), K, 1}, {b.data(), N, 1}, got.data(), M, N, K));
        EXPECT(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
      }
    });
  for (auto& t : threads) t.join();
}

// ---- lock order --------------------------------------------------------------------------------

// Child-process bodies: each makes one out-of-order acquisition, which must abort.
int violate_lock_order(const char* which) {
  auto s1 = lanes::runtime().new_stream();
  auto s2 = lanes::runtime().new_stream();
  if (std::strcmp(which, "fence-then-op") == 0) {
    lanes::StreamOpLock a(*s1);
    a.with_fence_state([&] {
      lanes::StreamOpLock b(*s1);
      return 0;
    });
  } else {
    lanes::StreamOpLock a(*s1);
    lanes::StreamOpLock b(*s2);
  }
  std::printf("no abort\n");
  return 0;
}

std::string run_child(const char* self, const char* mode, int* status) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return "pipe failed";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_addclose(&actions, pipefd[0]);
  char* argv[] = {const_cast<char*>(self), const_cast<char*>("--violate"), const_cast<char*>(mode), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, self, &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipefd[1]);
  std::string output;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) output.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  if (rc != 0) return "spawn failed";
  waitpid(pid, status, 0);
  return output;
}

// ---- buffers held by epochs ------------------------------------------------------------------

void test_buffer_epoch_holds() {
  lanes::Allocator& allocator = lanes::runtime().allocator();
  std::shared_ptr<lanes::MemoryPool> pool = allocator.new_pool(0);
  std::shared_ptr<lanes::Buffer> b = allocator.allocate(256, 0, pool);
  EXPECT(lanes::Buffer::held_only_by(b, 7));
  {
    lanes::EpochHold first(b, 7), second(b, 7);
    EXPECT(lanes::Buffer::held_only_by(b, 7));
    EXPECT(!lanes::Buffer::held_only_by(b, 8));
    std::shared_ptr<lanes::Buffer> other = b;
    EXPECT(!lanes::Buffer::held_only_by(b, 7));
  }
  {
    lanes::EpochHold mine(b, 7);
    {
      lanes::EpochHold theirs(b, 8);
      EXPECT(!lanes::Buffer::held_only_by(b, 7));
    }
    // Which stream held the buffer is forgotten only once no hold is left.
    EXPECT(!lanes::Buffer::held_only_by(b, 7));
  }
  EXPECT(lanes::Buffer::held_only_by(b, 7) && lanes::Buffer::held_only_by(b, 8));

  // Another thread turns references into holds of another stream and drops them. Whenever it
  // kept a reference across the whole check, the check must say no.
  std::atomic<bool> stop{false}, holding{false};
  std::atomic<uint64_t> cycles{0};
  std::thread foreign([&] {
    // `holding` is true only while a reference certainly exists.
    while (!stop.load()) {
      std::shared_ptr<lanes::Buffer> copy = b;
      holding.store(true);
      {
        lanes::EpochHold hold(std::move(copy), 9);
        holding.store(false);
      }
      cycles.fetch_add(1);
    }
  });
  std::vector<lanes::EpochHold> own;
  for (int i = 0; i < 200000; ++i) {
    if (i % 64 == 0) own.clear();
    if (i % 3 == 0) own.emplace_back(b, 7);
    uint64_t c0 = cycles.load();
    bool h0 = holding.load();
    bool only = lanes::Buffer::held_only_by(b, 7);
    bool h1 = holding.load();
    if (h0 && h1 && cycles.load() == c0) EXPECT(!only);
  }
  stop.store(true);
  foreign.join();
  own.clear();
  EXPECT(lanes::Buffer::held_only_by(b, 7));
}

void test_lock_order_violation_aborts(const char* self) {
  int status = 0;
  std::string out = run_child(self, "fence-then-op", &status);
  EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  EXPECT(out.find("lock order violation: acquiring 'stream.op_mtx' (rank 20) while holding 'stream.fence_mtx' (rank 30)") !=
         std::string::npos);
  out = run_child(self, "two-op-locks", &status);
  EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  EXPECT(out.find("acquiring 'stream.op_mtx' (rank 20) while holding 'stream.op_mtx' (rank 20)") != std::string::npos);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--violate") == 0) return violate_lock_order(argv[2]);
  if (argc == 2) g_only = argv[1];
  run("handles: stale, freed, foreign and garbage handles are rejected", test_handles);
  run("graph: a shared node evaluated from 6 threads runs once", test_shared_node_computed_once);
  run("stress: 6 threads x 4 streams, random cross-stream graphs equal serial bitwise", test_stress_cross_stream);
  run("stress: tiny epoch budgets rotate every op", test_tiny_epochs);
  run("completions: an epoch that waited on three streams completes after the last of them",
      test_epoch_waiting_on_several_streams);
  run("streams: dispose races with use", test_stream_dispose_races_with_use);
  run("streams: dispose waits for in-flight work, later work is rejected", test_dispose_waits_for_in_flight_work);
  run("eval_async: given time, the caller runs the CPU work itself; without, it reports later", test_eval_async_runs_on_caller);
  run("a replay whose results nobody evaluates still runs", test_replay_nobody_evaluates_still_runs);
  run("graph: a batch that fails part-way keeps what it encoded (each node runs once)", test_partial_batch_failure_keeps_encoded_nodes);
  run("plans: 8 threads replay one plan on their own streams, equal to serial bitwise", test_plan_replayed_from_threads);
  run("a failed walk releases its claims: later evaluations fail instead of hanging", test_failed_walk_releases_its_claims);
  run("buffers: epoch holds of one stream allow writing in place, any other reference or stream does not",
      test_buffer_epoch_holds);
  run("small vector: random operations match std::vector", test_small_vector_matches_std_vector);
  run("gpu layout: an operand is read in place exactly when its elements lie in row-major order", test_gpu_contiguity_matches_element_walk);
  run("pointer set: random inserts, lookups and clears match std::unordered_set", test_pointer_set_matches_unordered_set);
  run("pool: concurrent and nested jobs run every index once, in fixed chunks", test_pool_concurrent_jobs);
  run("pool: a chunk's exception is rethrown on the caller", test_pool_rethrows_on_caller);
  run("sampling: exp within 2 ulp of std::exp over every distance a sampler sees", test_sampling_exp);
  run("sampling: bad arguments get a typed error; ties, top_k and all-NaN logits", test_logits_sample_arguments);
  run("sgemm: every SIMD path matches a float64 reference and the others bitwise", test_sgemm_paths);
  run("sgemm: decode-sized products match a float64 reference and the AVX2 path bitwise", test_sgemm_few_rows);
  run("sgemm: k in two packed stages matches the reference, paths agree bitwise", test_sgemm_staged_k);
  run("sgemm: concurrent fanned-out products equal a lone run bitwise", test_sgemm_concurrent_equals_serial);
  run("GPU completions: a spinning waiter completes finished epochs once each, in queue order",
      test_device_completions_progress);
  run("GPU completions: epochs without callbacks complete by word, mark or settle, once each, in order",
      test_device_completions_without_callbacks);
  run("a hurried epoch completes while the completion thread sleeps long", test_device_completions_hurried);
  run("locks: out-of-order acquisition aborts with both lock names",
      [&] { test_lock_order_violation_aborts(argv[0]); });
  std::printf("native: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
