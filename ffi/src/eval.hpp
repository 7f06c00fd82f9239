// Evaluation: plan on the host without stream locks, encode per stream under its op lock,
// and wait on timelines. Shared nodes are computed exactly once across concurrent evaluations.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "graph.hpp"

namespace lanes {

// Makes sure every node reachable from `outputs` is scheduled (by this call or a concurrent
// one) and that the work is committed, started as `start` says (OnDemand: this thread waits
// for it next). Does not wait for the device.
void schedule(const std::vector<NodePtr>& outputs, Start start);

// Blocks until `node` is computed; throws its error (device, disposed) if it has one.
void wait_ready(const Node& node);

// Works on the outputs' committed work on this thread (Timeline::run_until) until `deadline`
// at most; returns whether every output is then computed without error. Requires
// schedule(outputs) first.
bool run_until(const std::vector<NodePtr>& outputs, std::chrono::steady_clock::time_point deadline);

// Calls `done(status)` once every output is computed (on a completion thread, or now).
// Requires schedule(outputs) first.
void when_ready(const std::vector<NodePtr>& outputs, std::function<void(lanes_status)> done);

}  // namespace lanes
