// Server-side TLS session cache, one per worker thread. Session ids (TLS 1.2) and stateful
// TLS 1.3 tickets (when session tickets are off) are looked up in the cache of the worker that
// accepted the connection, so handshakes never contend on a lock shared by all workers. Stateless
// session tickets, the default, need no cache and resume on any worker: the TLS 1.3 sessions
// OpenSSL reports for them are not kept (they filled the cache with 20,000 sessions nobody looks
// up, about 22 MB per worker after 24,000 handshakes).
#pragma once

typedef struct ssl_ctx_st SSL_CTX;

namespace weir::core::tls {

// Make `ctx` keep its server sessions in the calling thread's cache instead of OpenSSL's internal
// one (bounded in size; entries expire with the session's own timeout).
void use_worker_session_cache(SSL_CTX* ctx);

} // namespace weir::core::tls
