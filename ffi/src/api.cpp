// The C ABI: handle resolution, argument checks, and abi_guard around every entry point.
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "eval.hpp"
#include "graph.hpp"
#include "lanes.h"
#include "config.hpp"
#include "runtime.hpp"
#include "sampling.hpp"
#include "status.hpp"

using namespace lanes;

namespace {

Shape shape_from(const int64_t* dims, int32_t ndim, const char* op) {
  if (ndim < 0 || ndim > 32) throw_error(LANES_ERR_SHAPE, std::string(op) + ": ndim " + std::to_string(ndim) + " is out of range [0, 32]");
  if (ndim > 0 && !dims) throw_error(LANES_ERR_INVALID_ARGUMENT, std::string(op) + ": shape pointer is null");
  Shape s(dims, dims + ndim);
  checked_numel(s, op);
  return s;
}

template <class T>
T* require(T* p, const char* what) {
  if (!p) throw_error(LANES_ERR_INVALID_ARGUMENT, std::string(what) + " is null");
  return p;
}

NodePtr array_at(uint64_t handle) { return running_runtime().arrays.get(handle); }

// A Bun Worker asks for its handles to die with its thread, so terminating it mid-eval leaks
// nothing. The handles it creates record it as their owner (no per-call bookkeeping); the few
// it takes over from other threads (retain) are counted here.
struct ThreadHandles {
  bool tracking = false;
  std::unordered_map<uint64_t, uint32_t> retained;

  void retain(uint64_t h) {
    if (tracking) ++retained[h];
  }
  // Before a release by this thread: which of its references goes.
  template <class T>
  void releasing(HandleTable<T>& table, uint64_t h) {
    if (!tracking) return;
    auto it = retained.find(h);
    if (it != retained.end()) {
      if (--it->second == 0) retained.erase(it);
      return;
    }
    if (table.owner(h) == this_thread_token()) table.disown(h);
  }

  ~ThreadHandles() {
    if (!tracking) return;
    try {
      Runtime& rt = runtime();
      uint32_t me = this_thread_token();
      for (auto& [h, n] : retained)
        for (uint32_t i = 0; i < n; ++i) release_any(rt, h);
      for (uint64_t h : rt.arrays.owned_by(me)) rt.arrays.release(h);
      for (uint64_t h : rt.queues.owned_by(me)) rt.queues.release(h);
      for (uint64_t h : rt.plans.owned_by(me)) rt.plans.release(h);
      for (uint64_t h : rt.streams.owned_by(me))
        if (auto last = rt.streams.release(h)) last->shutdown();
    } catch (...) {
      // Thread exit must not throw; a handle freed meanwhile is simply gone.
    }
  }

  static void release_any(Runtime& rt, uint64_t h) {
    try {
      rt.arrays.release(h);
      return;
    } catch (const Error&) {
    }
    try {
      rt.queues.release(h);
      return;
    } catch (const Error&) {
    }
    try {
      rt.plans.release(h);
      return;
    } catch (const Error&) {
    }
    if (auto last = rt.streams.release(h)) last->shutdown();
  }
};
thread_local ThreadHandles t_handles;

uint32_t owner_token() { return t_handles.tracking ? this_thread_token() : 0; }

// A completion-queue spin holds its thread; longer waits belong to the fd or to wait().
constexpr uint32_t kMaxRunMicros = 1000;

void publish(NodePtr node, uint64_t* out) { *out = running_runtime().arrays.insert(std::move(node), owner_token()); }

StreamPtr stream_at(uint64_t handle) { return running_runtime().stream_or_default(handle); }

std::vector<NodePtr> arrays_at(const uint64_t* handles, int32_t count) {
  if (count < 0) throw_error(LANES_ERR_INVALID_ARGUMENT, "negative array count");
  if (count > 0) require(handles, "arrays");
  std::vector<NodePtr> nodes;
  nodes.reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) nodes.push_back(array_at(handles[i]));
  return nodes;
}

