// Evaluation: plan on the host without stream locks, encode per stream under its op lock,
// and wait on timelines. Shared nodes are computed exactly once across concurrent evaluations.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "graph.hpp"

namespace lanes {

// Makes sure every node reachable from `outputs` is scheduled (by this call or a concurrent
// one) and that the work is committed. Does not wait for the device.
void schedule(const std::vector<NodePtr>& outputs);

// Blocks until `node` is computed; throws its error (device, disposed) if it has one.
void wait_ready(const Node& node);

// Calls `done(status)` once every output is computed (on a completion thread, or now).
// Requires schedule(outputs) first.
void when_ready(const std::vector<NodePtr>& outputs, std::function<void(lanes_status)> done);

}  // namespace lanes
