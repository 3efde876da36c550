// lb/round-robin: smooth weighted round robin, as nginx does it.
//
// Each pick adds every eligible target's weight to its running `current`, chooses the target with
// the largest `current` (the first one on a tie) and subtracts the total eligible weight from it.
// Over any window of sum(weights) picks each target is chosen exactly `weight` times, spread out
// evenly: weights {5, 1, 1} give a a b a c a a.
//
// Eligible targets, in order of preference: healthy and not excluded; else (every target is
// unhealthy or excluded) not excluded, whatever the health (fail open); else none, and pick answers
// WEIR_ERROR_NOT_FOUND. One instance per worker thread, so no locking. No keys besides `use`.
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

class RoundRobin {
public:
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    // Keep the running weight of targets that stay, so a health change or a re-publish does not
    // restart the sequence.
    std::unordered_map<std::string, int64_t> previous;
    for (const Peer& p : peers_) {
      previous.emplace(p.key, p.current);
    }
    std::vector<Peer> next;
    next.reserve(targets.size());
    for (const weir::sdk::Target& t : targets) {
      Peer p;
      p.key = std::string(t.key());
      p.weight = t.weight == 0 ? 1 : static_cast<int64_t>(t.weight);
      p.healthy = t.healthy;
      if (auto it = previous.find(p.key); it != previous.end()) {
        p.current = it->second;
      }
      next.push_back(std::move(p));
    }
    peers_ = std::move(next);
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
    int64_t weight = 1;
    int64_t current = 0;
    bool healthy = true;
  };

  std::optional<size_t> pick_among(const weir::sdk::PickRequest& req, bool require_healthy) {
    std::optional<size_t> best;
    int64_t total = 0;
    for (size_t i = 0; i < peers_.size(); ++i) {
      Peer& p = peers_[i];
      if (req.is_excluded(i) || (require_healthy && !p.healthy)) {
        continue;
      }
      p.current += p.weight;
      total += p.weight;
      if (!best || p.current > peers_[*best].current) {
        best = i;
      }
    }
    if (best) {
      peers_[*best].current -= total;
    }
    return best;
  }

  std::vector<Peer> peers_;
};

} // namespace

WEIR_SDK_PLUGIN("lb-round-robin", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir::sdk::NoConfig, RoundRobin>("round-robin"))
