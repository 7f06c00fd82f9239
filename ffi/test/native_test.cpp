// Native tests of the core through the C ABI: handles, shared nodes computed once, random
// cross-stream graphs from many threads compared bitwise with a serial run, stream lifetime
// races, tiny epoch budgets, and the lock-order checker. Built with the core compiled in; run
// under ThreadSanitizer by `zig build test -Dsanitize=thread`.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "lanes.h"
#include "runtime.hpp"
#include "stream.hpp"
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

void run(const char* name, const std::function<void()>& test) {
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
        if (lanes_array_read(out, got.data(), got.size() * 4) != LANES_OK) ++errors;
        else if (std::memcmp(got.data(), expected[g].data(), got.size() * 4) != 0) ++mismatches;
        for (uint64_t h : owned) lanes_array_release(h);
      }
    });
  for (auto& w : workers) w.join();
  EXPECT(errors.load() == 0);
  EXPECT(mismatches.load() == 0);
  for (uint64_t h : shared) lanes_array_release(h);
  for (uint64_t s : stream_handles) OK(lanes_stream_release(s));
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
  OK(lanes_stream_new(&s));
  int64_t shape[2] = {192, 192};
  OK(lanes_array_full(1.0, LANES_FLOAT32, shape, 2, s, &a));
  OK(lanes_array_matmul(a, a, s, &m));
  OK(lanes_eval_async(&m, 1, 0, 0) == LANES_ERR_INVALID_HANDLE ? LANES_OK : LANES_ERR_INTERNAL);
  uint64_t q = 0;
  OK(lanes_completion_queue_new(&q));
  OK(lanes_eval_async(&m, 1, q, 42));
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
void test_plan_replayed_from_threads() {
  int64_t shape[2] = {32, 32};
  uint64_t w = 0, x = 0, p = 0, h = 0, y = 0, plan = 0;
  OK(lanes_array_random(LANES_RANDOM_NORMAL, 3, 0, 0.2, shape, 2, 0, &w));
  OK(lanes_array_placeholder(LANES_FLOAT32, shape, 2, &x));
  OK(lanes_array_matmul(x, w, 0, &p));
  OK(lanes_array_binary_scalar(LANES_OP_MULTIPLY, p, 0.0, 0, /*param*/ 0, 0, &h));
  OK(lanes_array_softmax(h, -1, 0, &y));
  OK(lanes_plan_new(&x, 1, &y, 1, 1, nullptr, nullptr, &plan));
  for (uint64_t t : {x, p, h, y}) OK(lanes_array_release(t));
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
  EXPECT(lanes_eval_async(&b, 1, q, 7) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(lanes_eval(&a, 1) == LANES_ERR_INVALID_ARGUMENT);
  EXPECT(std::strstr(lanes_last_error(), "has no value outside its trace") != nullptr);
  float out[16];
  EXPECT(lanes_array_read(b, out, sizeof out) == LANES_ERR_INVALID_ARGUMENT);
  for (uint64_t h : {x, a, b}) OK(lanes_array_release(h));
  OK(lanes_completion_queue_release(q));
}

// ---- small vectors -----------------------------------------------------------------------------

// Shapes use an inline vector: random operations must match std::vector's.
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
  run("handles: stale, freed, foreign and garbage handles are rejected", test_handles);
  run("graph: a shared node evaluated from 6 threads runs once", test_shared_node_computed_once);
  run("stress: 6 threads x 4 streams, random cross-stream graphs equal serial bitwise", test_stress_cross_stream);
  run("stress: tiny epoch budgets rotate every op", test_tiny_epochs);
  run("streams: dispose races with use", test_stream_dispose_races_with_use);
  run("streams: dispose waits for in-flight work, later work is rejected", test_dispose_waits_for_in_flight_work);
  run("graph: a batch that fails part-way keeps what it encoded (each node runs once)", test_partial_batch_failure_keeps_encoded_nodes);
  run("plans: 8 threads replay one plan on their own streams, equal to serial bitwise", test_plan_replayed_from_threads);
  run("a failed walk releases its claims: later evaluations fail instead of hanging", test_failed_walk_releases_its_claims);
  run("small vector: random operations match std::vector", test_small_vector_matches_std_vector);
  run("locks: out-of-order acquisition aborts with both lock names",
      [&] { test_lock_order_violation_aborts(argv[0]); });
  std::printf("native: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