Shape vec64(const int64_t* p, int32_t n, const char* what) {
  if (n < 0 || n > 32) throw_error(LANES_ERR_SHAPE, std::string(what) + ": count " + std::to_string(n) + " is out of range [0, 32]");
  if (n > 0) require(p, what);
  return Shape(p, p + n);
}
std::vector<int> vec32(const int32_t* p, int32_t n, const char* what) {
  if (n < 0 || n > 32) throw_error(LANES_ERR_SHAPE, std::string(what) + ": count " + std::to_string(n) + " is out of range [0, 32]");
  if (n > 0) require(p, what);
  return std::vector<int>(p, p + n);
}
// A scalar's binding to a compiled plan's parameter: -1 (fixed) or a parameter index.
int plan_param(int32_t index) {
  if (index < -1 || index >= kMaxPlanScalars)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "scalar parameter " + std::to_string(index) + " is out of range [-1, " +
                                                std::to_string(kMaxPlanScalars - 1) + "]");
  return index;
}

NodePtr optional_array(uint64_t handle) { return handle ? array_at(handle) : nullptr; }

// Scheduled and already reached on its timeline: nothing to wait for.
bool completed_now(const Node& n) {
  if (state_of(n.state.load(std::memory_order_acquire)) != NodeState::Scheduled) return false;
  return !n.producer || n.producer->timeline()->completed() >= n.value;
}

}  // namespace

extern "C" {

lanes_status lanes_abi_version_read(uint32_t* out_version) {
  return abi_guard([&] { *require(out_version, "abi_version_read: out") = LANES_ABI_VERSION; });
}

const char* lanes_last_error(void) { return last_error_message(); }
lanes_status lanes_last_error_code(void) { return last_error_code(); }

const char* lanes_backend_name(void) {
  const char* name = "unavailable";
  abi_guard([&] { name = running_runtime().backend().name(); });
  return name;
}

lanes_status lanes_stats_read(uint64_t* out, int32_t count) {
  return abi_guard([&] {
    require(out, "stats: out");
    Runtime& rt = running_runtime();
    MemoryStats mem = rt.allocator().stats();
    uint64_t values[LANES_STAT_COUNT] = {
        rt.counters.kernels_executed.load(), rt.counters.epochs_committed.load(), mem.active, mem.peak, mem.cached,
        rt.arrays.live(), rt.streams.live()};
    for (int32_t i = 0; i < count && i < LANES_STAT_COUNT; ++i) out[i] = values[i];
  });
}

lanes_status lanes_stats_reset_peak(void) {
  return abi_guard([&] { running_runtime().allocator().reset_peak(); });
}

lanes_status lanes_set_memory_limit(uint64_t bytes) {
  return abi_guard([&] { running_runtime().allocator().set_limit(bytes); });
}

lanes_status lanes_clear_cache(void) {
  return abi_guard([&] { running_runtime().allocator().trim(); });
}

lanes_status lanes_set_epoch_budget(uint32_t max_ops, uint64_t max_bytes) {
  return abi_guard([&] {
    running_runtime();  // started first: starting sets the backend's default budget
    set_epoch_budget(EpochBudget{max_ops, max_bytes});
  });
}

// ---- streams ----

lanes_status lanes_stream_new(uint64_t* out_stream) {
  return abi_guard([&] {
    require(out_stream, "stream_new: out");
    *out_stream = running_runtime().streams.insert(running_runtime().new_stream(), owner_token());
  });
}

lanes_status lanes_stream_new_on(int32_t device, uint64_t* out_stream) {
  return abi_guard([&] {
    require(out_stream, "stream_new_on: out");
    *out_stream = running_runtime().streams.insert(running_runtime().new_stream(device), owner_token());
  });
}

lanes_status lanes_device_count(int32_t* out_count) {
  return abi_guard([&] { *require(out_count, "device_count: out") = running_runtime().backend().device_count(); });
}

lanes_status lanes_stream_default(uint64_t* out_stream) {
  return abi_guard([&] { *require(out_stream, "stream_default: out") = running_runtime().default_stream_handle(); });
}

lanes_status lanes_stream_retain(uint64_t stream) {
  return abi_guard([&] {
    if (stream == running_runtime().default_stream_handle()) return;
    running_runtime().streams.retain(stream);
    t_handles.retain(stream);
  });
}

lanes_status lanes_stream_release(uint64_t stream) {
  return abi_guard([&] {
    if (stream == running_runtime().default_stream_handle()) return;  // lives for the process
    t_handles.releasing(running_runtime().streams, stream);
    std::shared_ptr<Stream> last = running_runtime().streams.release(stream);
    if (last) last->shutdown();  // outside the table lock: waits for in-flight work
  });
}

lanes_status lanes_thread_track_handles(int32_t on) {
  return abi_guard([&] { t_handles.tracking = on != 0; });
}

lanes_status lanes_shutdown(void) {
  return abi_guard([&] { shutdown_runtime(); });
}

namespace {
void require_fault_injection() {
  if (!config().fault_injection)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "fault injection is disabled (set LANES_FAULT_INJECTION=1 before start)");
}
}  // namespace

