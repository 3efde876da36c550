// lb/least-connections: the target with the fewest requests in flight per unit of weight.
//
// The host calls on_start(i) when a request is sent to target i and on_done(i, ...) when it ends
// (exactly once per on_start), so the instance counts the requests in flight per target. A pick
// takes the eligible target with the lowest in_flight / weight, compared exactly as
// in_flight_a * weight_b < in_flight_b * weight_a. Ties are broken round robin: the scan starts
// just after the target picked last, so the first tied target in that order wins, and an idle
// cluster (every count 0) still spreads requests over every target in turn.
//
// The counts are per instance, that is per worker thread (each worker sees its own requests; no
// locking). A new target set keeps the counts of the targets that stay (matched by id, or address
// when there is no id); indices outside the current set are ignored, and a count never goes below
// zero.
//
// Eligible targets, in order of preference: healthy and not excluded; else (every target is
// unhealthy or excluded) not excluded, whatever the health (fail open); else none, and pick answers
// WEIR_ERROR_NOT_FOUND. A pick scans the targets once and does not allocate. No keys besides `use`.
#include "../common/in_flight.hpp"

#include <weir/sdk.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

class LeastConnections {
public:
  void on_targets(const std::vector<weir::sdk::Target>& targets) { load_.on_targets(targets); }
  void on_start(size_t index) { load_.on_start(index); }
  void on_done(size_t index, uint32_t status, uint64_t duration_ns) {
    load_.on_done(index, status, duration_ns);
  }

  std::optional<size_t> pick(const weir::sdk::PickRequest& req) {
    if (auto chosen = pick_among(req, /*require_healthy=*/true)) {
      return chosen;
    }
    return pick_among(req, /*require_healthy=*/false);
  }

private:
  std::optional<size_t> pick_among(const weir::sdk::PickRequest& req, bool require_healthy) {
    const auto& peers = load_.peers();
    const size_t n = peers.size();
    std::optional<size_t> best;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (next_ + k) % n;
      if (req.is_excluded(i) || (require_healthy && !peers[i].healthy)) {
        continue;
      }
      if (!best || weir::plugins::lb::less_loaded(peers[i], peers[*best])) {
        best = i;
      }
    }
    if (best) {
      next_ = (*best + 1) % n;
    }
    return best;
  }

  weir::plugins::lb::InFlight load_;
  size_t next_ = 0; // where the next scan starts
};

} // namespace

WEIR_SDK_PLUGIN("lb-least-connections", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir::sdk::NoConfig, LeastConnections>("least-connections"))
