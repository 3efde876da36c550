// lb/p2c: power of two choices, least requests.
//
// A pick draws two distinct eligible targets at random, each with probability proportional to its
// weight (the second among the eligible targets other than the first), and takes the one with
// fewer requests in flight per unit of weight (in_flight_a * weight_b < in_flight_b * weight_a);
// on a tie, the first drawn. With one eligible target, that one. This follows the load almost as
// well as least-connections while never sending every new request to the same momentarily idle
// target, and it costs two draws instead of a comparison of every target.
//
// The host calls on_start(i) when a request is sent to target i and on_done(i, ...) when it ends
// (exactly once per on_start). The counts are per instance, that is per worker thread (no
// locking). A new target set keeps the counts of the targets that stay (matched by id, or address
// when there is no id); indices outside the current set are ignored, and a count never goes below
// zero. Every instance has its own generator (a 64-bit Mersenne Twister seeded from
// std::random_device).
//
// Eligible targets, in order of preference: healthy and not excluded; else (every target is
// unhealthy or excluded) not excluded, whatever the health (fail open); else none, and pick answers
// WEIR_ERROR_NOT_FOUND. A pick walks the target list at most three times and does not allocate. No
// keys besides `use`.
#include "../common/in_flight.hpp"

#include <weir/sdk.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

class P2c {
public:
  P2c() : rng_(seed()) {}

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
  static constexpr size_t none = static_cast<size_t>(-1);

  static uint64_t seed() {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }

  [[nodiscard]] bool eligible(const weir::sdk::PickRequest& req, size_t i,
                              bool require_healthy) const noexcept {
    return !req.is_excluded(i) && (!require_healthy || load_.peers()[i].healthy);
  }

  /// A weighted draw among the eligible targets other than `skip`, whose weights sum to `total`.
  size_t draw(const weir::sdk::PickRequest& req, bool require_healthy, uint64_t total,
              size_t skip) {
    uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng_);
    size_t last = none;
    for (size_t i = 0; i < load_.peers().size(); ++i) {
      if (i == skip || !eligible(req, i, require_healthy)) {
        continue;
      }
      if (r < load_.peers()[i].weight) {
        return i;
      }
      r -= load_.peers()[i].weight;
      last = i;
    }
    return last; // not reached: r < total
  }

  std::optional<size_t> pick_among(const weir::sdk::PickRequest& req, bool require_healthy) {
    uint64_t total = 0;
    size_t count = 0;
    size_t only = none;
    for (size_t i = 0; i < load_.peers().size(); ++i) {
      if (eligible(req, i, require_healthy)) {
        total += load_.peers()[i].weight;
        ++count;
        only = i;
      }
    }
    if (count == 0) {
      return std::nullopt;
    }
    if (count == 1) {
      return only;
    }
    const size_t a = draw(req, require_healthy, total, none);
    const size_t b = draw(req, require_healthy, total - load_.peers()[a].weight, a);
    const weir::plugins::lb::LoadedPeer& pa = load_.peers()[a];
    const weir::plugins::lb::LoadedPeer& pb = load_.peers()[b];
    return weir::plugins::lb::less_loaded(pb, pa) ? b : a;
  }

  weir::plugins::lb::InFlight load_;
  std::mt19937_64 rng_;
};

} // namespace

WEIR_SDK_PLUGIN("lb-p2c", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir::sdk::NoConfig, P2c>("p2c"))