lanes_status lanes_debug_fail_next_encode(uint64_t stream, uint32_t after) {
  return abi_guard([&] {
    require_fault_injection();
    stream_at(stream)->inject_encode_failure(after);
  });
}

lanes_status lanes_debug_fail_next_epochs(uint64_t stream, uint32_t count) {
  return abi_guard([&] {
    if (!config().fault_injection)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "fault injection is disabled (set LANES_FAULT_INJECTION=1 before start)");
    stream_at(stream)->inject_failures(count);
  });
}

lanes_status lanes_debug_pause_stream(uint64_t stream, int32_t paused) {
  return abi_guard([&] {
    require_fault_injection();
    stream_at(stream)->debug_pause(paused != 0);
  });
}

lanes_status lanes_stream_synchronize(uint64_t stream) {
  return abi_guard([&] { stream_at(stream)->synchronize(); });
}

// ---- creation ----

lanes_status lanes_array_from_data(const void* data, uint64_t nbytes, lanes_dtype dtype, const int64_t* shape,
                                   int32_t ndim, uint64_t* out) {
  return abi_guard([&] {
    require(out, "array: out");
    publish(make_from_data(data, nbytes, dtype_from_abi(dtype, "array"), shape_from(shape, ndim, "array")), out);
  });
}

lanes_status lanes_array_full(double value, lanes_dtype dtype, const int64_t* shape, int32_t ndim, uint64_t stream,
                              uint64_t* out) {
  return abi_guard([&] {
    require(out, "full: out");
    publish(make_full(value, dtype_from_abi(dtype, "full"), shape_from(shape, ndim, "full"),
                      stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_arange(double start, double stop, double step, lanes_dtype dtype, uint64_t stream,
                                uint64_t* out) {
  return abi_guard([&] {
    require(out, "arange: out");
    publish(make_arange(start, stop, step, dtype_from_abi(dtype, "arange"), stream_at(stream)), out);
  });
}

lanes_status lanes_array_random(lanes_random_kind kind, uint64_t seed, double a, double b, const int64_t* shape,
                                int32_t ndim, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "random: out");
    publish(make_random(kind, seed, a, b, shape_from(shape, ndim, "random"), stream_at(stream)), out);
  });
}

// ---- ops ----

lanes_status lanes_array_unary(lanes_unary_op op, uint64_t a, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "unary: out");
    publish(make_unary(op, array_at(a), stream_at(stream)), out);
  });
}

lanes_status lanes_array_binary(lanes_binary_op op, uint64_t a, uint64_t b, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "binary: out");
    publish(make_binary(op, array_at(a), array_at(b), stream_at(stream)), out);
  });
}

lanes_status lanes_array_binary_scalar(lanes_binary_op op, uint64_t a, double scalar, int32_t scalar_first,
                                       int32_t scalar_param, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "binary: out");
    publish(make_binary_scalar(op, array_at(a), scalar, scalar_first != 0, plan_param(scalar_param), stream_at(stream)), out);
  });
}

lanes_status lanes_array_quantized_matmul(uint64_t x, uint64_t w, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "quantizedMatmul: out");
    publish(make_quantized_matmul(array_at(x), array_at(w), stream_at(stream)), out);
  });
}

lanes_status lanes_array_slice_update(uint64_t target, uint64_t update, int32_t axis, int64_t offset, int32_t offset_param,
                                      uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "sliceUpdate: out");
    publish(make_slice_update(array_at(target), array_at(update), axis, offset, plan_param(offset_param), stream_at(stream)), out);
  });
}

lanes_status lanes_array_matmul(uint64_t a, uint64_t b, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "matmul: out");
    publish(make_matmul(array_at(a), array_at(b), stream_at(stream)), out);
  });
}

