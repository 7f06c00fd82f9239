#include "eval.hpp"

#include <chrono>
#include <mutex>
#include <thread>
#include <algorithm>

#include "config.hpp"
#include "pointer_set.hpp"
#include "runtime.hpp"
#include "status.hpp"

namespace lanes {
namespace {

// Sleeps until another evaluation moves `n` out of the claimed state `word`. Under the
// watchdog the wait is polled so a claim that is never resolved fails with a diagnostic.
void wait_for_claim(const Node& n, uint64_t word) {
  auto limit = config().watchdog;
  if (!limit) {
    n.state.wait(word, std::memory_order_acquire);
    return;
  }
  auto deadline = std::chrono::steady_clock::now() + *limit;
  while (n.state.load(std::memory_order_acquire) == word) {
    if (std::chrono::steady_clock::now() > deadline)
      throw_error(LANES_ERR_DEVICE, std::string("watchdog: waited ") + std::to_string(limit->count()) + " ms for " +
                                        op_name(n.op, n.params.subop) + " " + shape_str(n.shape) +
                                        ", claimed by evaluation " + std::to_string(word >> 2) + " on stream " +
                                        std::to_string(n.stream ? n.stream->id() : 0) + ", to be scheduled");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// A sliceUpdate may write into its target's memory when nothing else can see that memory:
// the target is computed, only this node refers to it, and no work but the writing stream's
// own (which runs first) holds its buffer.
bool can_donate(const NodePtr& target, const Stream& writer) {
  return target.use_count() == 1 && state_of(target->state.load(std::memory_order_acquire)) == NodeState::Scheduled &&
         target->op != OpCode::View && target->buffer && Buffer::held_only_by(target->buffer, writer.id()) &&
         target->offset() == 0 && target->contiguous();
}

struct Planned {
  NodePtr node;
  PlannedCommand command;
};

class Evaluation {
 public:
  explicit Evaluation(Start start) : id_(runtime().next_eval_id()), claim_word_(claimed_by(id_)), start_(start) {}

  void run(const std::vector<NodePtr>& outputs) {
    try {
      for (;;) {
        walk(outputs);
        if (mine_.empty() && foreign_.empty()) break;
        bool progressed = encode_ready();
        if (progressed) continue;
        // Everything left waits on nodes another evaluation claimed. Commit ours first so that
        // evaluation never waits on us, then sleep until one of them changes state.
        flush_touched(Start::Now);
        const NodePtr& blocker = foreign_.front();
        uint64_t word = blocker->state.load(std::memory_order_acquire);
        if (state_of(word) == NodeState::Claimed) wait_for_claim(*blocker, word);
      }
      // Work of several streams runs on their executors at once while this thread waits.
      flush_touched(touched_.size() == 1 ? start_ : Start::Now);
    } catch (...) {
      release_claims();
      flush_touched(Start::Now);
      throw;
    }
  }

 private:
  bool mine(uint64_t word) const { return word == claim_word_; }

  // Post-order walk from the outputs: claims pending nodes, lists ours in topological order
  // and the nodes other evaluations are working on.
  void walk(const std::vector<NodePtr>& outputs) {
    mine_.clear();
    foreign_.clear();
    PointerSet& seen = *seen_;
    seen.clear();
    struct Frame {
      NodePtr node;
      size_t next_input;
    };
    std::vector<Frame> stack;
    for (const NodePtr& out : outputs) {
      if (!seen.insert(out.get())) continue;
      if (!visit(out)) continue;
      stack.push_back(Frame{out, 0});
      try {
        while (!stack.empty()) {
          Frame& top = stack.back();
          if (top.next_input < top.node->inputs.size()) {
            NodePtr child = top.node->inputs[top.next_input++];
            if (seen.insert(child.get()) && visit(child)) stack.push_back(Frame{std::move(child), 0});
          } else {
            mine_.push_back(std::move(top.node));
            stack.pop_back();
          }
        }
      } catch (...) {
        // Nodes claimed on the way down are ours too: release_claims must hand them back.
        for (Frame& f : stack) mine_.push_back(std::move(f.node));
        throw;
      }
    }
  }

  // Classifies a node; returns true if it is ours to compute (and its inputs must be walked).
  bool visit(const NodePtr& n) {
    if (n->op == OpCode::Placeholder)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "a compiled function's input " + shape_str(n->shape) +
                                                  " has no value outside its trace (return it, or use a real array)");
    uint64_t word = n->state.load(std::memory_order_acquire);
    for (;;) {
      switch (state_of(word)) {
        case NodeState::Scheduled:
        case NodeState::Failed:
          return false;
        case NodeState::Claimed:
          if (mine(word)) return true;
          foreign_.push_back(n);
          return false;
        case NodeState::Pending:
          if (n->state.compare_exchange_weak(word, claim_word_, std::memory_order_acq_rel, std::memory_order_acquire))
            return true;
          break;  // lost the race: look again at what it became
      }
    }
  }

  // One pass over our nodes in topological order; encodes every node whose inputs are
  // scheduled, batching consecutive nodes of one stream under one op lock.
  bool encode_ready() {
    bool progressed = false;
    PointerSet& in_batch = *in_batch_;
    in_batch.clear();
    for (const NodePtr& n : mine_) {
      if (state_of(n->state.load(std::memory_order_acquire)) != NodeState::Claimed) continue;
      if (n->op == OpCode::View) {
        progressed |= schedule_view(n, in_batch);
        continue;
      }
      // A node on another stream that reads from the open batch needs that batch encoded (or
      // failed) first; its inputs are judged after that.
      if (n->stream != batch_stream_)
        for (const NodePtr& in : n->inputs)
          if (in_batch.contains(in.get())) {
            encode_batch(in_batch);
            break;
          }
      bool blocked = false;
      const Node* failed_input = nullptr;
      for (const NodePtr& in : n->inputs) {
        NodeState s = state_of(in->state.load(std::memory_order_acquire));
        if (s == NodeState::Failed) failed_input = in.get();
        else if (s != NodeState::Scheduled && !in_batch.contains(in.get())) blocked = true;
      }
      if (failed_input) {
        fail(*n, *failed_input->failure);
        progressed = true;
        continue;
      }
      if (blocked) continue;
      if (n->stream != batch_stream_) {
        encode_batch(in_batch);
        batch_stream_ = n->stream;
      }
      if (batch_.capacity() == 0) batch_.reserve(mine_.size());
      batch_.push_back(prepare(n));
      in_batch.insert(n.get());
      progressed = true;
    }
    encode_batch(in_batch);
    return progressed;
  }

  // A view needs no kernel: it is scheduled as soon as its source is, sharing its buffer and
  // timeline value. Its input (the source) is kept: other views may be built from it.
  bool schedule_view(const NodePtr& n, PointerSet& in_batch) {
    const NodePtr& source = n->inputs.front();
    if (in_batch.contains(source.get())) encode_batch(in_batch);
    NodeState s = state_of(source->state.load(std::memory_order_acquire));
    if (s == NodeState::Failed) {
      fail(*n, *source->failure);
      return true;
    }
    if (s != NodeState::Scheduled) return false;
    n->buffer = source->buffer;
    n->producer = source->producer;
    n->value = source->value;
    publish(*n, NodeState::Scheduled);
    return true;
  }

  // Host preparation, outside every stream lock: the output's memory, the command, and the
  // backend's translation of it.
  Planned prepare(const NodePtr& n) {
    Planned p;
    p.node = n;
    Runtime& rt = runtime();
    const StreamPtr& stream = n->stream;
    PlannedCommand& pc = p.command;
    Command& c = pc.command;
    c.op = n->op;
    c.params = n->params;
    bool donated = n->op == OpCode::SliceUpdate && can_donate(n->inputs.front(), *stream);
    if (donated) {
      n->buffer = n->inputs.front()->buffer;
      c.params.flags |= 1;
    } else {
      n->buffer = rt.allocator().allocate(n->nbytes(), stream->device(), stream->pool());
    }
    c.output = n->tensor();
    pc.writes = n->buffer;
    c.inputs.reserve(n->inputs.size());
    pc.reads.reserve(n->inputs.size());
    for (const NodePtr& in : n->inputs) {
      c.inputs.push_back(in->tensor());
      pc.reads.push_back(in->buffer);
    }
    if (n->op == OpCode::Download) c.params.host_staging = n->extras->staging.get(), pc.staging = n->extras->staging;
    StreamScratch scratch(*stream, pc.scratch);
    pc.prepared = rt.backend().prepare(c, stream->device(), scratch);
    return p;
  }

  void encode_batch(PointerSet& in_batch) {
    if (batch_.empty()) return;
    std::vector<Planned> batch;
    batch.swap(batch_);
    // The storage goes back to batch_ for the next batch, however this returns.
    struct GiveBack {
      std::vector<Planned>& from;
      std::vector<Planned>& to;
      ~GiveBack() {
        from.clear();
        if (to.empty()) to.swap(from);
      }
    } give_back{batch, batch_};
    in_batch.clear();
    StreamPtr stream = std::move(batch_stream_);
    batch_stream_.reset();
    if (!stream) throw_error(LANES_ERR_INTERNAL, "a computed node has no stream");
    // A wait on a value its stream has not committed yet could stall: commit those first.
    for (Planned& p : batch)
      for (const NodePtr& in : p.node->inputs)
        if (in->producer && in->producer != stream) in->producer->flush_through(in->value, Start::Now);
    std::vector<NodeInputs> released_inputs;
    released_inputs.reserve(batch.size());
    if (std::find(touched_.begin(), touched_.end(), stream) == touched_.end()) touched_.push_back(stream);
    try {
      StreamOpLock lock(*stream);
      for (Planned& p : batch) {
        for (const NodePtr& in : p.node->inputs)
          if (in->producer) lock.encode_wait(*in->producer, in->value);
        p.node->value = lock.encode(std::move(p.command));
        p.node->producer = stream;
        // Published at once: if a later encode of this batch throws, this node is done and
        // must not be computed again.
        released_inputs.push_back(std::move(p.node->inputs));
        publish(*p.node, NodeState::Scheduled);
      }
    } catch (const Error& e) {
      if (e.code() != LANES_ERR_DISPOSED) throw;
      for (Planned& p : batch)
        if (state_of(p.node->state.load(std::memory_order_acquire)) == NodeState::Claimed) fail(*p.node, e.code(), e.what());
      return;
    }
    // Dropping inputs may free nodes (and streams): only after the op lock is released.
  }

  static void publish(Node& n, NodeState s) {
    n.state.store(static_cast<uint64_t>(s), std::memory_order_release);
    n.state.notify_all();
  }

  void fail(Node& n, const NodeFailure& failure) { fail(n, failure.code, failure.message); }
  void fail(Node& n, lanes_status code, const std::string& error) {
    n.failure = std::make_unique<const NodeFailure>(NodeFailure{code, error});
    n.buffer.reset();
    // A view keeps its source: views of it are built from that source.
    NodeInputs inputs;
    if (n.op != OpCode::View) inputs = std::move(n.inputs);
    publish(n, NodeState::Failed);
  }

  // On a host-side error (out of memory): give unscheduled claims back, so a concurrent
  // evaluation waiting on them can claim them itself.
  void release_claims() {
    batch_.clear();
    batch_stream_.reset();
    for (const NodePtr& n : mine_) {
      if (n->state.load(std::memory_order_acquire) != claim_word_) continue;  // scheduled or failed
      n->buffer.reset();
      publish(*n, NodeState::Pending);
    }
  }

  void flush_touched(Start start) {
    for (const StreamPtr& s : touched_) s->flush_through(UINT64_MAX, start);
    touched_.clear();
  }

  const uint64_t id_;
  const uint64_t claim_word_;
  const Start start_;
  std::vector<NodePtr> mine_;
  std::vector<NodePtr> foreign_;
  std::vector<Planned> batch_;
  StreamPtr batch_stream_;
  std::vector<StreamPtr> touched_;  // a handful at most: a vector beats a hash set
  BorrowedPointerSet seen_;         // walk's visited nodes
  BorrowedPointerSet in_batch_;     // encode_ready's nodes in the open batch
};

std::string node_error(const Node& n) {
  if (state_of(n.state.load(std::memory_order_acquire)) == NodeState::Failed) return n.failure->message;
  if (n.producer) {
    if (auto e = n.producer->timeline()->error_at(n.value)) return *e;
  }
  if (n.buffer && n.buffer->poisoned.load(std::memory_order_acquire)) return "its input failed";
  return {};
}

lanes_status error_code_of(const Node& n) {
  if (state_of(n.state.load(std::memory_order_acquire)) == NodeState::Failed) return n.failure->code;
  return LANES_ERR_DEVICE;
}

}  // namespace

void schedule(const std::vector<NodePtr>& outputs, Start start) {
  std::unique_lock<RankedMutex> global;
  if (locking_mode() == LockingMode::Global) global = std::unique_lock<RankedMutex>(global_evaluation_mutex());
  Evaluation eval(start);
  eval.run(outputs);
}

void wait_ready(const Node& n) {
  NodeState s = state_of(n.state.load(std::memory_order_acquire));
  std::string error;
  if (s == NodeState::Scheduled && n.producer) {
    n.producer->flush_through(n.value, Start::OnDemand);
    if (auto waited = n.producer->timeline()->wait(n.value)) error = *waited;  // a failure, or the watchdog
  }
  if (error.empty()) error = node_error(n);
  if (!error.empty())
    throw_error(error_code_of(n), std::string(op_name(n.op, n.params.subop)) + " " + shape_str(n.shape) + ": " + error);
}

bool run_until(const std::vector<NodePtr>& outputs, std::chrono::steady_clock::time_point deadline) {
  bool first = true;
  for (const NodePtr& n : outputs) {
    if (state_of(n->state.load(std::memory_order_acquire)) == NodeState::Scheduled && n->producer) {
      Timeline& timeline = *n->producer->timeline();
      // A run starts one buffer even past the deadline: only the first output's may.
      if (!first && timeline.completed() < n->value && std::chrono::steady_clock::now() >= deadline) return false;
      first = false;
      if (!timeline.run_until(n->value, deadline)) return false;
    }
    if (!node_error(*n).empty()) return false;
  }
  return true;
}

void when_ready(const std::vector<NodePtr>& outputs, std::function<void(lanes_status)> done) {
  struct Join {
    std::atomic<size_t> remaining;
    std::atomic<lanes_status> status{LANES_OK};
    std::function<void(lanes_status)> done;
    std::vector<NodePtr> outputs;
  };
  auto join = std::make_shared<Join>();
  join->remaining.store(outputs.size() + 1);
  join->done = std::move(done);
  join->outputs = outputs;
  auto arrive = [join](const Node* n) {
    if (n && !node_error(*n).empty()) {
      lanes_status expected = LANES_OK;
      join->status.compare_exchange_strong(expected, error_code_of(*n));
    }
    if (join->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // The last arrival: nothing reads the outputs any more. Let them go before the caller hears,
    // so an array the caller gives up next (a KV cache donated to a compiled step) has no other
    // holder and is written in place, not copied.
    join->outputs.clear();
    join->done(join->status.load());
  };
  for (const NodePtr& n : outputs) {
    const Node* raw = n.get();
    if (state_of(n->state.load(std::memory_order_acquire)) == NodeState::Scheduled && n->producer) {
      n->producer->timeline()->when_reached(n->value, [arrive, raw] { arrive(raw); });
    } else {
      arrive(raw);
    }
  }
  arrive(nullptr);
}

}  // namespace lanes
