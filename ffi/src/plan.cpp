#include "plan.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "config.hpp"
#include "eval.hpp"
#include "runtime.hpp"
#include "status.hpp"

namespace lanes {
namespace {

constexpr size_t kArenaAlignment = 256;
// Instances a stream keeps of one plan: for threads replaying it on the stream at once, or for
// other donated addresses. Replays queued one after another share one.
constexpr size_t kInstancesPerStream = 2;

size_t aligned(size_t bytes) { return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// A copy of `from` (any layout) into contiguous memory at `to`, as a command.
Command copy_command(const TensorArg& from, void* to) {
  Command c;
  c.op = OpCode::AsType;
  c.inputs.push_back(from);
  c.output.data = to;
  c.output.shape = from.shape;
  c.output.dtype = from.dtype;
  return c;
}

}  // namespace

Plan::~Plan() = default;

std::shared_ptr<Plan> Plan::build(const std::vector<NodePtr>& inputs, const std::vector<NodePtr>& outputs, int scalars,
                                  const std::vector<bool>& donate) {
  if (scalars < 0 || scalars > kMaxPlanScalars)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "compile: " + std::to_string(scalars) + " scalar parameters (at most " +
                                                std::to_string(kMaxPlanScalars) + ")");
  if (outputs.empty()) throw_error(LANES_ERR_INVALID_ARGUMENT, "compile: the function returned no arrays");
  auto plan = std::shared_ptr<Plan>(new Plan());
  plan->scalars_ = scalars;
  std::unordered_map<const Node*, int> input_index;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const NodePtr& in = inputs[i];
    if (in->op != OpCode::Placeholder)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "compile: input " + std::to_string(i) + " is not a traced placeholder");
    if (!input_index.emplace(in.get(), static_cast<int>(i)).second)
      throw_error(LANES_ERR_INVALID_ARGUMENT, "compile: input " + std::to_string(i) + " is given twice");
  }

  // The nodes that depend on an input, in topological order; the rest are constants.
  std::unordered_map<const Node*, bool> depends;
  std::vector<NodePtr> order;
  std::unordered_map<const Node*, int> consumers;
  struct Frame {
    NodePtr node;
    size_t next;
  };
  for (const NodePtr& out : outputs) {
    if (depends.count(out.get())) continue;
    std::vector<Frame> stack{{out, 0}};
    depends[out.get()] = false;
    while (!stack.empty()) {
      Frame& top = stack.back();
      Node& n = *top.node;
      if (n.op == OpCode::Placeholder) {
        if (!input_index.count(&n))
          throw_error(LANES_ERR_INVALID_ARGUMENT, "compile: the function reads a placeholder " + shape_str(n.shape) +
                                                      " that is not one of its inputs (a placeholder of another trace?)");
        depends[&n] = true;
        stack.pop_back();
        continue;
      }
      if (top.next < n.inputs.size()) {
        NodePtr child = n.inputs[top.next++];
        if (!depends.count(child.get())) {
          depends[child.get()] = false;
          stack.push_back(Frame{std::move(child), 0});
        }
        continue;
      }
      // A node reading a scalar parameter depends on the call even when its arrays do not.
      bool d = n.params.dynamic[0] >= 0 || n.params.dynamic[1] >= 0 || n.params.dynamic[2] >= 0;
      for (const NodePtr& in : n.inputs) d = d || depends[in.get()];
      depends[&n] = d;
      if (d) {
        for (const NodePtr& in : n.inputs) ++consumers[in.get()];
        order.push_back(top.node);
      }
      stack.pop_back();
    }
  }

  // Slots: one per input, constant, and computed node.
  std::unordered_map<const Node*, int> slot_of;
  auto new_slot = [&](Slot s) {
    plan->slots_.push_back(std::move(s));
    return static_cast<int>(plan->slots_.size()) - 1;
  };
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Node& in = *inputs[i];
    // A donated input is written in place when its only reader is a sliceUpdate into it.
    bool in_place = false;
    if (i < donate.size() && donate[i] && consumers[&in] == 1)
      for (const NodePtr& n : order)
        if (n->op == OpCode::SliceUpdate && n->inputs.front().get() == &in) in_place = true;
    Slot s;
    s.kind = in_place ? SlotKind::Donated : SlotKind::Arena;
    s.bytes = in.nbytes();
    s.input = static_cast<int>(i);
    s.first = -1;
    int slot = new_slot(std::move(s));
    slot_of[&in] = slot;
    plan->inputs_.push_back(Input{in.shape, in.dtype, slot, i < donate.size() && donate[i]});
  }
  auto operand = [&](const NodePtr& n) -> Operand {
    // A view reads its root's slot through its own layout.
    const Node* root = n->op == OpCode::View ? n->inputs.front().get() : n.get();
    auto it = slot_of.find(root);
    if (it == slot_of.end()) {
      // A constant: evaluated now, held by reference.
      NodePtr held = n->op == OpCode::View ? n->inputs.front() : n;
      schedule({held}, Start::OnDemand);
      wait_ready(*held);
      plan->constants_.push_back(held);
      Slot s;
      s.kind = SlotKind::Constant;
      s.constant = held->buffer;
      s.bytes = held->nbytes();
      it = slot_of.emplace(root, new_slot(std::move(s))).first;
    }
    // A view in its root's own row-major order (a reshape) reads as a plain operand, so the
    // folds that need one apply to it.
    return Operand{it->second, n->shape, n->dtype, n->contiguous() ? Shape{} : n->strides(), n->offset()};
  };

  for (const NodePtr& n : order) {
    if (n->op == OpCode::View) continue;  // read through its root's slot
    if (n->op == OpCode::Download || n->op == OpCode::Placeholder)
      throw_error(LANES_ERR_INVALID_ARGUMENT, std::string("compile: ") + op_name(n->op, 0) + " cannot be part of a compiled function");
    Step step{n->op, n->params, {}, {}};
    for (int p : {0, 1, 2})
      if (step.params.dynamic[p] >= scalars)
        throw_error(LANES_ERR_INVALID_ARGUMENT, std::string("compile: ") + op_name(n->op, n->params.subop) + " reads scalar parameter " +
                                                    std::to_string(step.params.dynamic[p]) + ", but the function has " +
                                                    std::to_string(scalars));
    for (const NodePtr& in : n->inputs) step.inputs.push_back(operand(in));
    // A sliceUpdate writes its target's donated memory in place only when nothing else reads
    // that target: another reader (a step placed later, or a fused chain that reads it where its
    // last op is) must still find the value before the update.
    int target_slot = step.inputs.empty() ? -1 : step.inputs.front().slot;
    const NodePtr& target = n->inputs.empty() ? n : n->inputs.front();
    bool in_place = n->op == OpCode::SliceUpdate && plan->slots_[target_slot].kind == SlotKind::Donated &&
                    target->op != OpCode::View && consumers[target.get()] == 1;
    int slot;
    if (in_place) {
      step.params.flags |= 1;
      slot = target_slot;
    } else {
      Slot s;
      s.bytes = n->nbytes();
      s.first = static_cast<int>(plan->steps_.size());
      slot = new_slot(std::move(s));
    }
    slot_of[n.get()] = slot;
    step.output = Operand{slot, n->shape, n->dtype, {}, 0};
    plan->steps_.push_back(std::move(step));
  }

  // Outputs: a computed slot of their own (copied out at each replay), or the donated input
  // written in place. Anything else (an input, a constant, a view) is copied into one first.
  for (const NodePtr& out : outputs) {
    Operand o = operand(out);
    Slot& s = plan->slots_[o.slot];
    bool own = (s.kind == SlotKind::Arena && s.first >= 0 && o.strides.empty() && o.offset == 0) ||
               (s.kind == SlotKind::Donated && o.strides.empty() && o.offset == 0);
    if (!own) {
      Step copy{OpCode::AsType, {}, {o}, {}};
      Slot fresh;
      fresh.bytes = out->nbytes();
      fresh.first = static_cast<int>(plan->steps_.size());
      int slot = new_slot(std::move(fresh));
      copy.output = Operand{slot, out->shape, out->dtype, {}, 0};
      plan->steps_.push_back(std::move(copy));
      o.slot = slot;
    }
    plan->outputs_.push_back(Output{o.slot, out->shape, out->dtype});
  }
  if (config().fuse_elementwise) {
    plan->fold_casts_into_slice_updates();
    plan->fuse_elementwise();
    plan->fold_norms_into_matmuls();
  }
  plan->lay_out_arena();
  return plan;
}

