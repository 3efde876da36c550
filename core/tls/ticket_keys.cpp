#include "core/tls/ticket_keys.hpp"

#include "core/tls/openssl_util.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstring>

namespace weir::core::tls {

namespace {

constexpr std::chrono::milliseconds kMaxInterval = std::chrono::hours(12);
constexpr std::chrono::milliseconds kMinInterval = std::chrono::seconds(1);

// The SSL_CTX ex_data slot holding a heap `std::shared_ptr<TicketKeys>`, freed with the context.
void free_ring(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<TicketKeys>*>(ptr);
}

int ring_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_ring);
  return index;
}

} // namespace

// One ticket key (OpenSSL's callback works on 16-byte key names): a name (sent in the clear in the
// ticket, to find the key again), an AES-256-CBC key and an HMAC-SHA256 key, as RFC 5077 section 4
// suggests.
struct TicketKeys::Key {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
  std::chrono::steady_clock::time_point created; // when it became the current key

  Key() = default;
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
  ~Key() {
    OPENSSL_cleanse(name, sizeof(name));
    OPENSSL_cleanse(aes, sizeof(aes));
    OPENSSL_cleanse(hmac, sizeof(hmac));
  }
};

std::chrono::milliseconds TicketKeys::interval_for(std::chrono::milliseconds session_timeout) {
  return std::clamp(session_timeout / 2, kMinInterval, kMaxInterval);
}

size_t TicketKeys::keep_for(std::chrono::milliseconds session_timeout,
                            std::chrono::milliseconds interval) {
  if (interval.count() <= 0)
    return 1;
  auto n = (session_timeout.count() + interval.count() - 1) / interval.count();
  return std::clamp<size_t>(n > 0 ? static_cast<size_t>(n) : 1, 1, kMaxKeep);
}

TicketKeys::TicketKeys(std::chrono::milliseconds interval, size_t keep, Clock clock)
    : interval_(std::max(interval, std::chrono::milliseconds(1))), keep_(keep),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

TicketKeys::~TicketKeys() = default;

std::shared_ptr<TicketKeys> TicketKeys::create(std::chrono::milliseconds interval, size_t keep,
                                               std::string& error, Clock clock) {
  std::shared_ptr<TicketKeys> keys(new TicketKeys(interval, keep, std::move(clock)));
  std::lock_guard lock(keys->mutex_);
  if (!keys->push_locked(keys->clock_())) {
    error = "cannot make a session ticket key: " + openssl_error();
    return nullptr;
  }
  return keys;
}

bool TicketKeys::push_locked(std::chrono::steady_clock::time_point created) {
  auto key = std::make_unique<Key>();
  if (RAND_bytes(key->name, sizeof(key->name)) != 1 ||
      RAND_bytes(key->aes, sizeof(key->aes)) != 1 || RAND_bytes(key->hmac, sizeof(key->hmac)) != 1)
    return false;
  key->created = created;
  keys_.push_front(std::move(key));
  ++generation_;
  while (keys_.size() > keep_ + 1)
    keys_.pop_back(); // ~Key wipes it
  return true;
}

void TicketKeys::rotate_due_locked(std::chrono::steady_clock::time_point now) {
  const auto since = now - keys_.front()->created;
  if (since < interval_)
    return;
  // Whole intervals since the current key took over (>= 1).
  const auto due = static_cast<int64_t>(since / interval_);
  const auto base = keys_.front()->created;
  // The keys of intervals nobody asked for a ticket in never encrypted anything: past `keep + 1`
  // of them, only the newest matters (every older one would have been pushed out anyway).
  const auto keep = static_cast<int64_t>(keep_);
  const int64_t first = due > keep + 1 ? due - keep : 1;
  for (int64_t k = first; k <= due; ++k) {
    if (!push_locked(base + k * interval_)) {
      // No randomness: keep encrypting with the current key rather than failing handshakes.
      ERR_clear_error();
      return;
    }
  }
}

bool TicketKeys::rotate() {
  std::lock_guard lock(mutex_);
  return push_locked(clock_());
}

void TicketKeys::set_clock(Clock clock) {
  std::lock_guard lock(mutex_);
  clock_ = std::move(clock);
}

size_t TicketKeys::size() const {
  std::lock_guard lock(mutex_);
  return keys_.size();
}

uint64_t TicketKeys::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

bool TicketKeys::attach(SSL_CTX* ctx, const std::shared_ptr<TicketKeys>& keys) {
  auto* holder = new std::shared_ptr<TicketKeys>(keys);
  if (SSL_CTX_set_ex_data(ctx, ring_index(), holder) != 1) {
    delete holder;
    return false;
  }
  return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::callback) == 1;
}

int TicketKeys::callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                         EVP_MAC_CTX* hctx, int enc) {
  // OpenSSL calls the callback of the session context (the listener's base context); the SNI
  // callback may since have moved the connection to a certificate's context. Both hold the ring.
  auto* holder = static_cast<std::shared_ptr<TicketKeys>*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ring_index()));
  if (holder == nullptr || !*holder)
    return 0; // no ticket; the session cache still works
  return enc != 0 ? (*holder)->encrypt(key_name, iv, cctx, hctx)
                  : (*holder)->decrypt(key_name, iv, cctx, hctx);
}

namespace {

bool set_hmac_key(EVP_MAC_CTX* hctx, unsigned char* key, size_t len) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

} // namespace

// 1: ticket made with the current key. 0: no ticket this time (the handshake goes on).
int TicketKeys::encrypt(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                        EVP_MAC_CTX* hctx) {
  std::lock_guard lock(mutex_);
  rotate_due_locked(clock_());
  Key& key = *keys_.front();
  const auto iv_len = static_cast<size_t>(EVP_CIPHER_get_iv_length(EVP_aes_256_cbc()));
  if (RAND_bytes(iv, static_cast<int>(iv_len)) != 1 ||
      EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1 ||
      !set_hmac_key(hctx, key.hmac, sizeof(key.hmac))) {
    ERR_clear_error();
    return 0;
  }
  std::memcpy(key_name, key.name, sizeof(key.name));
  return 1;
}

// 1: decrypted with the current key. 2: decrypted with a retired key (OpenSSL issues a fresh
// ticket). 0: unknown key (retired too long ago, or another listener's): full handshake.
int TicketKeys::decrypt(const unsigned char* key_name, const unsigned char* iv,
                        EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx) {
  std::lock_guard lock(mutex_);
  rotate_due_locked(clock_());
  for (size_t i = 0; i < keys_.size(); ++i) {
    Key& key = *keys_[i];
    if (CRYPTO_memcmp(key.name, key_name, sizeof(key.name)) != 0)
      continue;
    if (!set_hmac_key(hctx, key.hmac, sizeof(key.hmac)) ||
        EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) {
      ERR_clear_error();
      return 0;
    }
    return i == 0 ? 1 : 2;
  }
  return 0;
}

} // namespace weir::core::tls
