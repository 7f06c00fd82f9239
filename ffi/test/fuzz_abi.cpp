// libFuzzer harness for the C ABI: random op sequences over valid, stale, foreign and garbage
// handles, with random shapes, axes and dtypes (valid and not). Every call must return a status
// (never crash, hang or corrupt memory) and every handle the input created must release cleanly,
// leaving the live counts where they started.
//   clang++ -fsanitize=fuzzer,address,undefined ... (see .ci/sanitizers.sh)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "lanes.h"

namespace {

struct Input {
  const uint8_t* data;
  size_t size;
  size_t at = 0;
  bool done() const { return at >= size; }
  uint8_t u8() { return at < size ? data[at++] : 0; }
  int8_t i8() { return static_cast<int8_t>(u8()); }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | u8();
    return v;
  }
};

struct State {
  std::vector<uint64_t> arrays, streams, freed;
  uint64_t queue = 0;
};

// LANES_FUZZ_TRACE=1 prints each step and what it returned (to read a crash or timeout input).
bool tracing() {
  static const bool on = std::getenv("LANES_FUZZ_TRACE") != nullptr;
  return on;
}

uint64_t live(int which) {
  uint64_t v[LANES_STAT_COUNT] = {};
  lanes_stats_read(v, LANES_STAT_COUNT);
  return v[which];
}

// An array handle: mostly one of ours, sometimes stale, foreign (a stream) or garbage.
uint64_t pick(Input& in, State& st) {
  uint8_t how = in.u8();
  if (how < 200 && !st.arrays.empty()) return st.arrays[how % st.arrays.size()];
  if (how < 220 && !st.freed.empty()) return st.freed[how % st.freed.size()];
  if (how < 235 && !st.streams.empty()) return st.streams[how % st.streams.size()];
  return in.u64();
}

uint64_t pick_stream(Input& in, State& st) {
  uint8_t how = in.u8();
  if (how < 128 || st.streams.empty()) return 0;  // default stream
  if (how < 250) return st.streams[how % st.streams.size()];
  return in.u64();
}

int32_t small_shape(Input& in, int64_t* dims) {
  int32_t ndim = in.u8() % 5;
  for (int32_t i = 0; i < ndim; ++i) dims[i] = in.u8() % 7;
  return ndim;
}

void keep(State& st, lanes_status s, uint64_t h) {
  if (tracing()) std::fprintf(stderr, "  -> %d %llu %s\n", s, (unsigned long long)h, s ? lanes_last_error() : "");
  if (s == LANES_OK) st.arrays.push_back(h);
}

// One trace and a few replays: a placeholder (or a picked array posing as an input), one op
// that may read scalar parameter 0, a plan over it, replays with picked arguments and scalars
// (right or wrong in count, shape and kind), then the plan's info and meta read and released.
void trace_and_replay(Input& in, State& st) {
  int64_t dims[8];
  int32_t ndim = small_shape(in, dims);
  uint64_t input = 0, output = 0;
  if (in.u8() & 1) {
    if (lanes_array_placeholder(in.u8() % 6, dims, ndim, &input) != LANES_OK) return;
    st.arrays.push_back(input);
  } else {
    input = pick(in, st);
  }
  int32_t param = in.u8() % 4 == 0 ? -1 : in.u8() % 3;
  lanes_status made = in.u8() & 1 ? lanes_array_binary_scalar(in.u8() % 12, input, 2.0, 0, param, 0, &output)
                                  : lanes_array_rope(input, 2 * (in.u8() % 3), 1, 10000.0, 1.0, 0, param, 0, &output);
  if (made != LANES_OK) return;
  st.arrays.push_back(output);
  uint64_t plan = 0;
  uint8_t donate = in.u8() & 1;
  uint64_t outputs[2] = {output, pick(in, st)};
  if (lanes_plan_new(&input, 1, outputs, 1 + (in.u8() % 4 == 0), in.u8() % 3, in.u8() & 1 ? &donate : nullptr,
                     in.u8() & 1 ? "meta" : nullptr, &plan) != LANES_OK) {
    if (tracing()) std::fprintf(stderr, "  plan_new(in %llu out %llu) -> %s\n", (unsigned long long)input, (unsigned long long)output, lanes_last_error());
    return;
  }
  if (tracing()) std::fprintf(stderr, "  plan_new(in %llu out %llu) ok\n", (unsigned long long)input, (unsigned long long)output);
  for (int replays = 1 + in.u8() % 3; replays > 0; --replays) {
    uint64_t args[2] = {pick(in, st), pick(in, st)};
    double scalars[3] = {in.i8() / 2.0, static_cast<double>(in.i8()), __builtin_nan("")};
    uint64_t results[2] = {0, 0};
    int32_t n_results = 1 + (in.u8() % 4 == 0);
    lanes_status ran = lanes_plan_run(plan, pick_stream(in, st), args, 1 + (in.u8() % 4 == 0), scalars, in.u8() % 4, results, n_results);
    if (tracing()) std::fprintf(stderr, "  run(%llu) -> %d %s\n", (unsigned long long)args[0], ran, ran ? lanes_last_error() : "");
    if (ran == LANES_OK)
      for (int32_t i = 0; i < n_results; ++i) st.arrays.push_back(results[i]);
    // A donated argument's handle may have been given up by the call: then it is stale.
    auto ours = std::find(st.arrays.begin(), st.arrays.end(), args[0]);
    int32_t dtype = 0, rank = 0;
    if (ours != st.arrays.end() && lanes_array_info(args[0], &dtype, &rank, nullptr, 0) != LANES_OK) {
      if (!donate) __builtin_trap();
      st.freed.push_back(args[0]);
      st.arrays.erase(ours);
    }
  }
  int32_t counts[4];
  uint64_t arena = 0;
  lanes_plan_info(plan, &counts[0], &counts[1], &counts[2], &counts[3], &arena);
  char meta[8];
  int32_t length = 0;
  lanes_plan_meta(plan, meta, in.u8() % 9, &length);
  if (lanes_plan_release(plan) != LANES_OK) __builtin_trap();
}

