#include "core/tls/session_cache.hpp"

#include <openssl/ssl.h>

#include <cstdint>
#include <ctime>
#include <deque>
#include <string>
#include <unordered_map>

namespace weir::core::tls {

namespace {

constexpr size_t kMaxSessions = 20000; // per worker thread

class Cache {
public:
  ~Cache() {
    for (auto& [id, s] : map_)
      SSL_SESSION_free(s);
  }
  // Takes the reference `s` carries.
  void add(SSL_SESSION* s) {
    unsigned int len = 0;
    const unsigned char* id = SSL_SESSION_get_id(s, &len);
    std::string key(reinterpret_cast<const char*>(id), len);
    if (auto it = map_.find(key); it != map_.end()) {
      SSL_SESSION_free(it->second);
      it->second = s;
      return;
    }
    // Oldest first; keys of sessions already removed or expired are skipped on the way (and
    // trimmed, so the order list stays bounded too).
    while ((map_.size() >= kMaxSessions || order_.size() >= 2 * kMaxSessions) && !order_.empty()) {
      drop(order_.front());
      order_.pop_front();
    }
    map_.emplace(key, s);
    order_.push_back(std::move(key));
  }
  SSL_SESSION* find(const unsigned char* id, int len) {
    auto it = map_.find(std::string(reinterpret_cast<const char*>(id), static_cast<size_t>(len)));
    if (it == map_.end())
      return nullptr;
    SSL_SESSION* s = it->second;
    if (SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s) < std::time(nullptr)) {
      drop(it->first); // expired: the key stays in order_ and is skipped when it comes up
      return nullptr;
    }
    return s;
  }
  void remove(SSL_SESSION* s) {
    unsigned int len = 0;
    const unsigned char* id = SSL_SESSION_get_id(s, &len);
    drop(std::string(reinterpret_cast<const char*>(id), len));
  }

private:
  void drop(const std::string& key) {
    if (auto it = map_.find(key); it != map_.end()) {
      SSL_SESSION_free(it->second);
      map_.erase(it);
    }
  }
  std::unordered_map<std::string, SSL_SESSION*> map_;
  std::deque<std::string> order_; // insertion order, for eviction
};

Cache& cache() {
  thread_local Cache c;
  return c;
}

int on_new(SSL* ssl, SSL_SESSION* s) {
  // OpenSSL reports every TLS 1.3 ticket it issues here, stateless ones included (two per
  // handshake): those carry their own state and are never looked up, so keeping them would only
  // cost each handshake two insertions (and later evictions) and fill the cache with sessions
  // nobody asks for. Kept: TLS 1.2 sessions (session ids) and stateful TLS 1.3 tickets
  // (session-tickets = false).
  // (OpenSSL makes its TLS 1.3 tickets stateful with SSL_OP_NO_TICKET, and for early data with
  // replay protection: weir enables no early data, but those sessions would be kept too.)
  const uint64_t options = SSL_get_options(ssl);
  const bool stateful = (options & SSL_OP_NO_TICKET) != 0 ||
                        (SSL_get_max_early_data(ssl) > 0 && (options & SSL_OP_NO_ANTI_REPLAY) == 0);
  if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION && !stateful)
    return 0; // (OpenSSL drops the reference it gave us)
  cache().add(s);
  return 1; // we keep the reference
}

SSL_SESSION* on_get(SSL*, const unsigned char* id, int len, int* copy) {
  *copy = 1; // OpenSSL takes its own reference
  return cache().find(id, len);
}

void on_remove(SSL_CTX*, SSL_SESSION* s) {
  cache().remove(s);
}

} // namespace

void use_worker_session_cache(SSL_CTX* ctx) {
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx, on_new);
  SSL_CTX_sess_set_get_cb(ctx, on_get);
  SSL_CTX_sess_set_remove_cb(ctx, on_remove);
}

} // namespace weir::core::tls
