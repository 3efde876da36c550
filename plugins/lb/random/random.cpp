// lb/random: weighted random choice.
//
// Each pick draws one target at random, with probability weight / (sum of the eligible weights).
// Every instance (one per worker thread) has its own generator (a 64-bit Mersenne Twister seeded
// from std::random_device), so workers draw independently and need no locking. A pick walks the
// target list twice (sum, then draw) and does not allocate.
//
// Eligible targets, in order of preference: healthy and not excluded; else (every target is
// unhealthy or excluded) not excluded, whatever the health (fail open); else none, and pick answers
// WEIR_ERROR_NOT_FOUND. No keys besides `use`.
#include <weir/sdk.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

class Random {
public:
  Random() : rng_(seed()) {}

  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    std::vector<Peer> next;
    next.reserve(targets.size());
    for (const weir::sdk::Target& t : targets) {
      next.push_back(Peer{t.weight == 0 ? 1 : uint64_t{t.weight}, t.healthy});
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
    uint64_t weight = 1;
    bool healthy = true;
  };

  static uint64_t seed() {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }

  [[nodiscard]] bool eligible(const weir::sdk::PickRequest& req, size_t i,
                              bool require_healthy) const noexcept {
    return !req.is_excluded(i) && (!require_healthy || peers_[i].healthy);
  }

  std::optional<size_t> pick_among(const weir::sdk::PickRequest& req, bool require_healthy) {
    uint64_t total = 0;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (eligible(req, i, require_healthy)) {
        total += peers_[i].weight;
      }
    }
    if (total == 0) {
      return std::nullopt;
    }
    uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng_);
    std::optional<size_t> last;
    for (size_t i = 0; i < peers_.size(); ++i) {
      if (!eligible(req, i, require_healthy)) {
        continue;
      }
      if (r < peers_[i].weight) {
        return i;
      }
      r -= peers_[i].weight;
      last = i;
    }
    return last; // not reached: r < total
  }

  std::vector<Peer> peers_;
  std::mt19937_64 rng_;
};

} // namespace

WEIR_SDK_PLUGIN("lb-random", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir::sdk::NoConfig, Random>("random"))