// A float32 elementwise op whose result is a plain function of its operands' elements, with no
// scalar bound to a plan parameter (those are patched per replay, op by op).
bool Plan::fusable(const Step& step) const {
  if (step.output.dtype != DType::Float32 || step.output.shape.size() > size_t(kMaxFusedDims)) return false;
  for (const Operand& in : step.inputs)
    if (in.dtype != DType::Float32) return false;
  const OpParams& p = step.params;
  switch (step.op) {
    case OpCode::Unary: return true;
    case OpCode::Binary: return p.subop < LANES_OP_EQUAL;
    case OpCode::BinaryScalar: return p.subop < LANES_OP_EQUAL && p.dynamic[0] < 0;
    default: return false;
  }
}

// Joins each fusable step to the chain of the fusable step whose result it alone reads, at the
// same shape, and replaces every chain of two or more by one Fused step where its last member
// was, and every chain that starts from a matmul's product by that matmul with the chain as its
// epilogue. The chain's intermediates are elided: they never reach memory.
void Plan::fuse_elementwise() {
  const int count = static_cast<int>(steps_.size());
  std::vector<int> readers, writer;
  count_readers(readers, writer);

  struct Chain {
    std::vector<int> members;
    std::vector<Operand> inputs;
    std::vector<FusedStep> program;
  };
  std::vector<Chain> chains;
  std::vector<int> chain_of(count, -1);
  auto add_input = [](Chain& chain, const Operand& o) {
    chain.inputs.push_back(o);
    return static_cast<int>(chain.inputs.size()) - 1;
  };
  for (int i = 0; i < count; ++i) {
    const Step& step = steps_[i];
    if (!fusable(step)) continue;
    // The operand that continues a chain: a chain's last result read whole, by this step only.
    int through = -1, joined = -1;
    for (size_t k = 0; k < step.inputs.size() && through < 0; ++k) {
      const Operand& in = step.inputs[k];
      int w = writer[in.slot];
      if (w < 0 || chain_of[w] < 0 || readers[in.slot] != 1 || !in.strides.empty() || in.offset != 0) continue;
      if (in.shape != step.output.shape || steps_[w].output.shape != step.output.shape) continue;
      const Chain& c = chains[chain_of[w]];
      if (c.members.back() != w || c.program.size() >= size_t(kMaxFusedSteps)) continue;
      if (step.op == OpCode::Binary && c.inputs.size() >= size_t(kMaxFusedInputs)) continue;
      through = static_cast<int>(k);
      joined = chain_of[w];
    }
    FusedStep f;
    f.op = step.op;
    f.subop = step.params.subop;
    if (step.op == OpCode::BinaryScalar) {
      f.scalar = static_cast<float>(step.params.scalars[0]);
      f.value_first = !(step.params.flags & 1);
    }
    if (joined < 0) {
      // A chain starts from its step's first operand, or from the second where that is a
      // product the chain could become the epilogue of (a residual add x + linear(h)).
      through = step.op == OpCode::Binary && matmul_feeding(step.inputs[0], step.output, readers, writer) < 0 &&
                        matmul_feeding(step.inputs[1], step.output, readers, writer) >= 0
                    ? 1
                    : 0;
      joined = static_cast<int>(chains.size());
      chains.push_back(Chain{});
      add_input(chains.back(), step.inputs[through]);
    }
    Chain& chain = chains[joined];
    if (step.op == OpCode::Binary) {
      f.value_first = through == 0;
      const Operand& other = step.inputs[1 - through];
      f.operand = add_input(chain, other);
    }
    chain.members.push_back(i);
    chain.program.push_back(f);
    chain_of[i] = joined;
  }

  // A chain whose input 0 is a matmul's product that nothing else reads becomes that matmul's
  // epilogue (where the backend can keep the product's bits), even a chain of one op.
  // A chain of a quantized product's two column halves (a gated MLP's silu(gate) * up) becomes
  // its pair epilogue where the backend can compute both halves' sums in one kernel.
  std::vector<int> epilogue_matmul(chains.size(), -1);
  std::vector<bool> pair(chains.size(), false), absorbed(count, false);
  for (size_t id = 0; id < chains.size(); ++id) {
    const Chain& chain = chains[id];
    const Operand& out = steps_[chain.members.back()].output;
    int m = matmul_feeding(chain.inputs.front(), out, readers, writer);
    if (m < 0) {
      m = pair_product_feeding(chain.inputs, out, chain.members.back(), readers, writer);
      pair[id] = m >= 0;
    }
    if (m < 0 || absorbed[m]) continue;
    epilogue_matmul[id] = m;
    absorbed[m] = true;
  }

  std::vector<Step> fused;
  fused.reserve(steps_.size());
  for (int i = 0; i < count; ++i) {
    if (absorbed[i]) {
      slots_[steps_[i].output.slot].kind = SlotKind::Elided;
      continue;
    }
    int id = chain_of[i];
    if (id < 0 || (chains[id].members.size() < 2 && epilogue_matmul[id] < 0)) {
      fused.push_back(std::move(steps_[i]));
      continue;
    }
    Chain& chain = chains[id];
    if (chain.members.back() != i) {
      slots_[steps_[i].output.slot].kind = SlotKind::Elided;
      continue;
    }
    auto program = std::make_shared<const std::vector<FusedStep>>(std::move(chain.program));
    if (int m = epilogue_matmul[id]; m >= 0) {
      // Placed where the chain's last op was: the chain's other inputs are ready only there.
      Step step = steps_[m];
      if (pair[id])
        step.params.flags |= kPairEpilogue;
      else
        step.inputs.insert(step.inputs.end(), chain.inputs.begin() + 1, chain.inputs.end());
      step.output = steps_[i].output;
      step.params.fused = std::move(program);
      fused.push_back(std::move(step));
      continue;
    }
    Step step{OpCode::Fused, {}, std::move(chain.inputs), steps_[i].output};
    step.params.fused = std::move(program);
    fused.push_back(std::move(step));
  }
  steps_ = std::move(fused);
  renumber_first_writes();
}

