// net::TimedStream: deadlines end pending operations with beast::error::timeout, a deadline
// moved later or earlier while an operation waits is honoured, a deadline that passes with no
// operation pending ends the next one at once, expires_never lifts it, and a stream destroyed
// under a pending operation is safe. On a real socket pair with a real io_context.
#include "core/net/drained_read.hpp"
#include "core/net/timed_stream.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using Local = asio::local::stream_protocol;
using Stream = weir::core::net::TimedStream<Local>;
using weir::core::net::DrainedRead;

namespace {

struct Pair {
  asio::io_context io;
  std::optional<Stream> a;
  Local::socket b{io};
  Pair() {
    Stream::socket_type s(io);
    asio::local::connect_pair(s, b);
    a.emplace(std::move(s));
  }
  // Send `text` from the peer after `delay`.
  void send_later(Clock::duration delay, std::string text) {
    auto t = std::make_shared<asio::steady_timer>(io, delay);
    auto msg = std::make_shared<std::string>(std::move(text));
    t->async_wait([this, t, msg](error_code) {
      asio::async_write(b, asio::buffer(*msg), [msg](error_code, size_t) {});
    });
  }
  // Run `f` after `delay`.
  template <class F> void at(Clock::duration delay, F f) {
    auto t = std::make_shared<asio::steady_timer>(io, delay);
    t->async_wait([t, f](error_code) { f(); });
  }
};

struct ReadResult {
  std::optional<error_code> ec;
  size_t n = 0;
  Clock::duration after{};
};

void start_read(Pair& p, std::array<char, 64>& buf, ReadResult& r) {
  auto t0 = Clock::now();
  p.a->async_read_some(asio::buffer(buf), [&r, t0](error_code ec, size_t n) {
    r.ec = ec;
    r.n = n;
    r.after = Clock::now() - t0;
  });
}

} // namespace

TEST_CASE("a read still pending at the deadline ends with a timeout and closes the socket") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(50ms);
  start_read(p, buf, r);
  p.io.run_for(5s);
  REQUIRE(r.ec);
  CHECK(*r.ec == boost::beast::error::timeout);
  CHECK(r.after >= 45ms);
  CHECK(r.after < 2s);
  CHECK(p.a->timed_out());
  CHECK_FALSE(p.a->socket().is_open());
}

TEST_CASE("data before the deadline completes the read; the deadline then stays out of the way") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(300ms);
  p.send_later(20ms, "hello");
  start_read(p, buf, r);
  p.io.run_for(1s); // past the deadline, with no operation pending
  REQUIRE(r.ec);
  CHECK_FALSE(*r.ec);
  CHECK(std::string(buf.data(), r.n) == "hello");
  CHECK_FALSE(p.a->timed_out());
  CHECK(p.a->socket().is_open()); // a deadline with no operation pending closes nothing
}

TEST_CASE("a deadline that passed with no operation pending ends the next operation at once") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(20ms);
  p.io.run_for(100ms);
  p.io.restart();
  start_read(p, buf, r);
  p.io.run_for(5s);
  REQUIRE(r.ec);
  CHECK(*r.ec == boost::beast::error::timeout);
  CHECK(r.after < 1s);
}

TEST_CASE("a deadline moved later between reads lets the next read wait until it") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r1, r2;
  p.a->expires_after(60ms); // the timer is armed for this one
  p.send_later(10ms, "one");
  start_read(p, buf, r1);
  p.at(30ms, [&] {
    p.a->expires_after(500ms); // the timer still waits for 60 ms: it fires, then waits again
    start_read(p, buf, r2);
  });
  p.send_later(300ms, "two");
  p.io.run_for(5s);
  REQUIRE(r1.ec);
  CHECK_FALSE(*r1.ec);
  REQUIRE(r2.ec);
  CHECK_FALSE(*r2.ec);
  CHECK(std::string(buf.data(), r2.n) == "two");
}

