// lb/hash: the three hash balancers of the library. Each maps the request key (key.hpp) to a
// target, the same key always to the same target while the target set does not change:
//
//  - `hash`: FNV-1a 64 of the key, modulo the sum of the weights, indexes the weighted list (each
//    target repeated `weight` times, in set order). Simple and even, but a change of the set moves
//    most keys.
//  - `ketama`: consistent hashing with libketama's ring (MD5 points, 160 per target of average
//    weight), so a client library using libketama and weir agree; removing one of N targets moves
//    only the keys of that target (about 1/N).
//  - `maglev`: Google's Maglev lookup table (a prime number of slots, filled from per-target
//    permutations in proportion to weight): O(1) picks, near-perfect balance, and about 1/N of the
//    keys move when one of N targets goes.
//
// When the target a key maps to is not eligible (unhealthy, or excluded because this request
// already tried it), the pick takes the next candidate in the policy's own order: the next
// targets of the weighted list (`hash`), the next points of the ring (`ketama`), the next slots of
// the table (`maglev`), so a given key fails over to the same target every time. A request without
// the key (no request, no such header, cookie or query parameter) gets a weighted random pick.
//
// Tables are built in on_targets only, never during a pick. A pick of `hash` or `maglev` does not
// allocate; `ketama` reuses its key buffer and digest context, but OpenSSL may allocate inside the
// MD5 computation. One instance per worker thread, so no locking.
#pragma once

#include "key.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace weir_lb_hash {

// ------------------------------------------------------------------------------------------------
// hash
// ------------------------------------------------------------------------------------------------

/// Configuration of `hash`: `key` and `name`.
struct HashConfig {
  explicit HashConfig(weir::sdk::ConfigReader& cfg);
  KeySpec key;
};

class Hash {
public:
  Hash(weir::sdk::Host host, const HashConfig& config);
  void on_targets(const std::vector<weir::sdk::Target>& targets);
  std::optional<size_t> pick(const weir::sdk::PickRequest& req);

private:
  const HashConfig& config_;
  std::vector<Peer> peers_;
  std::vector<uint64_t> ends_; ///< target i owns [ends_[i-1], ends_[i]) of the weighted list
  std::mt19937_64 rng_;
};

// ------------------------------------------------------------------------------------------------
// ketama
// ------------------------------------------------------------------------------------------------

/// MD5 through OpenSSL's EVP interface, with a context reused across digests.
class Md5 {
public:
  using Digest = std::array<unsigned char, 16>;
  /// Throws std::runtime_error when OpenSSL offers no MD5 (e.g. a FIPS-only configuration).
  Md5();
  /// True when OpenSSL can compute MD5 here.
  static bool available() noexcept;
  /// MD5 of `data`. Throws std::runtime_error on an OpenSSL failure.
  Digest digest(std::string_view data);

private:
  struct FreeMd {
    void operator()(EVP_MD* md) const noexcept { EVP_MD_free(md); }
  };
  struct FreeCtx {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD, FreeMd> md_;
  std::unique_ptr<EVP_MD_CTX, FreeCtx> ctx_;
};

/// Configuration of `ketama`: `key` and `name`.
struct KetamaConfig {
  explicit KetamaConfig(weir::sdk::ConfigReader& cfg);
  KeySpec key;
};

class Ketama {
public:
  Ketama(weir::sdk::Host host, const KetamaConfig& config);
  void on_targets(const std::vector<weir::sdk::Target>& targets);
  std::optional<size_t> pick(const weir::sdk::PickRequest& req);

  /// libketama's number of digests (4 points each) for a target of weight `weight` among `n`
  /// targets weighing `total` together: floorf((float)weight / (float)total * 40.0 * (float)n).
  static uint32_t digests_for(uint64_t weight, uint64_t total, size_t n) noexcept;
  /// Point `h` (0 to 3) of a digest, as libketama reads it (little-endian 4-byte groups).
  static uint32_t point_of(const Md5::Digest& d, size_t h) noexcept;

private:
  struct Point {
    uint32_t point;
    uint32_t peer;
  };
  const KetamaConfig& config_;
  std::vector<Peer> peers_;
  std::vector<Point> ring_; ///< sorted by point
  Md5 md5_;
  std::string key_buf_;
  std::mt19937_64 rng_;
};

// ------------------------------------------------------------------------------------------------
// maglev
// ------------------------------------------------------------------------------------------------

inline constexpr uint32_t maglev_default_table_size = 65537;
inline constexpr uint32_t maglev_min_table_size = 251;
inline constexpr uint32_t maglev_max_table_size = 1000003;

/// Configuration of `maglev`: `key`, `name` and `table-size`.
struct MaglevConfig {
  explicit MaglevConfig(weir::sdk::ConfigReader& cfg);
  KeySpec key;
  uint32_t table_size = maglev_default_table_size;
};

/// True when `n` is prime.
[[nodiscard]] bool is_prime(uint64_t n) noexcept;

class Maglev {
public:
  Maglev(weir::sdk::Host host, const MaglevConfig& config);
  void on_targets(const std::vector<weir::sdk::Target>& targets);
  std::optional<size_t> pick(const weir::sdk::PickRequest& req);

  /// The hash of a request key that selects a slot (slot = hash % table size).
  static uint64_t key_hash(const Key& key) noexcept { return fmix64(fnv1a64(key)); }

private:
  static constexpr uint32_t empty_slot = std::numeric_limits<uint32_t>::max();
  weir::sdk::Host host_;
  const MaglevConfig& config_;
  std::vector<Peer> peers_;
  std::vector<uint32_t> table_; ///< slot -> target index; empty when there is no target
  std::mt19937_64 rng_;
};

} // namespace weir_lb_hash