// How many steps read each slot (an output counts as two: it is stored), and which step writes it.
void Plan::count_readers(std::vector<int>& readers, std::vector<int>& writer) const {
  readers.assign(slots_.size(), 0);
  writer.assign(slots_.size(), -1);
  for (int i = 0; i < static_cast<int>(steps_.size()); ++i) {
    for (const Operand& in : steps_[i].inputs) ++readers[in.slot];
    writer[steps_[i].output.slot] = i;
  }
  for (const Output& o : outputs_) readers[o.slot] = 2;
}

// After steps were removed or merged: each arena slot's first write is its writer's new index.
void Plan::renumber_first_writes() {
  for (int i = 0; i < static_cast<int>(steps_.size()); ++i) {
    Slot& s = slots_[steps_[i].output.slot];
    if (s.kind == SlotKind::Arena) s.first = i;
  }
}

// Removes the steps marked `folded` (now part of another step).
void Plan::drop_folded(const std::vector<bool>& folded) {
  std::vector<Step> kept;
  kept.reserve(steps_.size());
  for (size_t i = 0; i < steps_.size(); ++i)
    if (!folded[i]) kept.push_back(std::move(steps_[i]));
  steps_ = std::move(kept);
  renumber_first_writes();
}

// A float astype whose result one sliceUpdate alone reads, whole, as its update (a KV cache's
// write of a new float32 key at float16) is folded into that sliceUpdate where the backend
// casts as it copies (Backend::slice_update_casts): one kernel fewer, the same bits.
void Plan::fold_casts_into_slice_updates() {
  if (!runtime().backend().slice_update_casts()) return;
  const int count = static_cast<int>(steps_.size());
  std::vector<int> readers, writer;
  count_readers(readers, writer);
  std::vector<bool> folded(count, false);
  for (Step& step : steps_) {
    if (step.op != OpCode::SliceUpdate || step.inputs.size() != 2) continue;
    const Operand& update = step.inputs[1];
    int w = writer[update.slot];
    if (w < 0 || steps_[w].op != OpCode::AsType || readers[update.slot] != 1 || !update.strides.empty() || update.offset != 0)
      continue;
    const Operand& source = steps_[w].inputs[0];
    if (!is_floating(source.dtype) || !is_floating(update.dtype) || source.shape != update.shape) continue;
    slots_[update.slot].kind = SlotKind::Elided;
    step.inputs[1] = source;
    folded[w] = true;
  }
  drop_folded(folded);
}