TEST_CASE("a deadline set while a read waits is for the next operation, as with basic_stream") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(100ms);
  start_read(p, buf, r);
  p.at(20ms, [&] { p.a->expires_after(30s); });
  p.io.run_for(5s);
  REQUIRE(r.ec);
  CHECK(*r.ec == boost::beast::error::timeout);
  CHECK(r.after >= 95ms);
  CHECK(r.after < 2s);
}

TEST_CASE("a write deadline set while a read waits does not limit the read (HTTP/2)") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  std::optional<error_code> wrote;
  p.a->expires_never();
  start_read(p, buf, r);
  p.at(20ms, [&] {
    p.a->expires_after(50ms);
    asio::async_write(*p.a, asio::buffer("x", 1), [&](error_code ec, size_t) { wrote = ec; });
  });
  p.send_later(300ms, "reply");
  p.io.run_for(5s);
  REQUIRE(wrote);
  CHECK_FALSE(*wrote);
  REQUIRE(r.ec);
  CHECK_FALSE(*r.ec);
  CHECK(std::string(buf.data(), r.n) == "reply");
}

TEST_CASE("a write stuck past its deadline times out while the read has none") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  std::optional<error_code> wrote;
  p.a->expires_never();
  start_read(p, buf, r);
  // The peer never reads: fill the socket buffers until the write blocks.
  auto big = std::make_shared<std::string>(64 * 1024 * 1024, 'x');
  p.a->expires_after(100ms);
  asio::async_write(*p.a, asio::buffer(*big), [&, big](error_code ec, size_t) { wrote = ec; });
  p.io.run_for(5s);
  REQUIRE(wrote);
  CHECK(*wrote == boost::beast::error::timeout);
  REQUIRE(r.ec); // the socket is closed: the read ends too
}

TEST_CASE("expires_never lifts a deadline") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(50ms);
  p.a->expires_never();
  start_read(p, buf, r);
  p.send_later(200ms, "x");
  p.io.run_for(5s);
  REQUIRE(r.ec);
  CHECK_FALSE(*r.ec);
  CHECK(r.n == 1);
}

TEST_CASE("many operations under one far deadline each complete normally") {
  Pair p;
  std::array<char, 64> buf{};
  int done = 0;
  std::function<void()> next = [&] {
    p.a->expires_after(10s);
    asio::async_write(*p.a, asio::buffer("ping", 4), [&](error_code ec, size_t) {
      REQUIRE_FALSE(ec);
      asio::async_read(p.b, asio::buffer(buf, 4), [&](error_code ec2, size_t) {
        REQUIRE_FALSE(ec2);
        if (++done < 200)
          next();
      });
    });
  };
  next();
  p.io.run_for(5s);
  CHECK(done == 200);
  CHECK_FALSE(p.a->timed_out());
}

TEST_CASE("destroying the stream under a pending read aborts it safely") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(10s);
  start_read(p, buf, r);
  p.at(10ms, [&] { p.a.reset(); });
  p.io.run_for(1s);
  REQUIRE(r.ec);
  CHECK(*r.ec == asio::error::operation_aborted);
}

TEST_CASE("a moved stream keeps its deadline") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->expires_after(50ms);
  Stream moved(std::move(*p.a));
  auto t0 = Clock::now();
  moved.async_read_some(asio::buffer(buf), [&](error_code ec, size_t) {
    r.ec = ec;
    r.after = Clock::now() - t0;
  });
  p.io.run_for(5s);
  REQUIRE(r.ec);
  CHECK(*r.ec == boost::beast::error::timeout);
}

TEST_CASE("TLS over a TimedStream: a handshake with a silent peer times out") {
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket server(io);
  acc.async_accept(server, [](error_code) {}); // accepts, then never answers
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  asio::ssl::stream<weir::core::net::TimedStream<asio::ip::tcp>> tls(io.get_executor(), ctx);
  std::optional<error_code> connected, shaken;
  tls.next_layer().expires_after(2s);
  tls.next_layer().async_connect(acc.local_endpoint(), [&](error_code ec) {
    connected = ec;
    tls.next_layer().expires_after(100ms);
    tls.async_handshake(asio::ssl::stream_base::client, [&](error_code ec2) { shaken = ec2; });
  });
  io.run_for(5s);
  REQUIRE(connected);
  CHECK_FALSE(*connected);
  REQUIRE(shaken);
  CHECK(*shaken == boost::beast::error::timeout);
}