lanes_status lanes_array_reduce(lanes_reduce_op op, uint64_t a, const int32_t* axes, int32_t naxes, int32_t keepdims,
                                uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "reduce: out");
    if (naxes > 32) throw_error(LANES_ERR_SHAPE, "reduce: too many axes");
    if (naxes > 0) require(axes, "reduce: axes");
    std::vector<int> ax;
    for (int32_t i = 0; i < naxes; ++i) ax.push_back(axes[i]);
    publish(make_reduce(op, array_at(a), std::move(ax), naxes < 0, keepdims != 0, stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_softmax(uint64_t a, int32_t axis, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "softmax: out");
    publish(make_softmax(array_at(a), axis, stream_at(stream)), out);
  });
}

lanes_status lanes_array_where(uint64_t cond, uint64_t a, uint64_t b, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "where: out");
    publish(make_where(array_at(cond), array_at(a), array_at(b), stream_at(stream)), out);
  });
}

lanes_status lanes_array_reshape(uint64_t a, const int64_t* shape, int32_t ndim, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "reshape: out");
    publish(make_reshape(array_at(a), vec64(shape, ndim, "reshape: shape"), stream_at(stream)), out);
  });
}

lanes_status lanes_array_transpose(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "transpose: out");
    std::vector<int> ax = naxes < 0 ? std::vector<int>{} : vec32(axes, naxes, "transpose: axes");
    publish(make_transpose(array_at(a), std::move(ax), naxes < 0, stream_at(stream)), out);
  });
}

lanes_status lanes_array_broadcast_to(uint64_t a, const int64_t* shape, int32_t ndim, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "broadcastTo: out");
    publish(make_broadcast_to(array_at(a), shape_from(shape, ndim, "broadcastTo"), stream_at(stream)), out);
  });
}

lanes_status lanes_array_expand_dims(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "expandDims: out");
    publish(make_expand_dims(array_at(a), vec32(axes, naxes, "expandDims: axes"), stream_at(stream)), out);
  });
}

lanes_status lanes_array_squeeze(uint64_t a, const int32_t* axes, int32_t naxes, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "squeeze: out");
    std::vector<int> ax = naxes < 0 ? std::vector<int>{} : vec32(axes, naxes, "squeeze: axes");
    publish(make_squeeze(array_at(a), std::move(ax), naxes < 0, stream_at(stream)), out);
  });
}

lanes_status lanes_array_slice(uint64_t a, const int64_t* starts, const int64_t* stops, const int64_t* steps, int32_t count,
                               uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "slice: out");
    Shape st = steps ? vec64(steps, count, "slice: steps") : Shape{};
    publish(make_slice(array_at(a), vec64(starts, count, "slice: starts"), vec64(stops, count, "slice: stops"), st,
                       stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_concatenate(const uint64_t* arrays, int32_t count, int32_t axis, int32_t stack, uint64_t stream,
                                     uint64_t* out) {
  return abi_guard([&] {
    require(out, "concatenate: out");
    std::vector<NodePtr> nodes = arrays_at(arrays, count);
    StreamPtr s = stream_at(stream);
    publish(stack ? make_stack(std::move(nodes), axis, s) : make_concatenate(std::move(nodes), axis, s), out);
  });
}

lanes_status lanes_array_take(uint64_t a, uint64_t indices, int32_t axis, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "take: out");
    publish(make_take(array_at(a), array_at(indices), axis, stream_at(stream)), out);
  });
}

lanes_status lanes_array_rms_norm(uint64_t x, uint64_t weight, double eps, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "rmsNorm: out");
    publish(make_rms_norm(array_at(x), optional_array(weight), eps, stream_at(stream)), out);
  });
}

lanes_status lanes_array_layer_norm(uint64_t x, uint64_t weight, uint64_t bias, double eps, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "layerNorm: out");
    publish(make_layer_norm(array_at(x), optional_array(weight), optional_array(bias), eps, stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_attention(uint64_t q, uint64_t k, uint64_t v, double scale, int32_t causal, int64_t key_length,
                                   int32_t key_length_param, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "scaledDotProductAttention: out");
    publish(make_attention(array_at(q), array_at(k), array_at(v), scale, causal != 0, key_length, plan_param(key_length_param),
                           stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_rope(uint64_t x, int32_t dims, int32_t traditional, double base, double scale, int64_t offset,
                              int32_t offset_param, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "rope: out");
    publish(make_rope(array_at(x), dims, traditional != 0, base, scale, offset, plan_param(offset_param), stream_at(stream)), out);
  });
}

lanes_status lanes_array_rope_rows(uint64_t x, int32_t dims, int32_t traditional, double base, double scale, uint64_t offsets,
                                   uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "rope: out");
    publish(make_rope_rows(array_at(x), dims, traditional != 0, base, scale, array_at(offsets), stream_at(stream)), out);
  });
}