// A float32 rmsNorm with a weight whose result one QuantizedMatmul without an epilogue alone
// reads, whole, as its activations (a decoder's norm before its attention or MLP, or before the
// head) is folded into that product where the backend normalizes the activations itself
// (Backend::matmul_norm_prologue): one kernel fewer, the same bits.
void Plan::fold_norms_into_matmuls() {
  const int count = static_cast<int>(steps_.size());
  std::vector<int> readers, writer;
  count_readers(readers, writer);
  auto plain = [](const Operand& o) { return o.dtype == DType::Float32 && o.strides.empty() && o.offset == 0; };
  std::vector<bool> folded(count, false);
  for (int i = 0; i < count; ++i) {
    Step& step = steps_[i];
    // A pair epilogue reads nothing but the product: a norm prologue goes with it.
    bool pair = step.params.flags & kPairEpilogue;
    if (step.op != OpCode::QuantizedMatmul || (step.params.fused && !pair) || (step.params.flags & kNormPrologue)) continue;
    const Operand activations = step.inputs[0];  // a copy: the step's inputs change below
    int w = writer[activations.slot];
    if (w < 0 || readers[activations.slot] != 1 || !plain(activations) || written_between(w, i)) continue;
    const Step& norm = steps_[w];
    int64_t K = activations.shape.back();
    int64_t M = K ? numel(activations.shape) / K : 0;
    if (norm.op != OpCode::RmsNorm || norm.params.flags != 1 || norm.params.dynamic[0] >= 0 || norm.inputs.size() != 2 ||
        !plain(norm.inputs[0]) || !plain(norm.inputs[1]) || norm.inputs[0].shape != activations.shape ||
        !runtime().backend().matmul_norm_prologue(M, K))
      continue;
    slots_[activations.slot].kind = SlotKind::Elided;
    step.inputs[0] = norm.inputs[0];
    step.inputs.push_back(norm.inputs[1]);
    step.params.flags |= kNormPrologue;
    step.params.scalars[0] = norm.params.scalars[0];
    folded[w] = true;
  }
  drop_folded(folded);
}

