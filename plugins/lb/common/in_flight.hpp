// Requests in flight per target, for the load balancers that pick by load (least-connections,
// p2c). Header-only: each plugin library compiles its own copy against the SDK.
//
// The host calls on_start(i) when a request is sent to target i and on_done(i, ...) when it ends
// (exactly once per on_start). A new target set keeps the counts of the targets that stay
// (matched by key: id, or address when there is no id; a key listed twice inherits its count
// once); indices outside the current set are ignored, and a count never goes below zero. One
// instance per worker thread: no locking.
#pragma once

#include <weir/sdk.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace weir::plugins::lb {

struct LoadedPeer {
  std::string key;
  uint64_t weight = 1; // never 0 (a weight of 0 counts as 1)
  uint64_t in_flight = 0;
  bool healthy = true;
};

/// True when a carries fewer requests per unit of weight than b, compared exactly:
/// in_flight_a * weight_b < in_flight_b * weight_a.
[[nodiscard]] inline bool less_loaded(const LoadedPeer& a, const LoadedPeer& b) noexcept {
  return a.in_flight * b.weight < b.in_flight * a.weight;
}

class InFlight {
public:
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    std::unordered_map<std::string, uint64_t> previous;
    for (const LoadedPeer& p : peers_) {
      previous.emplace(p.key, p.in_flight);
    }
    std::vector<LoadedPeer> next;
    next.reserve(targets.size());
    for (const weir::sdk::Target& t : targets) {
      LoadedPeer p;
      p.key = std::string(t.key());
      p.weight = t.weight == 0 ? 1 : t.weight;
      p.healthy = t.healthy;
      if (auto it = previous.find(p.key); it != previous.end()) {
        p.in_flight = it->second;
        previous.erase(it);
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

  [[nodiscard]] const std::vector<LoadedPeer>& peers() const noexcept { return peers_; }

private:
  std::vector<LoadedPeer> peers_;
};

} // namespace weir::plugins::lb