TEST_CASE("disarm: no deadline left, the next read waits as long as it takes") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r1, r2;
  p.a->expires_after(50ms);
  p.send_later(10ms, "one");
  start_read(p, buf, r1); // arms the timer for 50 ms
  p.at(20ms, [&] {
    p.a->disarm();
    start_read(p, buf, r2);
  });
  p.send_later(200ms, "two");
  p.io.run_for(5s);
  REQUIRE(r1.ec);
  CHECK_FALSE(*r1.ec);
  REQUIRE(r2.ec);
  CHECK_FALSE(*r2.ec);
  CHECK(std::string(buf.data(), r2.n) == "two");
}

TEST_CASE("write_expires_after limits writes only, even with no read pending") {
  Pair p;
  std::array<char, 64> buf{};
  ReadResult r;
  p.a->write_expires_after(30ms); // no operation pending: a plain expires_after would limit reads
  start_read(p, buf, r);
  p.send_later(120ms, "late");
  p.io.run_for(1s);
  REQUIRE(r.ec.has_value());
  CHECK(!*r.ec); // the read waited past the write deadline and got its data
  CHECK(r.n == 4);
  CHECK(!p.a->timed_out());
}

TEST_CASE("write_expires_after ends a write the peer never takes") {
  Pair p;
  p.a->write_expires_after(100ms);
  std::string big(16 << 20, 'x'); // more than the socket pair's buffers hold
  std::optional<error_code> ec;
  asio::async_write(*p.a, asio::buffer(big), [&](error_code e, size_t) { ec = e; });
  p.io.run_for(2s);
  REQUIRE(ec.has_value());
  CHECK(*ec == boost::beast::error::timeout);
  CHECK(p.a->timed_out());
}

namespace {

// A read through net::DrainedRead takes a short read as "the socket is drained"
// (net/drained_read.hpp): the next read waits for the next readiness edge instead of trying
// recv() at once. Data that
// arrives at any moment (before the next read starts, while it waits, in pieces larger or
// smaller than the read buffer) must still be read, in order, with no read left waiting.
template <class Protocol, class Socket>
void relay_pattern(asio::io_context& io, weir::core::net::TimedStream<Protocol>& reader,
                   Socket& writer) {
  constexpr size_t kTotal = 256 * 1024;
  std::string sent(kTotal, '\0');
  for (size_t i = 0; i < kTotal; ++i)
    sent[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  std::string got;
  std::array<char, 64> buf{};
  size_t offset = 0;
  unsigned step = 0;
  std::function<void()> send_next = [&] {
    if (offset >= kTotal)
      return;
    size_t n = std::min<size_t>(kTotal - offset, 1 + (step * 37) % 200); // 1 to 200 bytes
    error_code ec;
    asio::write(writer, asio::buffer(sent.data() + offset, n), ec);
    REQUIRE(!ec);
    offset += n;
    // The next piece: at once, after the loop's other work, or after a short pause.
    switch (step++ % 3) {
    case 0:
      send_next();
      break;
    case 1:
      asio::post(io, send_next);
      break;
    default:
      auto t = std::make_shared<asio::steady_timer>(io, 200us);
      t->async_wait([t, &send_next](error_code) { send_next(); });
    }
  };
  std::function<void()> read_next = [&] {
    reader.async_read_some(DrainedRead(asio::buffer(buf)), [&](error_code ec, size_t n) {
      REQUIRE(!ec);
      got.append(buf.data(), n);
      if (got.size() < kTotal)
        read_next();
    });
  };
  read_next();
  send_next();
  io.run_for(20s);
  REQUIRE(got.size() == kTotal);
  CHECK(got == sent);
}

} // namespace

TEST_CASE("reads after short reads miss nothing: a Unix socket pair") {
  Pair p;
  relay_pattern(p.io, *p.a, p.b);
}

TEST_CASE("reads after short reads miss nothing: TCP on loopback") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  weir::core::net::TimedStream<asio::ip::tcp> server(acceptor.accept(io));
  server.socket().set_option(asio::ip::tcp::no_delay(true));
  client.set_option(asio::ip::tcp::no_delay(true));
  relay_pattern(io, server, client);
}