// The float32 matmul or quantized matmul step whose product `in` is, read whole by one step only
// and at the shape of `out`, when the backend can give it an epilogue; else -1.
int Plan::matmul_feeding(const Operand& in, const Operand& out, const std::vector<int>& readers,
                         const std::vector<int>& writer) const {
  int m = writer[in.slot];
  if (m < 0 || readers[in.slot] != 1 || !in.strides.empty() || in.offset != 0 || in.shape != out.shape) return -1;
  const Step& step = steps_[m];
  bool quantized = step.op == OpCode::QuantizedMatmul;
  if ((step.op != OpCode::Matmul && !quantized) || step.params.fused || step.output.dtype != DType::Float32 ||
      step.output.shape != out.shape)
    return -1;
  const Shape& a = step.inputs[0].shape;
  const Shape& y = step.output.shape;
  int64_t N = y.back(), K = a.back();
  int64_t M = quantized ? (N ? numel(y) / N : 0) : y[y.size() - 2];
  return runtime().backend().matmul_epilogue(step.op, M, N, K) ? m : -1;
}

// The QuantizedMatmul step whose product [..., 2h] a chain of two inputs reads as its column
// halves, [0, h) as input 0 and [h, 2h) as input 1, at the shape of `out` [..., h], when nothing
// else reads the product, nothing before the chain's `last` step overwrites what the product
// reads, and the backend can give it a pair epilogue; else -1.
int Plan::pair_product_feeding(const std::vector<Operand>& in, const Operand& out, int last, const std::vector<int>& readers,
                               const std::vector<int>& writer) const {
  if (in.size() != 2 || in[0].slot != in[1].slot || readers[in[0].slot] != 2) return -1;
  for (const Output& o : outputs_)
    if (o.slot == in[0].slot) return -1;
  int m = writer[in[0].slot];
  if (m < 0) return -1;
  const Step& step = steps_[m];
  const Shape& y = step.output.shape;
  if (step.op != OpCode::QuantizedMatmul || step.params.fused || step.params.flags != 0 || step.output.dtype != DType::Float32 ||
      y.empty() || y.back() % 2 != 0 || y.back() == 0)
    return -1;
  const int64_t h = y.back() / 2;
  Shape half = y;
  half.back() = h;
  if (out.shape != half) return -1;
  // Whether `o` is the product's columns [first, first + h): its strides where a dim has more
  // than one element are the product's own.
  const Shape product_strides = contiguous_strides(y);
  auto columns = [&](const Operand& o, int64_t first) {
    if (o.shape != half || o.offset != first) return false;
    if (o.strides.empty()) return numel(half) == h;  // contiguous: a single row's halves only
    for (size_t d = 0; d < y.size(); ++d)
      if (half[d] > 1 && o.strides[d] != product_strides[d]) return false;
    return true;
  };
  if (!columns(in[0], 0) || !columns(in[1], h) || written_between(m, last)) return -1;
  int64_t K = step.inputs[0].shape.back();
  return runtime().backend().matmul_pair_epilogue(numel(half) / h, h, K) ? m : -1;
}

// Whether a step after `from` and before `to` writes what step `from` reads (a donated input
// updated in place): then `from`'s reads cannot move to `to`.
bool Plan::written_between(int from, int to) const {
  for (int i = from + 1; i < to; ++i)
    for (const Operand& in : steps_[from].inputs)
      if (steps_[i].output.slot == in.slot) return true;
  return false;
}