lanes_status lanes_array_slice_update_rows(uint64_t target, uint64_t update, int32_t axis, uint64_t offsets, uint64_t stream,
                                           uint64_t* out) {
  return abi_guard([&] {
    require(out, "sliceUpdate: out");
    publish(make_slice_update_rows(array_at(target), array_at(update), axis, array_at(offsets), stream_at(stream)), out);
  });
}

lanes_status lanes_array_attention_rows(uint64_t q, uint64_t k, uint64_t v, double scale, int32_t causal, uint64_t key_lengths,
                                        uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "scaledDotProductAttention: out");
    publish(make_attention_rows(array_at(q), array_at(k), array_at(v), scale, causal != 0, array_at(key_lengths), stream_at(stream)),
            out);
  });
}

lanes_status lanes_array_astype(uint64_t a, lanes_dtype dtype, uint64_t stream, uint64_t* out) {
  return abi_guard([&] {
    require(out, "astype: out");
    publish(make_astype(array_at(a), dtype_from_abi(dtype, "astype"), stream_at(stream)), out);
  });
}

// ---- inspection and lifetime ----

lanes_status lanes_array_info(uint64_t a, int32_t* out_dtype, int32_t* out_ndim, int64_t* out_shape,
                              int32_t shape_capacity) {
  return abi_guard([&] {
    NodePtr n = array_at(a);
    if (out_dtype) *out_dtype = static_cast<int32_t>(n->dtype);
    if (out_ndim) *out_ndim = static_cast<int32_t>(n->shape.size());
    if (out_shape)
      for (int32_t i = 0; i < shape_capacity && i < static_cast<int32_t>(n->shape.size()); ++i) out_shape[i] = n->shape[i];
  });
}

lanes_status lanes_array_read(uint64_t a, void* dst, uint64_t nbytes) {
  return abi_guard([&] {
    NodePtr n = array_at(a);
    if (nbytes != n->nbytes())
      throw_error(LANES_ERR_INVALID_ARGUMENT, "read: destination has " + std::to_string(nbytes) + " bytes, array " +
                                                  shape_str(n->shape) + " needs " + std::to_string(n->nbytes()));
    if (nbytes) require(dst, "read: destination");
    // A strided view is read through a contiguous copy.
    if (!n->contiguous()) n = make_astype(n, n->dtype, n->stream ? n->stream : running_runtime().stream_or_default(0));
    if (nbytes && n->stream && !completed_now(*n))
      if (std::shared_ptr<void> staging = running_runtime().backend().read_staging(nbytes)) {
        NodePtr read = make_download(n, staging, n->stream);
        schedule({read}, Start::OnDemand);
        bool copied = false;
        try {
          wait_ready(*read);
          copied = true;
        } catch (const Error&) {
          // The array's own failure is reported below, with its own name; a read that failed
          // by itself (its stream disposed meanwhile) falls back to the plain copy.
        }
        if (copied) {
          std::memcpy(dst, staging.get(), nbytes);
          return;
        }
      }
    schedule({n}, Start::OnDemand);
    wait_ready(*n);
    const char* src = static_cast<const char*>(n->buffer->data()) + n->offset() * static_cast<int64_t>(dtype_size(n->dtype));
    if (nbytes) running_runtime().backend().download(dst, src, nbytes);
  });
}

lanes_status lanes_array_retain(uint64_t a) {
  return abi_guard([&] {
    running_runtime().arrays.retain(a);
    t_handles.retain(a);
  });
}

lanes_status lanes_array_release(uint64_t a) {
  return abi_guard([&] {
    t_handles.releasing(running_runtime().arrays, a);
    running_runtime().arrays.release(a);
  });
}

// ---- evaluation ----

lanes_status lanes_eval(const uint64_t* arrays, int32_t count) {
  return abi_guard([&] {
    std::vector<NodePtr> nodes = arrays_at(arrays, count);
    schedule(nodes, Start::OnDemand);
    for (const NodePtr& n : nodes) wait_ready(*n);
  });
}

