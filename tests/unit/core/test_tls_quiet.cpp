// TlsQuietList: which TLS connections the worker's sweep has OpenSSL give its record buffers back
// for (those that made no call into OpenSSL since the sweep before), and TlsCore's choice of
// SSL_MODE_RELEASE_BUFFERS on a thread without a list.
#include "core/net/tls_stream.hpp"

#include <boost/asio/buffer.hpp>
#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include <memory>

using weir::core::BufferPool;
using weir::core::net::TlsCore;
using weir::core::net::TlsQuietList;

namespace {

struct ServerCtx {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ~ServerCtx() { SSL_CTX_free(ctx); }
};

bool release_mode(const TlsCore& c) {
  return (SSL_get_mode(c.ssl()) & SSL_MODE_RELEASE_BUFFERS) != 0;
}

// A step of the connection that reaches no further than its bookkeeping (an empty read).
void call(TlsCore& c) {
  (void)c.read(boost::asio::mutable_buffer());
}

} // namespace

TEST_CASE("tls quiet list: without a list on the thread, OpenSSL frees its buffers per record") {
  ServerCtx s;
  REQUIRE(s.ctx != nullptr);
  BufferPool pool;
  REQUIRE(TlsQuietList::current() == nullptr);
  TlsCore core(s.ctx, pool);
  CHECK(release_mode(core));
}

TEST_CASE("tls quiet list: buffers go back once a connection is quiet from one sweep to the next") {
  ServerCtx s;
  REQUIRE(s.ctx != nullptr);
  BufferPool pool;
  TlsQuietList list;
  list.install();
  REQUIRE(TlsQuietList::current() == &list);
  auto a = std::make_unique<TlsCore>(s.ctx, pool);
  auto b = std::make_unique<TlsCore>(s.ctx, pool);
  auto c = std::make_unique<TlsCore>(s.ctx, pool);
  CHECK(list.size() == 3);
  CHECK_FALSE(release_mode(*a));

  // No call into OpenSSL yet: nothing to give back.
  auto swept = list.sweep();
  CHECK(swept.released == 0);
  CHECK(swept.kept == 0);

  // A call makes the connection busy for the next sweep; the one after that releases, once.
  call(*a);
  CHECK(list.sweep().released == 0);
  CHECK(list.sweep().released == 1);
  CHECK(list.sweep().released == 0);

  // A connection that keeps calling between sweeps is never released.
  call(*a);
  for (int i = 0; i < 3; ++i) {
    CHECK(list.sweep().released == 0);
    call(*a);
  }

  // Leaving from the middle of the list: the others are still swept.
  call(*b);
  call(*c);
  b.reset();
  CHECK(list.size() == 2);
  (void)list.sweep(); // (a's, b's and c's calls seen)
  swept = list.sweep();
  CHECK(swept.released == 2); // a and c
  a.reset();
  c.reset();
  CHECK(list.size() == 0);
}

TEST_CASE("tls quiet list: a list that goes first leaves its connections detached") {
  ServerCtx s;
  REQUIRE(s.ctx != nullptr);
  BufferPool pool;
  std::unique_ptr<TlsCore> core;
  {
    TlsQuietList list;
    list.install();
    core = std::make_unique<TlsCore>(s.ctx, pool);
    CHECK(list.size() == 1);
  }
  CHECK(TlsQuietList::current() == nullptr);
  core.reset(); // (does not touch the list that is gone)
}