void Plan::lay_out_arena() {
  int end = static_cast<int>(steps_.size());
  for (Slot& s : slots_) s.last = s.first;
  for (int i = 0; i < end; ++i)
    for (const Operand& o : steps_[i].inputs) slots_[o.slot].last = std::max(slots_[o.slot].last, i);
  for (const Output& o : outputs_) slots_[o.slot].last = end;
  // Greedy first fit in order of first write: a slot reuses the space of slots already dead.
  std::vector<int> order;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].kind == SlotKind::Arena) order.push_back(static_cast<int>(i));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return slots_[a].first < slots_[b].first; });
  std::vector<int> live;
  arena_bytes_ = 0;
  for (int id : order) {
    Slot& s = slots_[id];
    std::erase_if(live, [&](int other) { return slots_[other].last < s.first; });
    std::sort(live.begin(), live.end(), [&](int a, int b) { return slots_[a].arena_offset < slots_[b].arena_offset; });
    size_t want = aligned(std::max<size_t>(s.bytes, 1)), at = 0;
    for (int other : live) {
      if (at + want <= slots_[other].arena_offset) break;
      at = std::max(at, slots_[other].arena_offset + aligned(std::max<size_t>(slots_[other].bytes, 1)));
    }
    s.arena_offset = at;
    arena_bytes_ = std::max(arena_bytes_, at + want);
    live.push_back(id);
  }
}

void* Plan::address(const Instance& instance, int slot, const std::vector<void*>& donated) const {
  const Slot& s = slots_[slot];
  switch (s.kind) {
    case SlotKind::Arena: return static_cast<char*>(instance.arena->data()) + s.arena_offset;
    case SlotKind::Donated: return donated[s.input];
    case SlotKind::Constant: return s.constant->data();
    case SlotKind::Elided: break;
  }
  throw_error(LANES_ERR_INTERNAL, "plan: unknown slot kind");
}

std::shared_ptr<Plan::Instance> Plan::instance_for(const StreamPtr& stream, const std::vector<void*>& donated) {
  std::shared_ptr<Buffer> arena;
  {
    std::lock_guard lock(instances_mutex_);
    auto it = instances_.find(stream->id());
    if (it != instances_.end()) {
      // An instance whose last replay is still in flight serves the next one too: the stream
      // runs them in order, and each replay's range checks are read from its own words.
      for (const std::shared_ptr<Instance>& instance : it->second)
        if (!instance->claimed && instance->donated == donated) {
          instance->claimed = true;
          return instance;
        }
      // The stream runs its replays one after another: its instances can share one arena.
      if (!it->second.empty()) arena = it->second.front()->arena;
    }
  }
  // Built outside every lock: it allocates and the backend translates.
  auto made = std::make_shared<Instance>();
  made->donated = donated;
  made->claimed = true;
  made->arena = arena ? arena : runtime().allocator().allocate(std::max<size_t>(arena_bytes_, 1), stream->device(), stream->pool());
  std::vector<Command> commands;
  commands.reserve(steps_.size());
  for (const Step& step : steps_) {
    Command c;
    c.op = step.op;
    c.params = step.params;
    for (const Operand& o : step.inputs)
      c.inputs.push_back(TensorArg{address(*made, o.slot, donated), o.shape, o.dtype, o.strides, o.offset});
    c.output = TensorArg{address(*made, step.output.slot, donated), step.output.shape, step.output.dtype, {}, 0};
    commands.push_back(std::move(c));
  }
  // The copies in and out of the arena, in the order run() binds them: inputs, then outputs.
  std::vector<PlanCopy> copies;
  for (const Input& in : inputs_)
    if (slots_[in.slot].kind != SlotKind::Donated)
      copies.push_back(PlanCopy{true, address(*made, in.slot, donated), dtype_bytes(in.dtype, numel(in.shape))});
  for (const Output& o : outputs_)
    if (slots_[o.slot].kind != SlotKind::Donated)
      copies.push_back(PlanCopy{false, address(*made, o.slot, donated), dtype_bytes(o.dtype, numel(o.shape))});
  StreamScratch scratch(*stream, made->scratch);
  made->backend = runtime().backend().instantiate(std::move(commands), std::move(copies), stream->device(), scratch);
  made->stream = stream;
  // Streams disposed meanwhile give their instances (and arenas) back. They are destroyed after
  // the lock is released: freeing an arena takes its stream's memory pool lock. A stream keeps
  // its newest few; an older one still replaying is kept alive by its epoch.
  std::vector<std::shared_ptr<Instance>> dropped;
  {
    std::lock_guard lock(instances_mutex_);
    for (auto it = instances_.begin(); it != instances_.end();) {
      std::shared_ptr<Stream> s = it->second.empty() ? nullptr : it->second.front()->stream.lock();
      if (s && !s->disposed()) {
        ++it;
        continue;
      }
      for (std::shared_ptr<Instance>& instance : it->second) dropped.push_back(std::move(instance));
      it = instances_.erase(it);
    }
    std::vector<std::shared_ptr<Instance>>& list = instances_[stream->id()];
    for (auto it = list.begin(); list.size() >= kInstancesPerStream && it != list.end();) {
      if ((*it)->claimed) {
        ++it;
        continue;
      }
      dropped.push_back(std::move(*it));
      it = list.erase(it);
    }
    list.push_back(made);
  }
  return made;
}

