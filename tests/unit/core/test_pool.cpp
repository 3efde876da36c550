// upstream::Pool, the per-worker idle connection pool: keyed by string or by a key hashed
// beforehand (the same lists either way), at most max_idle kept per key, and a connection the
// peer closed is not handed out. On real socket pairs.
#include "core/upstream/pool.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

namespace asio = boost::asio;
using weir::core::upstream::Conn;
using weir::core::upstream::Pool;
using weir::core::upstream::UnixStream;
using Local = asio::local::stream_protocol;
using namespace std::chrono_literals;

namespace {

// A pooled connection and the socket of its peer.
struct Pair {
  std::unique_ptr<Conn> conn;
  UnixStream::socket_type peer;
};

Pair make_pair(asio::io_context& ioc) {
  UnixStream::socket_type a(ioc), b(ioc);
  asio::local::connect_pair(a, b);
  return {std::make_unique<Conn>(std::in_place_type<UnixStream>, std::move(a)), std::move(b)};
}

} // namespace

TEST_CASE("pool: a key hashed beforehand finds the same lists as the string") {
  asio::io_context ioc;
  Pool pool;
  const std::string key = "origin\n127.0.0.1:8080";
  const Pool::Key hashed = Pool::keyed(key);
  auto p1 = make_pair(ioc);
  Conn* first = p1.conn.get();
  pool.put(hashed, std::move(p1.conn), 4, 10s);
  CHECK(pool.has_idle(key));
  CHECK(pool.idle_count() == 1);
  auto got = pool.take(Pool::keyed(std::string(key)));
  CHECK(got.get() == first);
  CHECK_FALSE(pool.has_idle(key));

  auto p2 = make_pair(ioc);
  Conn* second = p2.conn.get();
  pool.put(Pool::keyed(std::string(key)), std::move(p2.conn), 4, 10s);
  CHECK(pool.take(hashed).get() == second);
  CHECK(pool.take(hashed) == nullptr);
}

TEST_CASE("pool: keys are told apart by their text, not only their hash") {
  asio::io_context ioc;
  Pool pool;
  const std::string a = "up\na", b = "up\nb";
  auto p = make_pair(ioc);
  pool.put(Pool::keyed(a), std::move(p.conn), 4, 10s);
  // Another key that (as if by a collision) carries a's hash is not a's.
  CHECK(pool.take(Pool::Key{b, Pool::hash(a)}) == nullptr);
  CHECK_FALSE(pool.has_idle(b));
  CHECK(pool.take(Pool::keyed(a)) != nullptr);
}

TEST_CASE("pool: at most max_idle kept per key; a connection the peer closed is dropped") {
  asio::io_context ioc;
  Pool pool;
  const Pool::Key hashed = Pool::keyed("up\nt");
  auto p1 = make_pair(ioc);
  auto p2 = make_pair(ioc);
  auto p3 = make_pair(ioc);
  pool.put(hashed, std::move(p1.conn), 2, 10s);
  pool.put(hashed, std::move(p2.conn), 2, 10s);
  pool.put(hashed, std::move(p3.conn), 2, 10s); // over max_idle: closed, not kept
  CHECK(pool.idle_count() == 2);
  // The peer of the newest closes: take() probes it and hands out the other.
  p2.peer.close();
  auto got = pool.take(hashed);
  REQUIRE(got != nullptr);
  CHECK(got->is_open());
  CHECK(pool.idle_count() == 0);
}