lanes_status lanes_eval_async(const uint64_t* arrays, int32_t count, uint64_t queue, uint64_t token, uint32_t run_us,
                              int32_t* out_ran_us) {
  return abi_guard([&] {
    *require(out_ran_us, "eval_async: out") = -1;
    if (run_us > kMaxRunMicros)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "eval_async: " + std::to_string(run_us) + " us is over the " +
                                                  std::to_string(kMaxRunMicros) + " us a caller may run");
    std::shared_ptr<CompletionQueue> q = running_runtime().queues.get(queue);
    std::vector<NodePtr> nodes = arrays_at(arrays, count);
    schedule(nodes, run_us ? Start::OnDemand : Start::Now);
    if (run_us) {
      const auto start = std::chrono::steady_clock::now();
      if (run_until(nodes, start + std::chrono::microseconds(run_us))) {
        auto ran = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
        *out_ran_us = static_cast<int32_t>(std::min<int64_t>(ran, INT32_MAX));
        return;
      }
    }
    when_ready(nodes, [q, token](lanes_status status) { q->post(token, status); });
  });
}

// ---- compiled plans ----

lanes_status lanes_array_placeholder(lanes_dtype dtype, const int64_t* shape, int32_t ndim, uint64_t* out) {
  return abi_guard([&] {
    require(out, "placeholder: out");
    publish(make_placeholder(dtype_from_abi(dtype, "placeholder"), shape_from(shape, ndim, "placeholder")), out);
  });
}

lanes_status lanes_plan_new(const uint64_t* inputs, int32_t n_inputs, const uint64_t* outputs, int32_t n_outputs, int32_t scalars,
                            const uint8_t* donate, const char* meta, uint64_t* out_plan) {
  return abi_guard([&] {
    require(out_plan, "compile: out");
    std::vector<NodePtr> in = arrays_at(inputs, n_inputs), out = arrays_at(outputs, n_outputs);
    std::vector<bool> donated(in.size(), false);
    if (donate)
      for (size_t i = 0; i < in.size(); ++i) donated[i] = donate[i] != 0;
    std::shared_ptr<Plan> plan = Plan::build(in, out, scalars, donated);
    if (meta) plan->meta = meta;
    *out_plan = running_runtime().plans.insert(std::move(plan), owner_token());
  });
}

lanes_status lanes_plan_retain(uint64_t plan) {
  return abi_guard([&] {
    running_runtime().plans.retain(plan);
    t_handles.retain(plan);
  });
}

lanes_status lanes_plan_release(uint64_t plan) {
  return abi_guard([&] {
    t_handles.releasing(running_runtime().plans, plan);
    running_runtime().plans.release(plan);
  });
}

lanes_status lanes_plan_run(uint64_t plan, uint64_t stream, const uint64_t* inputs, int32_t n_inputs, const double* scalars,
                            int32_t n_scalars, uint64_t* out_outputs, int32_t n_outputs) {
  return abi_guard([&] {
    Runtime& rt = running_runtime();
    std::shared_ptr<Plan> p = rt.plans.get(plan);
    std::vector<NodePtr> in = arrays_at(inputs, n_inputs);
    // The caller gives donated inputs up: their handles go first, so this call may hold the
    // last reference and write them in place.
    if (static_cast<size_t>(n_inputs) == p->input_count())
      for (int32_t i = 0; i < n_inputs; ++i)
        if (p->donates(static_cast<size_t>(i))) {
          t_handles.releasing(rt.arrays, inputs[i]);
          rt.arrays.release(inputs[i]);
        }
    if (n_scalars < 0) throw_error(LANES_ERR_INVALID_ARGUMENT, "compiled function: negative scalar count");
    if (n_scalars > 0) require(scalars, "compiled function: scalars");
    if (n_outputs != static_cast<int32_t>(p->output_count()))
      throw_error(LANES_ERR_INVALID_ARGUMENT, "compiled function: room for " + std::to_string(n_outputs) + " outputs, the plan has " +
                                                  std::to_string(p->output_count()));
    require(out_outputs, "compiled function: outputs");
    std::vector<NodePtr> results = p->run(stream_at(stream), in, std::vector<double>(scalars, scalars + n_scalars));
    for (size_t i = 0; i < results.size(); ++i) publish(std::move(results[i]), &out_outputs[i]);
  });
}