void Plan::release(Instance& instance) {
  std::lock_guard lock(instances_mutex_);
  instance.claimed = false;
}

void Plan::check_scalars(const std::vector<double>& scalars) const {
  if (static_cast<int>(scalars.size()) != scalars_)
    throw_error(LANES_ERR_INVALID_ARGUMENT, "compiled function: " + std::to_string(scalars.size()) + " scalar arguments, the plan takes " +
                                                std::to_string(scalars_));
  for (const Step& step : steps_) {
    const OpParams& p = step.params;
    for (int i : {0, 1, 2}) {
      if (p.dynamic[i] < 0) continue;
      double v = scalars[p.dynamic[i]];
      const char* name = op_name(step.op, p.subop);
      bool integral = std::isfinite(v) && v == std::trunc(v);
      if (step.op == OpCode::BinaryScalar && !is_floating(step.inputs[0].dtype) && !integral) {
        throw_error(LANES_ERR_DTYPE, std::string(name) + ": the plan was traced with an integral scalar for an " +
                                         dtype_name(step.inputs[0].dtype) + " array, got " + std::to_string(v) +
                                         " (trace with a fractional value to compute in float32)");
      } else if (step.op == OpCode::SliceUpdate) {
        int64_t room = step.inputs[0].shape[p.axis] - step.inputs[1].shape[p.axis];
        if (!integral || v < 0 || v > static_cast<double>(room))
          throw_error(LANES_ERR_SHAPE, std::string(name) + ": offset " + std::to_string(v) + " is out of range [0, " +
                                           std::to_string(room) + "]");
      } else if (step.op == OpCode::Attention) {
        int64_t keys = step.inputs[1].shape[2];
        if (!integral || v < 0 || v > static_cast<double>(keys))
          throw_error(LANES_ERR_SHAPE, std::string(name) + ": key length " + std::to_string(v) + " is out of range [0, " +
                                           std::to_string(keys) + "]");
      } else if (step.op == OpCode::Rope && !integral) {
        throw_error(LANES_ERR_SHAPE, std::string(name) + ": offset " + std::to_string(v) + " is not an integer position");
      }
    }
  }
}

