// Compiled plans: a traced graph frozen into an immutable list of commands over a buffer
// arena, replayed from any thread on any stream with one call.
//
// A plan's nodes are those that depend on its inputs (placeholders while tracing); everything
// else it reads is a constant, evaluated once at build time and held by reference. Each
// intermediate gets an offset in an arena laid out by liveness, so a replay allocates nothing
// but its outputs. The arena and the backend's translation of the commands (one CUDA graph,
// say) are made once per stream and reused: replays on one stream are ordered by the stream,
// and replays on different streams share nothing but the immutable plan.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "graph.hpp"

namespace lanes {

class Plan {
 public:
  // `inputs` are the placeholders the outputs were traced from, in call order; `donate[i]`
  // lets a replay write input i's memory in place (its caller gives it up). Throws a shape
  // error for outputs that do not depend on the inputs in a way a plan can hold.
  static std::shared_ptr<Plan> build(const std::vector<NodePtr>& inputs, const std::vector<NodePtr>& outputs, int scalars,
                                     const std::vector<bool>& donate);

  // Encodes one replay on `stream` and returns its outputs (scheduled, not waited for).
  // A donated input is written in place only when `inputs` holds its node's last reference.
  std::vector<NodePtr> run(const StreamPtr& stream, const std::vector<NodePtr>& inputs, const std::vector<double>& scalars);

  // What the tracer attached (the shape of the function's result, say); opaque here.
  std::string meta;

  size_t input_count() const { return inputs_.size(); }
  bool donates(size_t input) const { return inputs_.at(input).donated; }
  size_t output_count() const { return outputs_.size(); }
  int scalar_count() const { return scalars_; }
  size_t step_count() const { return steps_.size(); }
  size_t arena_bytes() const { return arena_bytes_; }

  ~Plan();

 private:
  struct Operand {
    int slot = -1;
    Shape shape;
    DType dtype = DType::Float32;
    Shape strides;       // empty: contiguous
    int64_t offset = 0;  // elements
  };
  struct Step {
    OpCode op;
    OpParams params;
    std::vector<Operand> inputs;
    Operand output;
  };
  // Elided: an intermediate of a fused chain, never stored.
  enum class SlotKind { Arena, Donated, Constant, Elided };
  struct Slot {
    SlotKind kind = SlotKind::Arena;
    size_t bytes = 0;
    size_t arena_offset = 0;
    int input = -1;                   // Donated: the input it is
    std::shared_ptr<Buffer> constant;  // Constant
    int first = 0, last = 0;          // Arena: steps that write it first and read it last
  };
  struct Input {
    Shape shape;
    DType dtype;
    int slot;
    bool donated;
  };
  struct Output {
    int slot;
    Shape shape;
    DType dtype;
  };
  // What one stream replays: the arena and the backend's instance, made for the donated
  // inputs' memory it was built with.
  // A plan made ready for one stream. A replay claims it until its epoch is encoded, and it is
  // not replayed again before that epoch completed: its error words are read at completion,
  // and the next replay clears them. A stream whose replays overlap gets more instances.
  struct Instance {
    std::shared_ptr<Buffer> arena;
    std::shared_ptr<PlanInstance> backend;
    std::vector<std::shared_ptr<Buffer>> scratch;
    std::vector<void*> donated;
    std::weak_ptr<Stream> stream;
    // Guarded by instances_mutex_:
    bool claimed = false;  // by a thread encoding a replay on it
  };

  bool fusable(const Step& step) const;
  void fuse_elementwise();
  void fold_casts_into_slice_updates();
  void fold_norms_into_matmuls();
  void count_readers(std::vector<int>& readers, std::vector<int>& writer) const;
  void renumber_first_writes();
  void drop_folded(const std::vector<bool>& folded);
  bool written_between(int from, int to) const;
  int matmul_feeding(const Operand& in, const Operand& out, const std::vector<int>& readers, const std::vector<int>& writer) const;
  int pair_product_feeding(const std::vector<Operand>& chain_inputs, const Operand& out, int last, const std::vector<int>& readers,
                           const std::vector<int>& writer) const;
  void lay_out_arena();
  // An instance for `stream` and these donated addresses, claimed; release() gives it back.
  std::shared_ptr<Instance> instance_for(const StreamPtr& stream, const std::vector<void*>& donated);
  void release(Instance& instance);
  void* address(const Instance& instance, int slot, const std::vector<void*>& donated) const;
  void check_scalars(const std::vector<double>& scalars) const;

  std::vector<Input> inputs_;
  std::vector<Output> outputs_;
  std::vector<Slot> slots_;
  std::vector<Step> steps_;
  std::vector<NodePtr> constants_;  // held by reference for the life of the plan
  int scalars_ = 0;
  size_t arena_bytes_ = 0;
  RankedMutex instances_mutex_{LockRank::Leaf, "plan instances"};
  std::map<uint64_t, std::vector<std::shared_ptr<Instance>>> instances_;  // by stream id, oldest first
};

}  // namespace lanes