lanes_status lanes_plan_info(uint64_t plan, int32_t* out_inputs, int32_t* out_outputs, int32_t* out_scalars, int32_t* out_steps,
                             uint64_t* out_arena_bytes) {
  return abi_guard([&] {
    std::shared_ptr<Plan> p = running_runtime().plans.get(plan);
    if (out_inputs) *out_inputs = static_cast<int32_t>(p->input_count());
    if (out_outputs) *out_outputs = static_cast<int32_t>(p->output_count());
    if (out_scalars) *out_scalars = p->scalar_count();
    if (out_steps) *out_steps = static_cast<int32_t>(p->step_count());
    if (out_arena_bytes) *out_arena_bytes = p->arena_bytes();
  });
}

lanes_status lanes_plan_meta(uint64_t plan, char* out, int32_t capacity, int32_t* out_length) {
  return abi_guard([&] {
    std::shared_ptr<Plan> p = running_runtime().plans.get(plan);
    *require(out_length, "plan meta: out_length") = static_cast<int32_t>(p->meta.size());
    if (capacity > 0) {
      require(out, "plan meta: out");
      std::memcpy(out, p->meta.data(), std::min<size_t>(p->meta.size(), static_cast<size_t>(capacity)));
    }
  });
}

// ---- sampling ----

lanes_status lanes_logits_sample(const float* logits, int64_t n, double temperature, int64_t top_k, double top_p, double u,
                                 int64_t* out_token, int64_t* out_kept) {
  return abi_guard([&] {
    require(out_token, "logits_sample: out_token");
    require(out_kept, "logits_sample: out_kept");
    if (n < 1 || n > INT32_MAX)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "logits_sample: " + std::to_string(n) + " logits, not in [1, 2^31 - 1] (token ids are int32)");
    require(logits, "logits_sample: logits");
    if (!(temperature > 0 && std::isfinite(temperature)))
      throw_error(LANES_ERR_INVALID_ARGUMENT, "logits_sample: temperature must be above 0 and finite, got " + std::to_string(temperature));
    if (top_k < 0) throw_error(LANES_ERR_INVALID_ARGUMENT, "logits_sample: top_k must be 0 (all) or positive, got " + std::to_string(top_k));
    if (!(top_p > 0 && top_p <= 1)) throw_error(LANES_ERR_INVALID_ARGUMENT, "logits_sample: top_p must be in (0, 1], got " + std::to_string(top_p));
    if (!(u >= 0 && u < 1)) throw_error(LANES_ERR_INVALID_ARGUMENT, "logits_sample: u must be in [0, 1), got " + std::to_string(u));
    SampledToken s = sample_logits({logits, static_cast<size_t>(n)}, temperature, top_k, top_p, u);
    *out_token = s.token;
    *out_kept = s.kept;
  });
}

// ---- completion queues ----

lanes_status lanes_completion_queue_new(uint64_t* out_queue) {
  return abi_guard([&] {
    *require(out_queue, "completion_queue_new: out") =
        running_runtime().queues.insert(std::make_shared<CompletionQueue>(), owner_token());
  });
}

lanes_status lanes_completion_queue_release(uint64_t queue) {
  return abi_guard([&] {
    t_handles.releasing(running_runtime().queues, queue);
    running_runtime().queues.release(queue);
  });
}

lanes_status lanes_completion_queue_drain(uint64_t queue, uint64_t* out_tokens, int32_t* out_status, int32_t capacity,
                                          int32_t* out_count) {
  return abi_guard([&] {
    std::shared_ptr<CompletionQueue> q = running_runtime().queues.get(queue);
    require(out_count, "drain: out_count");
    if (capacity > 0) {
      require(out_tokens, "drain: tokens");
      require(out_status, "drain: statuses");
    }
    *out_count = capacity > 0 ? q->drain(out_tokens, out_status, capacity) : 0;
  });
}

lanes_status lanes_completion_queue_wait(uint64_t queue, uint32_t timeout_ms) {
  return abi_guard([&] { running_runtime().queues.get(queue)->wait(timeout_ms); });
}

lanes_status lanes_completion_queue_fd(uint64_t queue, int32_t* out_fd) {
  return abi_guard([&] { *require(out_fd, "completion_queue_fd: out") = running_runtime().queues.get(queue)->fd(); });
}

}  // extern "C"