TEST_CASE("a drained read may consume the end of file with the data; recv_now sees it") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  weir::core::net::TimedStream<asio::ip::tcp> server(acceptor.accept(io));
  asio::write(client, asio::buffer(std::string("last words")));
  client.shutdown(asio::ip::tcp::socket::shutdown_send);
  std::this_thread::sleep_for(50ms); // data and FIN both queued before the read
  std::array<char, 64> buf{};
  std::optional<error_code> ec;
  size_t n = 0;
  server.async_read_some(DrainedRead(asio::buffer(buf)), [&](error_code e, size_t got) {
    ec = e;
    n = got;
  });
  io.run_for(2s);
  REQUIRE(ec.has_value());
  CHECK(!*ec);
  CHECK(std::string(buf.data(), n) == "last words");
  // The FIN went with that read; a waiting read would see no further edge. recv_now does.
  error_code eof;
  size_t more = 1;
  CHECK(weir::core::net::recv_now(server.socket().native_handle(), asio::buffer(buf), more, eof));
  CHECK(more == 0);
  CHECK(eof == asio::error::eof);
  // And on an open, empty socket it reports that nothing is there.
  asio::ip::tcp::socket c2(io);
  c2.connect(acceptor.local_endpoint());
  auto s2 = acceptor.accept();
  error_code none;
  CHECK_FALSE(weir::core::net::recv_now(s2.native_handle(), asio::buffer(buf), more, none));
  CHECK(!none);
}

TEST_CASE("send_now: gathers the buffers, takes what the socket takes, never waits") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  auto server = acceptor.accept();
  int fd = server.native_handle();
  // Empty buffers are skipped; the rest leave in one call, in order.
  std::array<asio::const_buffer, 4> parts{asio::buffer("head|", 5), asio::const_buffer(),
                                          asio::buffer("body|", 5), asio::buffer("end", 3)};
  error_code ec;
  CHECK(weir::core::net::send_now(fd, parts.data(), parts.size(), ec) == 13);
  CHECK(!ec);
  std::array<char, 64> got{};
  size_t n = asio::read(client, asio::buffer(got.data(), 13));
  CHECK(std::string(got.data(), n) == "head|body|end");
  // Nothing to send: no call, nothing sent.
  CHECK(weir::core::net::send_now(fd, parts.data(), 0, ec) == 0);
  CHECK(!ec);

  // A peer that reads nothing: the send buffer fills, and then send_now returns 0 with no error
  // (would block) instead of waiting.
  server.set_option(asio::socket_base::send_buffer_size(4096));
  client.set_option(asio::socket_base::receive_buffer_size(4096));
  std::vector<char> block(64 * 1024, 'x');
  asio::const_buffer big = asio::buffer(block);
  size_t total = 0;
  size_t last = 1;
  for (int i = 0; i < 10000 && last > 0; ++i) {
    last = weir::core::net::send_now(fd, &big, 1, ec);
    REQUIRE(!ec);
    total += last;
  }
  CHECK(last == 0);
  CHECK(total > 0);

  // A peer that is gone: an error (EPIPE or a reset), not a SIGPIPE.
  client.close();
  std::this_thread::sleep_for(20ms);
  error_code gone;
  for (int i = 0; i < 3 && !gone; ++i)
    weir::core::net::send_now(fd, parts.data(), parts.size(), gone);
  CHECK(gone);
}
