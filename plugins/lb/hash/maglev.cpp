// lb/hash module `maglev`: Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer", NSDI 2016, section 3.4), weighted as Envoy does it.
//
// Each target has a permutation of the M slots (M prime): offset = h1(key) mod M,
// skip = h2(key) mod (M - 1) + 1, permutation[j] = (offset + j * skip) mod M, where h1 and h2 are
// two different hashes of the target's id (or address). Targets take turns claiming the next slot
// of their permutation that is still free, until the table is full. Weighted: in turn t (from 1) a
// target of weight w claims a slot only when the slots it already owns are at most
// t * w / max_weight, so the number of slots it owns is proportional to its weight (every target
// claims one in turn 1). A request key selects slot hash(key) mod M.
#include "balancers.hpp"

#include <algorithm>

namespace weir_lb_hash {

namespace sdk = weir::sdk;

namespace {

// The two hashes of a target key: FNV-1a 64 from two different offset bases, each finalized.
constexpr uint64_t offset_basis = fnv_offset_basis ^ 0x6d61676c65762d6fULL; // "maglev-o"
constexpr uint64_t skip_basis = fnv_offset_basis ^ 0x6d61676c65762d73ULL;   // "maglev-s"

/// The largest prime below `n` within the allowed sizes, or 0.
uint64_t prime_below(uint64_t n) {
  for (uint64_t p = n; p-- > maglev_min_table_size;) {
    if (is_prime(p)) {
      return p;
    }
  }
  return 0;
}

/// The smallest prime above `n` within the allowed sizes, or 0.
uint64_t prime_above(uint64_t n) {
  for (uint64_t p = n + 1; p <= maglev_max_table_size; ++p) {
    if (is_prime(p)) {
      return p;
    }
  }
  return 0;
}

} // namespace

bool is_prime(uint64_t n) noexcept {
  if (n < 2) {
    return false;
  }
  if (n % 2 == 0) {
    return n == 2;
  }
  for (uint64_t d = 3; d <= n / d; d += 2) {
    if (n % d == 0) {
      return false;
    }
  }
  return true;
}

MaglevConfig::MaglevConfig(sdk::ConfigReader& cfg) {
  cfg.expect_only_keys({"key", "name", "table-size"});
  key = KeySpec::read(cfg);
  if (const sdk::ConfigReader size = cfg.child("table-size")) {
    const std::optional<int64_t> v = size.as_int<int64_t>();
    if (!v) {
      return; // the type error is reported
    }
    const bool in_range = *v >= maglev_min_table_size && *v <= maglev_max_table_size;
    if (in_range && is_prime(static_cast<uint64_t>(*v))) {
      table_size = static_cast<uint32_t>(*v);
      return;
    }
    std::string msg =
        sdk::cat("must be a prime number between ", maglev_min_table_size, " and ",
                 maglev_max_table_size, " (default ", maglev_default_table_size, "), got ", *v);
    if (in_range) {
      const uint64_t below = prime_below(static_cast<uint64_t>(*v));
      const uint64_t above = prime_above(static_cast<uint64_t>(*v));
      if (below != 0 && above != 0) {
        msg += sdk::cat(" (the nearest primes are ", below, " and ", above, ")");
      } else if (below != 0 || above != 0) {
        msg += sdk::cat(" (the nearest prime is ", below != 0 ? below : above, ")");
      }
    }
    size.error(msg);
  }
}

Maglev::Maglev(sdk::Host host, const MaglevConfig& config)
    : host_(host), config_(config), rng_(seeded_rng()) {}

void Maglev::on_targets(const std::vector<sdk::Target>& targets) {
  std::vector<Peer> peers = read_peers(targets);
  const uint64_t m = config_.table_size;
  std::vector<uint32_t> table;
  if (!peers.empty()) {
    if (peers.size() > m) {
      host_.warn(peers.size(), " targets for a maglev table of ", m,
                 " slots: some targets get no slot (raise table-size)");
    }
    struct Entry {
      uint64_t position; // the next slot of the permutation to try
      uint64_t skip;
      uint64_t weight;
      uint64_t threshold = 0; // claims a slot in turn t when t * weight >= threshold
    };
    std::vector<Entry> entries;
    entries.reserve(peers.size());
    uint64_t max_weight = 1;
    for (const Peer& p : peers) {
      const uint64_t offset = fmix64(fnv1a64(p.key, offset_basis)) % m;
      const uint64_t skip = fmix64(fnv1a64(p.key, skip_basis)) % (m - 1) + 1;
      entries.push_back(Entry{offset, skip, p.weight});
      max_weight = std::max(max_weight, p.weight);
    }
    table.assign(m, empty_slot);
    uint64_t filled = 0;
    for (uint64_t turn = 1; filled < m; ++turn) {
      for (size_t i = 0; i < entries.size() && filled < m; ++i) {
        Entry& e = entries[i];
        if (turn * e.weight < e.threshold) {
          continue;
        }
        e.threshold += max_weight;
        while (table[e.position] != empty_slot) {
          e.position = (e.position + e.skip) % m;
        }
        table[e.position] = static_cast<uint32_t>(i);
        e.position = (e.position + e.skip) % m;
        ++filled;
      }
    }
  }
  peers_ = std::move(peers);
  table_ = std::move(table);
}

std::optional<size_t> Maglev::pick(const sdk::PickRequest& req) {
  const std::optional<Eligible> eligible = Eligible::of(peers_, req);
  if (!eligible) {
    return std::nullopt;
  }
  const std::optional<Key> key = request_key(config_.key, req);
  if (!key) {
    return weighted_random(peers_, *eligible, rng_);
  }
  const uint64_t hash = key_hash(*key);
  const size_t m = table_.size();
  const size_t start = static_cast<size_t>(hash % m);
  for (size_t k = 0; k < m; ++k) {
    const uint32_t peer = table_[(start + k) % m];
    if (peer != empty_slot && (*eligible)(peer)) {
      return peer;
    }
  }
  // Only targets without a slot (more targets than slots) are eligible.
  return next_eligible(static_cast<size_t>(hash % peers_.size()), peers_.size(), *eligible);
}

} // namespace weir_lb_hash