void step(Input& in, State& st) {
  uint64_t out = 0;
  int64_t dims[8];
  int32_t axes[8];
  uint8_t op = in.u8() % 36;
  if (tracing()) std::fprintf(stderr, "step %d (arrays %zu)\n", op, st.arrays.size());
  switch (op) {
    case 0: {  // from data, sometimes with the wrong byte count
      int32_t ndim = small_shape(in, dims);
      int64_t n = 1;
      for (int i = 0; i < ndim; ++i) n *= dims[i];
      lanes_dtype dt = in.u8() % 6;
      size_t bytes = static_cast<size_t>(n) * (dt == LANES_BOOL ? 1 : dt >= LANES_FLOAT16 ? 2 : 4);
      std::vector<uint8_t> buf(bytes + 8);
      for (auto& b : buf) b = in.u8();
      if (dt == LANES_BOOL)
        for (auto& b : buf) b &= 1;
      keep(st, lanes_array_from_data(buf.data(), bytes + (in.u8() % 16 == 0 ? 4 : 0), dt, dims, ndim, &out), out);
      break;
    }
    case 1: {
      int32_t ndim = small_shape(in, dims);
      keep(st, lanes_array_full(in.i8() / 4.0, in.u8() % 6, dims, ndim, pick_stream(in, st), &out), out);
      break;
    }
    case 2:
      keep(st, lanes_array_arange(in.i8(), in.i8(), in.i8() / 8.0, in.u8() % 6, pick_stream(in, st), &out), out);
      break;
    case 3: {
      int32_t ndim = small_shape(in, dims);
      keep(st, lanes_array_random(in.u8() % 3, in.u8(), in.i8(), in.u8() / 16.0, dims, ndim, pick_stream(in, st), &out), out);
      break;
    }
    case 4: keep(st, lanes_array_unary(in.u8() % 16, pick(in, st), pick_stream(in, st), &out), out); break;
    case 5: keep(st, lanes_array_binary(in.u8() % 12, pick(in, st), pick(in, st), pick_stream(in, st), &out), out); break;
    case 6: keep(st, lanes_array_matmul(pick(in, st), pick(in, st), pick_stream(in, st), &out), out); break;
    case 7: {
      int32_t n = static_cast<int32_t>(in.u8() % 5) - 1;
      for (int i = 0; i < 8; ++i) axes[i] = in.i8() % 6;
      keep(st, lanes_array_reduce(in.u8() % 10, pick(in, st), axes, n, in.u8() & 1, pick_stream(in, st), &out), out);
      break;
    }
    case 8: keep(st, lanes_array_softmax(pick(in, st), in.i8() % 6, pick_stream(in, st), &out), out); break;
    case 9: keep(st, lanes_array_astype(pick(in, st), in.u8() % 6, pick_stream(in, st), &out), out); break;
    case 10: {
      int32_t ndim = small_shape(in, dims);
      if (ndim && in.u8() % 3 == 0) dims[in.u8() % ndim] = -1;
      keep(st, lanes_array_reshape(pick(in, st), dims, ndim, pick_stream(in, st), &out), out);
      break;
    }
    case 11: {
      int32_t n = static_cast<int32_t>(in.u8() % 6) - 1;
      for (int i = 0; i < 8; ++i) axes[i] = in.i8() % 6;
      keep(st, lanes_array_transpose(pick(in, st), axes, n, pick_stream(in, st), &out), out);
      break;
    }
    case 12: {
      int32_t ndim = small_shape(in, dims);
      keep(st, lanes_array_broadcast_to(pick(in, st), dims, ndim, pick_stream(in, st), &out), out);
      break;
    }
    case 13: {
      int32_t n = in.u8() % 4;
      for (int i = 0; i < 8; ++i) axes[i] = in.i8() % 6;
      if (in.u8() & 1) keep(st, lanes_array_expand_dims(pick(in, st), axes, n, pick_stream(in, st), &out), out);
      else keep(st, lanes_array_squeeze(pick(in, st), axes, n - 1, pick_stream(in, st), &out), out);
      break;
    }
    case 14: {
      int32_t n = in.u8() % 5;
      int64_t a[8], b[8], c[8];
      for (int i = 0; i < 8; ++i) {
        a[i] = in.i8() % 9;
        b[i] = in.i8() % 9;
        c[i] = in.i8() % 4;
      }
      keep(st, lanes_array_slice(pick(in, st), a, b, in.u8() & 1 ? c : nullptr, n, pick_stream(in, st), &out), out);
      break;
    }
    case 15: {
      uint64_t hs[3] = {pick(in, st), pick(in, st), pick(in, st)};
      keep(st, lanes_array_concatenate(hs, in.u8() % 4, in.i8() % 5, in.u8() & 1, pick_stream(in, st), &out), out);
      break;
    }
    case 16: keep(st, lanes_array_take(pick(in, st), pick(in, st), in.i8() % 5, pick_stream(in, st), &out), out); break;
    case 17: keep(st, lanes_array_where(pick(in, st), pick(in, st), pick(in, st), pick_stream(in, st), &out), out); break;
    case 18:
      if (in.u8() & 1) keep(st, lanes_array_rms_norm(pick(in, st), in.u8() & 1 ? pick(in, st) : 0, in.u8() / 64.0, pick_stream(in, st), &out), out);
      else keep(st, lanes_array_layer_norm(pick(in, st), in.u8() & 1 ? pick(in, st) : 0, in.u8() & 1 ? pick(in, st) : 0, in.u8() / 64.0, pick_stream(in, st), &out), out);
      break;
    case 19:
      keep(st, lanes_array_attention(pick(in, st), pick(in, st), pick(in, st), in.u8() & 1 ? 0.5 : __builtin_nan(""), in.u8() & 1, in.i8(), -1, pick_stream(in, st), &out), out);
      break;
    case 20:
      keep(st, lanes_array_rope(pick(in, st), in.i8() % 10, in.u8() & 1, in.u8() * 100.0, 1.0, in.i8(), -1, pick_stream(in, st), &out), out);
      break;
    case 21: {  // eval one to three handles
      uint64_t hs[3] = {pick(in, st), pick(in, st), pick(in, st)};
      lanes_eval(hs, 1 + in.u8() % 3);
      break;
    }
    case 22: {
      if (!st.queue) lanes_completion_queue_new(&st.queue);
      uint64_t h = pick(in, st);
      int32_t done = 0;
      lanes_eval_async(&h, 1, st.queue, in.u8(), in.u8() % 2 ? 0 : in.u8() * 5u, in.u8() % 8 ? &done : nullptr);
      uint64_t tokens[4];
      int32_t statuses[4], count = 0;
      lanes_completion_queue_drain(st.queue, tokens, statuses, 4, &count);
      break;
    }
    case 23: {  // read, sized from the array's own info (or deliberately wrong)
      uint64_t h = pick(in, st);
      int32_t dt = 0, nd = 0;
      int64_t shape[32];
      if (lanes_array_info(h, &dt, &nd, shape, 32) != LANES_OK) break;
      if (nd > 32) __builtin_trap();  // the core caps dimensions at 32
      int64_t n = 1;
      for (int i = 0; i < nd; ++i) n *= shape[i];
      size_t bytes = static_cast<size_t>(n) * (dt == LANES_BOOL ? 1 : dt >= LANES_FLOAT16 ? 2 : 4);
      if (bytes > (1u << 22)) break;
      std::vector<uint8_t> buf(bytes + 4);
      lanes_status r = lanes_array_read(h, buf.data(), bytes + (in.u8() % 8 == 0 ? 4 : 0));
      if (tracing()) std::fprintf(stderr, "  read %llu -> %d %s\n", (unsigned long long)h, r, r ? lanes_last_error() : "");
      break;
    }
    case 24: {  // retain + release (balanced) or release a foreign/stale handle
      uint64_t h = pick(in, st);
      if (lanes_array_retain(h) == LANES_OK) lanes_array_release(h);
      break;
    }
    case 25:  // release one of ours: it becomes stale
      if (!st.arrays.empty()) {
        size_t i = in.u8() % st.arrays.size();
        if (lanes_array_release(st.arrays[i]) != LANES_OK) __builtin_trap();
        st.freed.push_back(st.arrays[i]);
        st.arrays.erase(st.arrays.begin() + static_cast<long>(i));
      }
      break;
    case 26:
      if (st.streams.size() < 2) {
        // Device 0 mostly; sometimes a device that may not exist (it must fail cleanly).
        int32_t device = in.u8() % 8 == 0 ? in.i8() : 0;
        int32_t count = 0;
        if (lanes_device_count(&count) != LANES_OK || count < 1) __builtin_trap();
        lanes_status s = device == 0 ? lanes_stream_new(&out) : lanes_stream_new_on(device, &out);
        if (s == LANES_OK) st.streams.push_back(out);
        else if (device >= 0 && device < count) __builtin_trap();
      }
      break;
    case 27:
      if (!st.streams.empty() && in.u8() % 4 == 0) {  // dispose a stream with work maybe in flight
        if (lanes_stream_release(st.streams.back()) != LANES_OK) __builtin_trap();
        st.freed.push_back(st.streams.back());
        st.streams.pop_back();
      }
      break;
    case 28: lanes_stream_synchronize(pick_stream(in, st)); break;
    case 29: {  // quantized blocks [rows, 32 * blocks], sometimes with the wrong byte count
      lanes_dtype dt = (lanes_dtype[]){LANES_Q4_0, LANES_Q4_1, LANES_Q8_0}[in.u8() % 3];
      int64_t block_bytes = dt == LANES_Q4_0 ? 18 : dt == LANES_Q4_1 ? 20 : 34;
      dims[0] = in.u8() % 5;
      dims[1] = 32 * (in.u8() % 4) + (in.u8() % 8 == 0 ? 7 : 0);
      size_t bytes = static_cast<size_t>(dims[0] * (dims[1] / 32) * block_bytes);
      std::vector<uint8_t> buf(bytes + 8);
      for (auto& b : buf) b = in.u8();
      keep(st, lanes_array_from_data(buf.data(), bytes + (in.u8() % 16 == 0 ? 2 : 0), dt, dims, 2, &out), out);
      break;
    }
    case 30: keep(st, lanes_array_quantized_matmul(pick(in, st), pick(in, st), pick_stream(in, st), &out), out); break;
    case 31:
      keep(st, lanes_array_binary_scalar(in.u8() % 12, pick(in, st), in.i8() / 4.0, in.u8() & 1, -1, pick_stream(in, st), &out), out);
      break;
    case 32:
      keep(st, lanes_array_slice_update(pick(in, st), pick(in, st), in.i8() % 5, in.i8(), -1, pick_stream(in, st), &out), out);
      break;
    case 33: {  // a placeholder, kept: other ops build on it and evaluations of it must fail cleanly
      int32_t ndim = small_shape(in, dims);
      keep(st, lanes_array_placeholder(in.u8() % 9, dims, ndim, &out), out);
      break;
    }
    case 34: trace_and_replay(in, st); break;
    case 35: {  // sampling: raw bytes as logits (NaN and infinities included), any settings
      float logits[16];
      const int64_t n = in.u8() % 17;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = static_cast<uint32_t>(in.u64());
        std::memcpy(&logits[i], &bits, sizeof bits);
      }
      int64_t token = -1, kept = -1;
      lanes_status s = lanes_logits_sample(in.u8() % 8 ? logits : nullptr, n, in.i8() / 16.0, in.i8(), in.u8() / 200.0, in.u8() / 250.0, &token, &kept);
      if (s == LANES_OK && !(token >= 0 && token < n && kept >= 0 && kept <= n)) __builtin_trap();
      break;
    }
    default: lanes_array_release(in.u64()); break;  // garbage
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool configured = [] {
    lanes_set_memory_limit(uint64_t(256) << 20);  // huge shapes fail as OOM, never as a huge malloc
    return true;
  }();
  (void)configured;
  uint64_t arrays_before = live(LANES_STAT_LIVE_ARRAYS), streams_before = live(LANES_STAT_LIVE_STREAMS);
  Input in{data, size};
  State st;
  for (int steps = 0; !in.done() && steps < 64; ++steps) step(in, st);
  for (uint64_t h : st.arrays)
    if (lanes_array_release(h) != LANES_OK) __builtin_trap();
  for (uint64_t s : st.streams)
    if (lanes_stream_release(s) != LANES_OK) __builtin_trap();
  if (st.queue) lanes_completion_queue_release(st.queue);
  // Every handle this input made is gone again.
  if (live(LANES_STAT_LIVE_ARRAYS) != arrays_before || live(LANES_STAT_LIVE_STREAMS) != streams_before) __builtin_trap();
  return 0;
}
