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
#include <weir/sdk.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

class LeastConnections {
public:
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    std::unordered_map<std::string, uint64_t> previous;
    for (const Peer& p : peers_) {
      previous.emplace(p.key, p.in_flight);
    }
    std::vector<Peer> next;
    next.reserve(targets.size());
    for (const weir::sdk::Target& t : targets) {
      Peer p;
      p.key = std::string(t.key());
      p.weight = t.weight == 0 ? 1 : t.weight;
      p.healthy = t.healthy;
      if (auto it = previous.find(p.key); it != previous.end()) {
        p.in_flight = it->second;
        previous.erase(it); // a key listed twice inherits its count once
      }
      next.push_back(std::move(p));
    }
    peers_ = std::move(next);
  }

  void on_start(size_t index) {
    if (index < peers_.size()) {
      ++peers_[index].in_flight;
    }
  }

  void on_done(size_t index, uint32_t /*status*/, uint64_t /*duration_ns*/) {
    if (index < peers_.size() && peers_[index].in_flight > 0) {
      --peers_[index].in_flight;
    }
  }

  std::optional<size_t> pick(const weir::sdk::PickRequest& req) {
    if (auto chosen = pick_among(req, /*require_healthy=*/true)) {
      return chosen;
    }
    return pick_among(req, /*require_healthy=*/false);
  }

private:
  struct Peer {
    std::string key;
    uint64_t weight = 1;
    uint64_t in_flight = 0;
    bool healthy = true;
  };

  /// True when a carries fewer requests per unit of weight than b.
  [[nodiscard]] bool less_loaded(const Peer& a, const Peer& b) const noexcept {
    return a.in_flight * b.weight < b.in_flight * a.weight;
  }

  std::optional<size_t> pick_among(const weir::sdk::PickRequest& req, bool require_healthy) {
    const size_t n = peers_.size();
    std::optional<size_t> best;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (next_ + k) % n;
      if (req.is_excluded(i) || (require_healthy && !peers_[i].healthy)) {
        continue;
      }
      if (!best || less_loaded(peers_[i], peers_[*best])) {
        best = i;
      }
    }
    if (best) {
      next_ = (*best + 1) % n;
    }
    return best;
  }

  std::vector<Peer> peers_;
  size_t next_ = 0; // where the next scan starts
};

} // namespace

WEIR_SDK_PLUGIN("lb-least-connections", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir::sdk::NoConfig, LeastConnections>("least-connections"))
