// lb/hash: what the three hash balancers (`hash`, `ketama`, `maglev`) share: the request key
// (`key` and `name`), the 64-bit hashes, the target list, the eligibility rule and the weighted
// random fallback.
//
// Eligibility, the same in every module (and as round-robin does it): a pick uses the targets that
// are healthy and not excluded; when none is, the targets that are not excluded whatever their
// health (fail open); when every target is excluded there is none and pick answers
// WEIR_ERROR_NOT_FOUND.
#pragma once

#include <weir/sdk.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace weir_lb_hash {

// ------------------------------------------------------------------------------------------------
// The request key
// ------------------------------------------------------------------------------------------------

/// Where the key of a request comes from (`key = "..."`).
enum class KeySource { ClientIp, Path, Uri, Header, Cookie, Query };

/// The configured key: `key` and, for header, cookie and query, `name`.
struct KeySpec {
  KeySource source = KeySource::ClientIp;
  std::string name; ///< header, cookie or query parameter name; empty for the other sources

  /// Read `key` and `name` from a module's table, reporting problems through `cfg`.
  static KeySpec read(const weir::sdk::ConfigReader& cfg);
};

/// The key of one request, viewing the request: up to three pieces hashed as one string (the
/// `uri` key is path, "?", query without copying them). Valid only during the pick.
struct Key {
  std::array<std::string_view, 3> parts{};
  size_t count = 0;

  /// Append a piece.
  void add(std::string_view s) noexcept { parts[count++] = s; }
  /// Total length in bytes.
  [[nodiscard]] size_t size() const noexcept;
  /// Copy the key into `out` (reusing its capacity).
  void copy_to(std::string& out) const;
};

/// The key of the request of `req`, or nullopt when it has none: no request, no such header,
/// cookie or query parameter, or an empty client address. Never allocates.
[[nodiscard]] std::optional<Key> request_key(const KeySpec& spec,
                                             const weir::sdk::PickRequest& req);

/// The value of cookie `name` in one Cookie header value ("a=1; b=2"): the first pair with
/// exactly that name, its value as is (surrounding blanks removed). nullopt when absent.
[[nodiscard]] std::optional<std::string_view> find_cookie(std::string_view header,
                                                          std::string_view name) noexcept;

/// The value of parameter `name` in a query ("a=1&b=2", without '?'): the first parameter with
/// exactly that name, its value as is (no percent-decoding; "" for "a" or "a="). nullopt when
/// absent.
[[nodiscard]] std::optional<std::string_view> find_query_param(std::string_view query,
                                                               std::string_view name) noexcept;

// ------------------------------------------------------------------------------------------------
// Hashes
// ------------------------------------------------------------------------------------------------

inline constexpr uint64_t fnv_offset_basis = 14695981039346656037ULL;
inline constexpr uint64_t fnv_prime = 1099511628211ULL;

/// FNV-1a 64 of `s`, continuing from `h`.
[[nodiscard]] constexpr uint64_t fnv1a64(std::string_view s,
                                         uint64_t h = fnv_offset_basis) noexcept {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= fnv_prime;
  }
  return h;
}

/// FNV-1a 64 of a request key (its pieces as one string).
[[nodiscard]] constexpr uint64_t fnv1a64(const Key& key, uint64_t h = fnv_offset_basis) noexcept {
  for (size_t i = 0; i < key.count; ++i) {
    h = fnv1a64(key.parts[i], h);
  }
  return h;
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over every output bit.
[[nodiscard]] constexpr uint64_t fmix64(uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// ------------------------------------------------------------------------------------------------
// Targets and eligibility
// ------------------------------------------------------------------------------------------------

/// One target as the balancers keep it.
struct Peer {
  std::string key;     ///< Target::key(): the id, or the address
  uint64_t weight = 1; ///< >= 1
  bool healthy = true;
};

/// Copy a target set.
[[nodiscard]] std::vector<Peer> read_peers(const std::vector<weir::sdk::Target>& targets);

/// Which targets one pick may use (see the file comment).
class Eligible {
public:
  /// The rule for `req` over `peers`; nullopt when every target is excluded (or there is none).
  static std::optional<Eligible> of(const std::vector<Peer>& peers,
                                    const weir::sdk::PickRequest& req) noexcept;
  /// True when target `i` may be picked.
  [[nodiscard]] bool operator()(size_t i) const noexcept {
    return !req_->is_excluded(i) && (!require_healthy_ || (*peers_)[i].healthy);
  }

private:
  Eligible(const std::vector<Peer>& peers, const weir::sdk::PickRequest& req,
           bool require_healthy) noexcept
      : peers_(&peers), req_(&req), require_healthy_(require_healthy) {}
  const std::vector<Peer>* peers_;
  const weir::sdk::PickRequest* req_;
  bool require_healthy_;
};

/// A weighted random choice among the eligible targets (at least one must be eligible).
[[nodiscard]] size_t weighted_random(const std::vector<Peer>& peers, const Eligible& eligible,
                                     std::mt19937_64& rng);

/// The first eligible target at or after `start` in set order, wrapping (at least one must be
/// eligible).
[[nodiscard]] size_t next_eligible(size_t start, size_t n, const Eligible& eligible) noexcept;

/// A generator seeded from std::random_device.
[[nodiscard]] std::mt19937_64 seeded_rng();

} // namespace weir_lb_hash
