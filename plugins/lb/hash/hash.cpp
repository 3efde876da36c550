// lb/hash module `hash`: FNV-1a 64 of the request key indexes the weighted list (see
// balancers.hpp).
#include "balancers.hpp"

#include <algorithm>

namespace weir_lb_hash {

namespace sdk = weir::sdk;

HashConfig::HashConfig(sdk::ConfigReader& cfg) {
  cfg.expect_only_keys({"key", "name"});
  key = KeySpec::read(cfg);
}

Hash::Hash(sdk::Host /*host*/, const HashConfig& config) : config_(config), rng_(seeded_rng()) {}

void Hash::on_targets(const std::vector<sdk::Target>& targets) {
  std::vector<Peer> peers = read_peers(targets);
  std::vector<uint64_t> ends;
  ends.reserve(peers.size());
  uint64_t total = 0;
  for (const Peer& p : peers) {
    total += p.weight;
    ends.push_back(total);
  }
  peers_ = std::move(peers);
  ends_ = std::move(ends);
}

std::optional<size_t> Hash::pick(const sdk::PickRequest& req) {
  const std::optional<Eligible> eligible = Eligible::of(peers_, req);
  if (!eligible) {
    return std::nullopt;
  }
  const std::optional<Key> key = request_key(config_.key, req);
  if (!key) {
    return weighted_random(peers_, *eligible, rng_);
  }
  // The weighted list is not stored: entry `index` belongs to the target whose range holds it,
  // and walking the list forward from there meets that target's remaining entries, then the
  // following targets in set order, wrapping.
  const uint64_t index = fnv1a64(*key) % ends_.back();
  const auto owner = std::upper_bound(ends_.begin(), ends_.end(), index) - ends_.begin();
  return next_eligible(static_cast<size_t>(owner), peers_.size(), *eligible);
}

} // namespace weir_lb_hash
