// lb/hash module `ketama`: consistent hashing on libketama's continuum (see balancers.hpp).
//
// The ring, exactly as libketama builds it (so weir and a libketama client agree on where a key
// goes): target i gets floorf(weight_i / total_weight * 40.0 * n) digests, the MD5 of "<key>-<k>"
// for k = 0, 1, ... (<key> = the target's id, or its address), and each digest gives 4 points, its
// 4-byte groups read little-endian. A request key hashes to the first group of its own MD5, and
// goes to the first point at or after that hash, wrapping to the first point.
#include "balancers.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace weir_lb_hash {

namespace sdk = weir::sdk;

// --- MD5 -----------------------------------------------------------------------------------------

Md5::Md5() : md_(EVP_MD_fetch(nullptr, "MD5", nullptr)), ctx_(EVP_MD_CTX_new()) {
  if (!md_ || !ctx_) {
    throw std::runtime_error("OpenSSL offers no MD5 here (is only a FIPS provider loaded?)");
  }
}

bool Md5::available() noexcept {
  EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  if (md == nullptr) {
    return false;
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const bool ok = EVP_Digest("", 0, out, &len, md, nullptr) == 1 && len == 16;
  EVP_MD_free(md);
  return ok;
}

Md5::Digest Md5::digest(std::string_view data) {
  Digest out{};
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(ctx_.get(), md_.get(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1 || len != out.size()) {
    throw std::runtime_error("OpenSSL failed to compute an MD5 digest");
  }
  return out;
}

// --- configuration -------------------------------------------------------------------------------

KetamaConfig::KetamaConfig(sdk::ConfigReader& cfg) {
  cfg.expect_only_keys({"key", "name"});
  key = KeySpec::read(cfg);
  if (!Md5::available()) {
    cfg.error("ketama needs MD5, which OpenSSL does not offer here (is only a FIPS provider "
              "loaded?); use maglev instead");
  }
}

// --- the balancer --------------------------------------------------------------------------------

Ketama::Ketama(sdk::Host /*host*/, const KetamaConfig& config)
    : config_(config), rng_(seeded_rng()) {}

uint32_t Ketama::digests_for(uint64_t weight, uint64_t total, size_t n) noexcept {
  // libketama: float pct = (float)memory / (float)totalmemory;
  //            unsigned int ks = floorf(pct * 40.0 * (float)numservers);
  // pct * 40.0 is computed in double, and floorf's argument is that double rounded to float.
  const float pct = static_cast<float>(weight) / static_cast<float>(total);
  const double points =
      static_cast<double>(pct) * 40.0 * static_cast<double>(static_cast<float>(n));
  return static_cast<uint32_t>(std::floor(static_cast<float>(points)));
}

uint32_t Ketama::point_of(const Md5::Digest& d, size_t h) noexcept {
  return (static_cast<uint32_t>(d[3 + h * 4]) << 24) | (static_cast<uint32_t>(d[2 + h * 4]) << 16) |
         (static_cast<uint32_t>(d[1 + h * 4]) << 8) | static_cast<uint32_t>(d[h * 4]);
}

void Ketama::on_targets(const std::vector<sdk::Target>& targets) {
  std::vector<Peer> peers = read_peers(targets);
  uint64_t total = 0;
  for (const Peer& p : peers) {
    total += p.weight;
  }
  std::vector<Point> ring;
  std::string name;
  for (size_t i = 0; i < peers.size(); ++i) {
    const uint32_t digests = digests_for(peers[i].weight, total, peers.size());
    ring.reserve(ring.size() + size_t{digests} * 4);
    for (uint32_t k = 0; k < digests; ++k) {
      name = peers[i].key;
      name += '-';
      name += std::to_string(k);
      const Md5::Digest d = md5_.digest(name);
      for (size_t h = 0; h < 4; ++h) {
        ring.push_back(Point{point_of(d, h), static_cast<uint32_t>(i)});
      }
    }
  }
  // Equal points (rare) are ordered by set order, so every worker builds the same ring.
  std::sort(ring.begin(), ring.end(), [](const Point& a, const Point& b) {
    return a.point != b.point ? a.point < b.point : a.peer < b.peer;
  });
  peers_ = std::move(peers);
  ring_ = std::move(ring);
}

std::optional<size_t> Ketama::pick(const sdk::PickRequest& req) {
  const std::optional<Eligible> eligible = Eligible::of(peers_, req);
  if (!eligible) {
    return std::nullopt;
  }
  const std::optional<Key> key = request_key(config_.key, req);
  if (!key) {
    return weighted_random(peers_, *eligible, rng_);
  }
  key->copy_to(key_buf_);
  const uint32_t hash = point_of(md5_.digest(key_buf_), 0);
  if (!ring_.empty()) {
    const auto first = std::lower_bound(ring_.begin(), ring_.end(), hash,
                                        [](const Point& p, uint32_t h) { return p.point < h; });
    const size_t start = first == ring_.end() ? 0 : static_cast<size_t>(first - ring_.begin());
    for (size_t k = 0; k < ring_.size(); ++k) {
      const Point& p = ring_[(start + k) % ring_.size()];
      if ((*eligible)(p.peer)) {
        return p.peer;
      }
    }
  }
  // Only targets without points (a weight too small for one digest) are eligible.
  return next_eligible(hash % peers_.size(), peers_.size(), *eligible);
}

} // namespace weir_lb_hash
