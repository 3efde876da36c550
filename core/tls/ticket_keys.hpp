// Session ticket keys of one TLS listener, rotated on a schedule.
//
// A small ring of keys shared by every OpenSSL context of the listener (the base context and the
// context of each certificate, so whichever context a handshake ends up on, and whichever worker
// it runs on, sees the same keys). The newest key encrypts new tickets for `interval`; it then
// stays in the ring for `keep` more intervals, decrypting tickets it issued (which OpenSSL then
// renews: a fresh ticket under the current key). A ticket whose key has left the ring is not
// decrypted and the client gets a full handshake.
//
// Rotation is lazy: every ticket operation first rotates the ring as many times as whole intervals
// have passed since the current key took over (no timer, no thread). Keys come from RAND_bytes and
// are wiped with OPENSSL_cleanse when they leave the ring.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;               // NOLINT: OpenSSL's own forward declarations
typedef struct ssl_st SSL;                       // NOLINT
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX; // NOLINT
typedef struct evp_mac_ctx_st EVP_MAC_CTX;       // NOLINT

namespace weir::core::tls {

class TicketKeys {
public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // How long a key encrypts: half the session lifetime, at most 12 hours (at least 1 second).
  static std::chrono::milliseconds interval_for(std::chrono::milliseconds session_timeout);
  // How many retired keys stay for decryption so that every ticket can be resumed for the whole
  // session lifetime: ceil(session_timeout / interval), between 1 and kMaxKeep.
  static size_t keep_for(std::chrono::milliseconds session_timeout,
                         std::chrono::milliseconds interval);
  static constexpr size_t kMaxKeep = 256;

  // A ring with a first key. `clock` defaults to steady_clock::now (tests inject their own).
  // Returns null (and `error` says why) when no random key could be made.
  static std::shared_ptr<TicketKeys> create(std::chrono::milliseconds interval, size_t keep,
                                            std::string& error, Clock clock = {});
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // Make `ctx` encrypt and decrypt its session tickets with `keys` (the context holds a reference
  // to the ring until it is freed).
  static bool attach(SSL_CTX* ctx, const std::shared_ptr<TicketKeys>& keys);

  // Retire the current key now and make a new one (tests; an operator command later).
  bool rotate();
  // Replace the clock (tests).
  void set_clock(Clock clock);

  std::chrono::milliseconds interval() const { return interval_; }
  size_t keep() const { return keep_; }
  // Keys in the ring (current + retired).
  size_t size() const;
  // Keys made since creation (the first is 1).
  uint64_t generation() const;

private:
  struct Key;
  TicketKeys(std::chrono::milliseconds interval, size_t keep, Clock clock);
  void rotate_due_locked(std::chrono::steady_clock::time_point now);
  bool push_locked(std::chrono::steady_clock::time_point created);
  static int callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx,
                      EVP_MAC_CTX* hctx, int enc);
  int encrypt(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx);
  int decrypt(const unsigned char* key_name, const unsigned char* iv, EVP_CIPHER_CTX* cctx,
              EVP_MAC_CTX* hctx);

  const std::chrono::milliseconds interval_;
  const size_t keep_;
  mutable std::mutex mutex_;
  Clock clock_;
  std::deque<std::unique_ptr<Key>> keys_; // front: the current key
  uint64_t generation_ = 0;
};

} // namespace weir::core::tls