std::vector<NodePtr> Plan::run(const StreamPtr& stream, const std::vector<NodePtr>& inputs, const std::vector<double>& scalars) {
  if (inputs.size() != inputs_.size())
    throw_error(LANES_ERR_INVALID_ARGUMENT, "compiled function: " + std::to_string(inputs.size()) + " array arguments, the plan takes " +
                                                std::to_string(inputs_.size()));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i]->shape != inputs_[i].shape || inputs[i]->dtype != inputs_[i].dtype)
      throw_error(inputs[i]->dtype != inputs_[i].dtype ? LANES_ERR_DTYPE : LANES_ERR_SHAPE,
                  "compiled function: argument " + std::to_string(i) + " is " + dtype_name(inputs[i]->dtype) + " " +
                      shape_str(inputs[i]->shape) + ", the plan was traced for " + dtype_name(inputs_[i].dtype) + " " +
                      shape_str(inputs_[i].shape));
  check_scalars(scalars);
  schedule(inputs, Start::Now);
  std::unique_lock<RankedMutex> global;
  if (locking_mode() == LockingMode::Global) global = std::unique_lock<RankedMutex>(global_evaluation_mutex());
  for (const NodePtr& in : inputs)
    if (state_of(in->state.load(std::memory_order_acquire)) == NodeState::Failed) wait_ready(*in);  // its typed error

  Runtime& rt = runtime();
  Backend& backend = rt.backend();
  std::vector<PlannedCommand> before, after;
  // Donated inputs written in place: their own memory when nothing else can see it (this
  // stream's earlier work, which runs first, may still hold it), else a copy.
  std::vector<void*> donated(inputs.size(), nullptr);
  std::vector<std::shared_ptr<Buffer>> donated_buffers(inputs.size());
  std::vector<std::shared_ptr<Buffer>> donated_in_place;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (slots_[inputs_[i].slot].kind != SlotKind::Donated) continue;
    const NodePtr& in = inputs[i];
    bool exclusive = in.use_count() == 1 && in->buffer && Buffer::held_only_by(in->buffer, stream->id()) && in->contiguous() &&
                     in->offset() == 0;
    if (exclusive) {
      donated_buffers[i] = in->buffer;
      donated_in_place.push_back(in->buffer);
    } else {
      donated_buffers[i] = rt.allocator().allocate(in->nbytes(), stream->device(), stream->pool());
      PlannedCommand pc;
      pc.command = copy_command(in->tensor(), donated_buffers[i]->data());
      pc.reads.push_back(in->buffer);
      pc.writes = donated_buffers[i];
      before.push_back(std::move(pc));
    }
    donated[i] = donated_buffers[i]->data();
  }
  std::shared_ptr<Instance> instance = instance_for(stream, donated);
  struct Release {
    Plan& plan;
    Instance& instance;
    ~Release() { plan.release(instance); }
  } release_on_exit{*this, *instance};
  // A backend that copies inputs and outputs itself (inside its graph) takes their addresses;
  // an input it cannot read as plain bytes is first copied into a contiguous buffer.
  const bool bind = instance->backend->copies_bound();
  PlannedReplay replay;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (slots_[inputs_[i].slot].kind == SlotKind::Donated) continue;
    const NodePtr& in = inputs[i];
    if (bind && in->contiguous() && in->offset() == 0) {
      replay.bound.push_back(in->buffer->data());
      replay.reads.push_back(in->buffer);
      continue;
    }
    PlannedCommand pc;
    pc.reads.push_back(in->buffer);
    if (bind) {
      pc.writes = rt.allocator().allocate(in->nbytes(), stream->device(), stream->pool());
      replay.bound.push_back(pc.writes->data());
      replay.reads.push_back(pc.writes);
    }
    pc.command = copy_command(in->tensor(), bind ? pc.writes->data() : address(*instance, inputs_[i].slot, donated));
    before.push_back(std::move(pc));
  }
  std::vector<NodePtr> results;
  for (const Output& o : outputs_) {
    NodePtr out = std::make_shared<Node>(OpCode::PlanOutput, OpParams{}, o.shape, o.dtype, NodeInputs{}, stream);
    const Slot& s = slots_[o.slot];
    if (s.kind == SlotKind::Donated) {
      out->buffer = donated_buffers[s.input];
    } else {
      out->buffer = rt.allocator().allocate(out->nbytes(), stream->device(), stream->pool());
      if (bind) {
        replay.bound.push_back(out->buffer->data());
        replay.writes.push_back(out->buffer);
      } else {
        PlannedCommand pc;
        TensorArg from{address(*instance, o.slot, donated), o.shape, o.dtype, {}, 0};
        pc.command = copy_command(from, out->buffer->data());
        pc.writes = out->buffer;
        after.push_back(std::move(pc));
      }
    }
    results.push_back(std::move(out));
  }
  for (auto* list : {&before, &after})
    for (PlannedCommand& pc : *list) {
      StreamScratch scratch(*stream, pc.scratch);
      pc.prepared = backend.prepare(pc.command, stream->device(), scratch);
    }
  replay.instance = instance->backend.get();
  replay.scalars = scalars;
  replay.kernels = steps_.size();
  replay.keep.push_back(instance);
  for (const NodePtr& c : constants_) replay.keep.push_back(c);
  for (const std::shared_ptr<Buffer>& b : donated_buffers)
    if (b) replay.writes.push_back(b);
  // Read too: work still in flight that fails poisons them, and this replay must fail with it.
  for (std::shared_ptr<Buffer>& b : donated_in_place) replay.reads.push_back(std::move(b));

  for (const NodePtr& in : inputs)
    if (in->producer && in->producer != stream) in->producer->flush_through(in->value, Start::Now);
  uint64_t value = 0;
  {
    StreamOpLock lock(*stream);
    for (const NodePtr& in : inputs)
      if (in->producer) lock.encode_wait(*in->producer, in->value);
    for (PlannedCommand& pc : before) lock.encode(std::move(pc));
    value = lock.encode_replay(std::move(replay));
    for (PlannedCommand& pc : after) value = lock.encode(std::move(pc));
    // What a replay makes is usually evaluated next, by this thread.
    lock.commit(Start::OnDemand);
  }
  for (const NodePtr& out : results) {
    out->producer = stream;
    out->value = value;
    out->state.store(static_cast<uint64_t>(NodeState::Scheduled), std::memory_order_release);
  }
  return results;
}

}  // namespace lanes
