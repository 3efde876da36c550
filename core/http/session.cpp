#include "core/http/session.hpp"

#include "core/http/head_check.hpp"
#include "core/http/proxy.hpp"
#include "core/http/wire.hpp"
#include "core/net/drained_read.hpp"
#include "core/net/proxy_protocol.hpp"
#include "core/net/timed_stream.hpp"
#include "core/net/tls_stream.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/parking.hpp"
#include "core/runtime/small_alloc.hpp"
#include "core/runtime/worker.hpp"
#include "core/tls/server_tls.hpp"
#include "core/upstream/conn.hpp"
#if __has_include("core/http/h2_session.hpp")
#include "core/http/h2_session.hpp"
#define WEIR_HAVE_H2 1
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffer_traits.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace weir::core::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// A parked connection's addresses (ConnInfo's text, as the session shows it) packed into bytes
// and back: "unix" for a Unix socket peer, "" for none, else an IPv4 or IPv6 address.
bool pack_address(const std::string& ip, uint16_t port, PackedAddress& out) {
  out.port = port;
  if (ip.empty()) {
    out.kind = PackedAddress::Kind::none;
    return true;
  }
  if (ip == "unix") {
    out.kind = PackedAddress::Kind::unix_socket;
    return true;
  }
  error_code ec;
  auto addr = asio::ip::make_address(ip, ec);
  if (ec)
    return false;
  if (addr.is_v4()) {
    auto b = addr.to_v4().to_bytes();
    std::memcpy(out.bytes.data(), b.data(), b.size());
    out.kind = PackedAddress::Kind::v4;
  } else {
    auto v6 = addr.to_v6();
    auto b = v6.to_bytes();
    std::memcpy(out.bytes.data(), b.data(), b.size());
    out.scope_id = v6.scope_id();
    out.kind = PackedAddress::Kind::v6;
  }
  return true;
}

std::string unpack_address(const PackedAddress& a) {
  switch (a.kind) {
  case PackedAddress::Kind::none:
    return {};
  case PackedAddress::Kind::unix_socket:
    return "unix";
  case PackedAddress::Kind::v4: {
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), a.bytes.data(), b.size());
    return asio::ip::address_v4(b).to_string();
  }
  case PackedAddress::Kind::v6:
    break;
  }
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), a.bytes.data(), b.size());
  return asio::ip::address_v6(b, a.scope_id).to_string();
}

using PlainStream = net::TimedStream<tcp>;
using UnixStream = net::TimedStream<asio::local::stream_protocol>;
using TlsStream = net::TlsStream<PlainStream>;

// Stream is PlainStream (plain HTTP), TlsStream (TLS) or UnixStream (a Unix socket).
template <class Stream> class Session final : public Drainable, BodySource, ResponseSink {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  static constexpr bool kUnix = std::is_same_v<Stream, UnixStream>;
  using Lowest = std::conditional_t<kUnix, UnixStream, PlainStream>;

public:
  template <class... StreamArgs>
  Session(Worker& worker, const WorkerListener& listener, StreamArgs&&... stream_args)
      : worker_(worker), listener_(listener), service_(*listener.services.front()),
        limits_(service_.plan->cfg->limits), client_(std::forward<StreamArgs>(stream_args)...) {
    socket_addresses();
    conn_.tls = kTls;
    init();
  }

  // A parked connection that the client woke (see resume()).
  Session(Worker& worker, const ParkedConn& parked, typename Lowest::socket_type socket)
      : worker_(worker), listener_(*parked.listener), service_(*listener_.services.front()),
        limits_(service_.plan->cfg->limits), client_(std::move(socket)) {
    if (parked.has_addresses) {
      conn_.peer_ip = unpack_address(parked.peer);
      conn_.peer_port = parked.peer.port;
      conn_.local_ip = unpack_address(parked.local);
      conn_.local_port = parked.local.port;
      proxied_ = true;
    } else {
      socket_addresses();
    }
    socket_v6_ = parked.v6_socket;
    first_request_ = false;
    wait_deadline_ = parked.deadline;
    init();
  }

  ~Session() { worker_.remove_session(this); }

  // The client's and our own address as the socket has them (a PROXY header may replace them).
  void socket_addresses() {
    if constexpr (kUnix) {
      conn_.peer_ip = "unix";
    } else {
      error_code ec;
      auto ep = lowest().socket().remote_endpoint(ec);
      if (!ec) {
        conn_.peer_ip = ep.address().to_string();
        conn_.peer_port = ep.port();
      }
      auto local = lowest().socket().local_endpoint(ec);
      if (!ec) {
        conn_.local_ip = local.address().to_string();
        conn_.local_port = local.port();
        socket_v6_ = local.protocol() == tcp::v6();
      }
    }
  }

  void init() {
    if constexpr (!kTls) {
      // Plain connections read with a non-blocking read_some once the socket is readable.
      error_code ec;
      lowest().socket().non_blocking(true, ec);
    }
    head_limits_.max_request_line = limits_.max_request_line;
    head_limits_.max_header_bytes = limits_.max_header_bytes;
    head_limits_.max_headers = limits_.max_headers;
    worker_.add_session(this);
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void on_drain() override {
    if (idle_) {
      error_code ec;
      lowest().socket().shutdown(Lowest::socket_type::shutdown_both, ec);
      lowest().socket().close(ec);
    }
  }

  // The worker's idle sweep found idle_deadline passed. Either the connection has been quiet for
  // Worker::kParkAfter while run() read with a block between requests (the read is cancelled and
  // the connection parks: see park_out(); returns true), or keepalive-timeout (header-timeout,
  // before the first request) passed: the connection closes without a word.
  bool on_idle_timeout() override {
    bool park = reading_idle_ && Clock::now() < wait_deadline_;
    if (park)
      park_ = true;
    error_code ec;
    lowest().socket().cancel(ec);
    return park;
  }

  // Serve the connection: its start (PROXY header, TLS handshake, HTTP/2 or not), then request
  // after request. Returns when the connection is done, or parked (see park_out()): then it
  // is called again, resumed, once the client sends its next request.
  net::Task<void> run() {
    if (!std::exchange(resumed_, false)) {
      // The start: the PROXY header, the TLS handshake, the first bytes, HTTP/2 (served here to
      // the end).
      if (!listener_.plan->proxy_protocol_from.empty() && !co_await read_proxy_header()) {
        close_now();
        co_return;
      }
      if constexpr (kTls) {
        // The handshake counts against header-timeout, like the head that follows it.
        lowest().expires_after(limits_.header_timeout);
        auto [ec] =
            co_await client_.async_handshake(asio::ssl::stream_base::server, net::use_task_nothrow);
        if (ec) {
          logger("tls")->debug("{}:{}: handshake failed: {}", conn_.peer_ip, conn_.peer_port,
                               ec.message());
          close_now();
          co_return;
        }
        SSL* ssl = client_.native_handle();
        if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
          conn_.sni = sni;
          for (auto& c : conn_.sni)
            if (c >= 'A' && c <= 'Z')
              c = static_cast<char>(c - 'A' + 'a');
        }
        const unsigned char* alpn = nullptr;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
        if (alpn_len == 2 && alpn[0] == 'h' && alpn[1] == '2') {
          co_await run_h2();
          co_return;
        }
      } else {
        if (buf_.size() == 0 && !co_await await_request()) {
          close_now();
          co_return;
        }
        if (listener_.plan->cfg->h2c && co_await sniff_h2_preface()) {
          co_await run_h2();
          co_return;
        }
      }
    }
    // Request after request. (Waiting for the next request and serving one are written out
    // here rather than as coroutines of their own: each coroutine call costs a frame and a
    // resumption through Asio's scheduler, a few hundred instructions per request.)
    for (;;) {
      if constexpr (!kTls) {
        // A plain keep-alive connection between requests: read into the pooled block while the
        // client is busy, with the worker's idle sweep as the timer. Once the connection has been
        // quiet for Worker::kParkAfter, the sweep cancels the read (see on_idle_timeout) and the
        // connection parks: run() ends and park_out() waits for the next request holding no
        // buffer and no coroutine frame.
        if (buf_.size() == 0) {
          if (worker_.draining())
            break;
          auto now = Clock::now();
          wait_deadline_ = now + limits_.keepalive_timeout;
          idle_deadline = std::min(now + Worker::kParkAfter, wait_deadline_);
          reading_idle_ = true;
          idle_ = true;
          // A short read counts as "drained" (net/drained_read.hpp): the read for the request
          // after this one waits for the client's bytes instead of trying recv() at once and
          // failing. An end of file that came with this request is seen when the idle
          // connection parks. (The other reads of a request keep Asio's behaviour, so a request
          // that a half-close cuts short after this read ends at its header or body timeout.)
          auto [ec, n] = co_await lowest().socket().async_read_some(
              net::DrainedRead(buf_.prepare(read_size())), net::use_task_nothrow);
          idle_ = false;
          reading_idle_ = false;
          idle_deadline = Clock::time_point::max();
          bool park = std::exchange(park_, false);
          if (ec) {
            if (park && ec == asio::error::operation_aborted && !worker_.draining())
              parked_out_ = true;
            break; // (parked: the caller sees parked_out() and hands the socket to the lot)
          }
          buf_.commit(n);
        }
      }

      // One request. The head is usually in the buffer already (read just above); read_head()
      // waits for the rest when not.
      size_t skip = 0;
      size_t head_len = find_head_end(buffered(), skip);
      if (head_len == 0) {
        head_len = co_await read_head(skip);
        if (head_len == 0)
          break;
      }
      buf_.consume(skip);
      head_len -= skip;
      first_request_ = false;

      ProxyRequest req;
      std::string why;
      if (unsigned status = parse_request(req, head_len, why); status != 0) {
        co_await reject(req, status, why);
        break;
      }
      const WorkerService& service = choose_service(listener_.services, req.host, conn_.sni);
      req_ = &req;
      keep_after_ = false;
      started_ = false;
      bool ok = co_await handle_request(worker_, service, conn_, req, *this, *this);
      req_ = nullptr;
      res_ = nullptr;
      out_head_.clear();
      parser_.reset();
      own_msg_.reset();
      if (!ok || !keep_after_ || worker_.draining())
        break;
    }
    if (parked_out_)
      co_return;
    push(); // a response cut short (a broken upstream, a failed write) may have left bytes corked
    error_code ec;
    if constexpr (kTls) {
      // close_notify (net::TlsStream does not wait for the peer's; 1 s if the socket is full).
      lowest().expires_after(std::chrono::seconds(1));
      co_await client_.async_shutdown(net::use_task_nothrow);
    }
    lowest().socket().shutdown(Lowest::socket_type::shutdown_send, ec);
    if (linger_ && !ec && !kTls)
      co_await linger();
    lowest().socket().close(ec);
  }

private:
  void close_now() {
    error_code ec;
    lowest().socket().close(ec);
  }

  net::Task<void> run_h2() {
#ifdef WEIR_HAVE_H2
    idle_ = false;
    // The HTTP/2 session keeps its own buffer; the bytes read so far go first.
    beast::flat_buffer initial;
    if (buf_.size() > 0)
      initial.commit(asio::buffer_copy(initial.prepare(buf_.size()), buf_.data()));
    buf_.consume(buf_.size());
    buf_.shrink_to_fit();
    co_await serve_h2(worker_, listener_.services, conn_, client_, initial);
#else
    logger("http")->warn("{}:{}: HTTP/2 is not available in this build", conn_.peer_ip,
                         conn_.peer_port);
#endif
    close_now();
  }

public:
  // run() returned to park the connection: it leaves the session for the worker's parking lot
  // (runtime/parking.hpp) as a descriptor and a small record, and the session ends. resume()
  // makes a session again when the client sends its next request; a timeout (keepalive-timeout,
  // applied by the lot), a drain or the client's close ends the connection there.
  bool parked_out() const {
    return parked_out_;
  }
  static void park_out(std::unique_ptr<Session> self) {
    Session& s = *self;
    s.parked_out_ = false;
    ParkedConn c;
    c.unix_socket = kUnix;
    c.v6_socket = s.socket_v6_;
    c.listener = &s.listener_;
    c.deadline = s.wait_deadline_;
    c.has_addresses = s.proxied_;
    if (c.has_addresses && (!pack_address(s.conn_.peer_ip, s.conn_.peer_port, c.peer) ||
                            !pack_address(s.conn_.local_ip, s.conn_.local_port, c.local))) {
      // Not reached: the addresses are those of the socket or of a PROXY header.
      logger("http")->debug("{}:{}: idle connection closed: its addresses cannot be parked",
                            s.conn_.peer_ip, s.conn_.peer_port);
      return;
    }
    error_code ec;
    c.fd = s.lowest().socket().release(ec);
    if (ec)
      return;
    Worker& worker = s.worker_;
    self.reset();
    worker.parking().park(std::move(c));
  }

  // The client of a parked connection sent something (or closed it). What came is read before
  // anything is built: a close or a spurious wake costs no session (the connection is closed,
  // or parked again as it was); a request gets a session, which serves it as if the connection
  // had never left.
  static void resume(Worker& worker, ParkedConn&& parked) {
    if (worker.draining() || Clock::now() >= parked.deadline) {
      ::close(parked.fd);
      return;
    }
    std::array<char, BufferPool::kSmallSize> first; // (a longer request is read on by the session)
    ssize_t got;
    do {
      got = ::recv(parked.fd, first.data(), first.size(), 0);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      worker.parking().park(std::move(parked)); // woken for nothing
      return;
    }
    if (got <= 0) {
      ::close(parked.fd); // closed by the client, or failed
      return;
    }
    typename Lowest::socket_type sock(worker.context());
    error_code ec;
    if constexpr (kUnix) {
      sock.assign(asio::local::stream_protocol(), parked.fd, ec);
    } else {
      sock.assign(parked.v6_socket ? tcp::v6() : tcp::v4(), parked.fd, ec);
    }
    if (ec) {
      ::close(parked.fd);
      return;
    }
    auto self = std::make_unique<Session>(worker, parked, std::move(sock));
    Session& s = *self;
    auto n = static_cast<size_t>(got);
    std::memcpy(s.buf_.prepare(n).data(), first.data(), n);
    s.buf_.commit(n);
    s.resumed_ = true;
    start(std::move(self));
  }

private:
  // Defined after serve() (below the class).
  static void start(std::unique_ptr<Session> self);

  // A new plain connection: wait until the client sends its first bytes, holding no buffer, with
  // no timer of its own (the worker's idle sweep ends the wait at header-timeout from the
  // accept); then read what came into a pooled block. False when the connection is to close:
  // timed out, closed, drained, or the peer left. (A wait costs an epoll_ctl that a read after a
  // drained read does not, which is why busy connections keep reading with a block instead.)
  net::Task<bool> await_request() {
    buf_.shrink_to_fit();
    auto& sock = lowest().socket();
    auto deadline = accepted_ + limits_.header_timeout; // (only ever the first request)
    for (;;) {
      if (worker_.draining() || Clock::now() >= deadline)
        co_return false;
      idle_ = true;
      idle_deadline = deadline;
      auto [ec] = co_await sock.async_wait(Lowest::socket_type::wait_read, net::use_task_nothrow);
      idle_ = false;
      idle_deadline = Clock::time_point::max();
      if (ec)
        co_return false;
      error_code rec;
      size_t n = sock.read_some(buf_.prepare(read_size()), rec);
      if (rec == asio::error::would_block || rec == asio::error::try_again) {
        buf_.shrink_to_fit(); // woken for nothing: wait again, without the block
        continue;
      }
      if (rec)
        co_return false;
      buf_.commit(n);
      co_return true;
    }
  }

  // What one read from the client asks for: the rest of the pooled block the buffer lives in.
  // Heads are read into a small block (most fit); a larger head moves to a large block.
  size_t read_size() const {
    size_t have = buf_.size();
    if (buf_.capacity() <= BufferPool::kSmallSize && have + 1024 <= BufferPool::kSmallSize)
      return BufferPool::kSmallSize - have;
    return have + 4096 <= BufferPool::kBlockSize ? BufferPool::kBlockSize - have : 4096;
  }

  // Cleartext HTTP/2 with prior knowledge: the connection starts with the client preface.
  // Reads into buf_ until the preface is complete or the bytes differ from it.
  net::Task<bool> sniff_h2_preface() {
    auto deadline = accepted_ + limits_.header_timeout;
    for (;;) {
      auto data = buf_.data();
      std::string_view have(static_cast<const char*>(data.data()), data.size());
      size_t n = std::min(have.size(), kH2Preface.size());
      if (have.substr(0, n) != kH2Preface.substr(0, n))
        co_return false;
      if (have.size() >= kH2Preface.size())
        co_return true;
      lowest().expires_at(deadline);
      auto [ec, got] =
          co_await client_.async_read_some(buf_.prepare(read_size()), net::use_task_nothrow);
      if (ec)
        co_return false; // run() sees the same end of stream
      buf_.commit(got);
    }
  }

  // PROXY protocol on a listener that enables it: required from the trusted ranges, refused from
  // anyone else. Nothing beyond the header may be consumed (a TLS ClientHello follows it on TLS
  // listeners), so the bytes are first looked at with MSG_PEEK. When they are only the beginning
  // of a header, they are taken off the socket (they all belong to the header) before waiting for
  // more: peeking again at bytes still in the socket would find it readable at once and spin
  // until header-timeout, for any peer that sends "PROXY" and stalls.
  net::Task<bool> read_proxy_header() {
    if constexpr (kUnix) {
      co_return true; // a Unix socket peer is never in an address range
    } else {
      bool trusted = config::in_any(listener_.plan->proxy_protocol_from, conn_.peer_ip);
      auto deadline = accepted_ + limits_.header_timeout;
      std::array<char, 4096> peek{};
      std::string taken; // the beginning of a header, already read from the socket
      // Read (and drop) `count` bytes that MSG_PEEK has shown already.
      auto take = [&](size_t count) {
        std::array<char, 512> scratch{};
        while (count > 0) {
          ssize_t got = ::recv(lowest().socket().native_handle(), scratch.data(),
                               std::min(count, scratch.size()), 0);
          if (got <= 0)
            return false;
          count -= static_cast<size_t>(got);
        }
        return true;
      };
      for (;;) {
        auto& sock = lowest().socket();
        using namespace boost::asio::experimental::awaitable_operators;
        net::SteadyTimer timer(co_await asio::this_coro::executor);
        timer.expires_at(deadline);
        auto waited = co_await (sock.async_wait(tcp::socket::wait_read, net::use_task_nothrow) ||
                                timer.async_wait(net::use_task_nothrow));
        if (waited.index() != 0 || std::get<0>(std::get<0>(waited)) || Clock::now() >= deadline) {
          if (trusted)
            logger("http")->info("{}:{}: no PROXY protocol header in time", conn_.peer_ip,
                                 conn_.peer_port);
          co_return false;
        }
        ssize_t n = ::recv(sock.native_handle(), peek.data(), peek.size(), MSG_PEEK);
        if (n <= 0)
          co_return false;
        std::string data = taken;
        data.append(peek.data(), static_cast<size_t>(n));
        net::ProxyHeader h;
        size_t consumed = 0;
        std::string error;
        auto r = net::parse_proxy_header(data, h, consumed, error);
        if (r == net::ProxyParse::invalid) {
          if (!trusted) {
            // Not a PROXY header: an ordinary client. Bytes already taken go back in front of
            // its request (they can only be empty lines or the like on a plain listener; a TLS
            // ClientHello never looks like the start of a header).
            if (taken.empty())
              co_return true;
            if constexpr (kTls) {
              logger("http")->info("{}:{}: neither a PROXY protocol header nor TLS", conn_.peer_ip,
                                   conn_.peer_port);
              co_return false;
            } else {
              auto mb = buf_.prepare(taken.size());
              std::memcpy(mb.data(), taken.data(), taken.size());
              buf_.commit(taken.size());
              co_return true;
            }
          }
          logger("http")->warn("{}:{}: bad PROXY protocol header: {}", conn_.peer_ip,
                               conn_.peer_port, error);
          co_return false;
        }
        if (r == net::ProxyParse::done && !trusted) {
          logger("http")->warn("{}:{}: PROXY protocol header refused: {} is not in "
                               "proxy-protocol-from",
                               conn_.peer_ip, conn_.peer_port, conn_.peer_ip);
          co_return false;
        }
        if (r == net::ProxyParse::need_more) {
          // Every byte so far belongs to the header: take them, then sleep until more arrive.
          if (taken.size() + static_cast<size_t>(n) > kMaxProxyHeader)
            co_return false;
          taken.append(peek.data(), static_cast<size_t>(n));
          if (!take(static_cast<size_t>(n)))
            co_return false;
          continue;
        }
        // Consume exactly the rest of the header.
        if (!take(consumed - taken.size()))
          co_return false;
        if (!h.local) {
          proxied_ = true;
          conn_.peer_ip = h.src_ip;
          conn_.peer_port = h.src_port;
          conn_.local_ip = h.dst_ip;
          conn_.local_port = h.dst_port;
        }
        co_return true;
      }
    }
    co_return false; // not reached: every path above returns
  }

  // After answering a request whose body (or rest) was not read, closing at once would make the
  // kernel reset the connection, and the client could lose the answer. Like nginx's lingering
  // close: the write side is shut already; read and discard for a bounded time until EOF.
  net::Task<void> linger() {
    auto deadline = Clock::now() + kLingerTime;
    std::array<char, 4096> scratch{};
    for (int i = 0; i < 4096; ++i) {
      auto now = Clock::now();
      if (now >= deadline)
        break;
      lowest().expires_at(std::min(deadline, now + kLingerRead));
      auto [ec, n] = co_await client_.async_read_some(asio::buffer(scratch), net::use_task_nothrow);
      if (ec)
        break;
    }
  }

  std::string_view buffered() const {
    auto data = buf_.data();
    return {static_cast<const char*>(data.data()), data.size()};
  }

  // Read until the buffer holds a whole head. Returns its length (with the `skip` empty lines
  // before it), or 0 when the connection is to close (timed out, too large, gone; answered or
  // logged here as needed).
  net::Task<size_t> read_head(size_t& skip) {
    size_t head_len = 0;
    // The whole head must arrive within header-timeout of its first byte (of the accept, for the
    // first request): a deadline, not a per-read timer, or a slow drip would never end.
    std::optional<Clock::time_point> head_deadline;
    if (first_request_)
      head_deadline = accepted_ + limits_.header_timeout;
    for (;;) {
      auto data = buf_.data();
      std::string_view view(static_cast<const char*>(data.data()), data.size());
      head_len = find_head_end(view, skip);
      if (head_len != 0)
        co_return head_len;
      if (unsigned st = check_partial_head(view.substr(skip), head_limits_); st != 0) {
        ProxyRequest r;
        co_await reject(r, st, st == 414 ? "request line too long" : "request head too large");
        co_return 0;
      }
      if (buf_.size() >= kMaxBuffer)
        co_return 0;
      idle_ = buf_.size() == 0;
      if (idle_ && worker_.draining())
        co_return 0;
      if (!idle_ && !head_deadline)
        head_deadline = Clock::now() + limits_.header_timeout;
      // (Plain connections come here with bytes already read: see run().)
      if (head_deadline) {
        lowest().expires_at(*head_deadline);
      } else {
        lowest().expires_after(limits_.keepalive_timeout);
      }
      if constexpr (kTls) {
        if (idle_) {
          auto [ec] = co_await read_idle();
          idle_ = false;
          if (ec)
            co_return 0;
          continue;
        }
      }
      auto [ec, n] =
          co_await client_.async_read_some(buf_.prepare(read_size()), net::use_task_nothrow);
      idle_ = false;
      if (ec) {
        if (ec == beast::error::timeout && buf_.size() > 0)
          log_head_timeout();
        co_return 0;
      }
      buf_.commit(n);
    }
  }

  // A TLS connection between requests holds no read buffer (a plain one parks instead): buf_'s
  // block goes back, the read borrows a pooled block once bytes come (net::PooledRead through
  // net::TlsStream), and buf_ gets a copy of them.
  net::Task<std::tuple<error_code>> read_idle() {
    buf_.shrink_to_fit(); // (empty: its block goes back)
    BufferPool& pool = worker_.buffers();
    BufferPool::Block block(nullptr, BufferPool::Deleter{&pool});
    auto [ec, n] =
        co_await client_.async_read_some(net::PooledRead(pool, block), net::use_task_nothrow);
    if (!ec && n > 0) {
      auto room = buf_.prepare(n);
      std::memcpy(room.data(), block.get(), n);
      buf_.commit(n);
    }
    co_return std::tuple<error_code>(ec);
  }

  // Like nginx: a head that did not arrive in time is logged as 408, and the connection is
  // closed without an answer (the timer already closed the socket).
  void log_head_timeout() {
    ProxyRequest r;
    r.status = 408;
    logger("http")->info("{}:{}: 408: timed out reading the request head", conn_.peer_ip,
                         conn_.peer_port);
    log_request(service_, conn_, r);
  }

  // Parse and check the head in the buffer (head_len bytes) into `req` and the request parser.
  // Returns 0, or the status to refuse the request with and `why` (for the log).
  unsigned parse_request(ProxyRequest& req, size_t head_len, std::string& why) {
    // check_head's views of the method, target and fields (reused: no allocation per request).
    static thread_local HeadParts parts;
    HeadCheck hc;
    {
      auto data = buf_.data();
      std::string_view head(static_cast<const char*>(data.data()), head_len);
      hc = check_head(head, head_limits_, &parts);
      if (hc.status != 0) {
        auto sp = head.find(' ');
        if (sp != std::string_view::npos) // (kept for the log, the buffer may move)
          req.method = own_msg_.emplace().hold(head.substr(0, sp));
        why = hc.reason;
        return hc.status;
      }
      req.version = hc.version;
      req.has_body = hc.chunked || (hc.content_length && *hc.content_length > 0);
      req.content_length = hc.chunked ? std::nullopt : hc.content_length;
      if (limits_.max_body > 0 && hc.content_length && *hc.content_length > limits_.max_body) {
        why = "request body larger than limits.max-body";
        return 413;
      }
    }

    // The message is made from check_head's views, without parsing the head a second time: the
    // head is copied into it once, and its target and fields are views into that copy.
    auto& msg = own_msg_.emplace();
    std::string_view wire(static_cast<const char*>(buf_.data().data()), head_len);
    const char* held = msg.hold(wire).data();
    auto in_copy = [&](std::string_view v) {
      if (v.empty()) // (an absent part, Host say, may have no pointer into the head at all)
        return std::string_view();
      return std::string_view(held + (v.data() - wire.data()), v.size());
    };
    if (parts.verb != bhttp::verb::unknown)
      msg.method(parts.verb);
    else
      msg.method_string(parts.method);
    msg.adopt_target(in_copy(parts.target));
    req.host = in_copy(parts.host);
    msg.version(req.version);
    for (const auto& f : parts.fields)
      msg.adopt(f.id, in_copy(f.name), in_copy(f.value));
    buf_.consume(head_len);
    // One Transfer-Encoding line, as check_head read them all: an empty line or element
    // (accepted, RFC 9110 5.6.1) must not hide "chunked" from the message's own framing rule,
    // which reads only the first line, while the upstream might read another.
    if (hc.chunked)
      msg.set(bhttp::field::transfer_encoding, "chunked");
    if (req.has_body) {
      // A body: Beast's parser takes its framing (Content-Length or chunked, which check_head
      // checked) off. It is given a head that says only that; the request's own head is in msg.
      parser_.emplace();
      auto& parser = *parser_;
      // (The limit on the head applies to a chunked body's trailers.)
      parser.header_limit(static_cast<uint32_t>(limits_.max_header_bytes + 1));
      if (limits_.max_body > 0) {
        parser.body_limit(limits_.max_body);
      } else {
        parser.body_limit(boost::none);
      }
      char framing[80];
      auto end = framing;
      auto add = [&](std::string_view s) { end = std::copy(s.begin(), s.end(), end); };
      add("POST / HTTP/1.1\r\n");
      if (hc.chunked) {
        add("Transfer-Encoding: chunked\r\n");
      } else {
        add("Content-Length: ");
        end = std::to_chars(end, framing + sizeof framing, *hc.content_length).ptr;
        add("\r\n");
      }
      add("\r\n");
      error_code ec;
      parser.put(asio::buffer(framing, static_cast<size_t>(end - framing)), ec);
      if (ec || !parser.is_header_done()) {
        why = "malformed request framing";
        return 400;
      }
    }
    req.msg = &msg;
    req.method = msg.method_string();
    req.target = msg.target();
    req.head = msg.method() == bhttp::verb::head;
    req.expect_continue = req.version == 11 && req.has_body && parts.expect &&
                          beast::iequals(msg[bhttp::field::expect], "100-continue");
    // Without a Connection header, HTTP/1.1 keeps the connection and HTTP/1.0 does not.
    keep_alive_ = parts.hop_by_hop ? msg.keep_alive() : req.version == 11;

    // The target: origin-form, or absolute-form (whose authority replaces Host, RFC 9112 3.2.2).
    std::string_view target = req.target;
    if (target.front() != '/' && target != "*") {
      auto abs = parse_absolute_target(target); // checked by check_head already
      if (!abs) {
        why = "invalid request target";
        return 400;
      }
      msg.target(abs->origin_form);
      msg.set(bhttp::field::host, abs->authority);
      req.host = msg[bhttp::field::host];
      target = msg.target();
    }
    // Content-Length "5, 5" or repeated: check_head made sure they agree; send one.
    if (auto cl = parts.content_length_list ? msg.find(bhttp::field::content_length) : msg.end();
        cl != msg.end()) {
      std::string value(cl->value());
      auto comma = value.find(',');
      bool repeated = msg.count(bhttp::field::content_length) > 1; // (not always adjacent)
      if (comma != std::string::npos || repeated) {
        msg.erase(bhttp::field::content_length);
        value = value.substr(0, comma);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
          value.pop_back();
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
          value.erase(0, 1);
        msg.set(bhttp::field::content_length, value);
      }
    }
    auto qmark = target.find('?');
    req.path = target.substr(0, qmark);
    if (qmark != std::string_view::npos)
      req.query = target.substr(qmark + 1);

    // An Upgrade request (WebSocket and others, HTTP/1.1, no body) keeps its Upgrade and
    // Connection headers: they are hop-by-hop, but the upstream must see them to switch.
    if (parts.hop_by_hop) {
      if (req.version == 11 && !req.has_body && has_token(msg, bhttp::field::connection, "upgrade"))
        req.upgrade = msg[bhttp::field::upgrade]; // (readable after the erase below)
      req.te_trailers = has_token(msg, bhttp::field::te, "trailers");
      strip_hop_by_hop(msg);
      if (!req.upgrade.empty()) {
        msg.set(bhttp::field::upgrade, req.upgrade);
        msg.set(bhttp::field::connection, "upgrade");
      }
    }
    if (parts.expect)
      msg.erase(bhttp::field::expect);
    return 0;
  }

  // --- BodySource ------------------------------------------------------------------------------
  net::Task<size_t> read(asio::mutable_buffer buf, error_code& ec, unsigned& status) override {
    if (!parser_)
      co_return 0; // no body
    auto& parser = *parser_;
    auto& msg = parser.get();
    // A body is read in large blocks' worth (the head may have come in a small one).
    if (!parser.is_done() && buf_.capacity() < BufferPool::kBlockSize)
      buf_.reserve(BufferPool::kBlockSize);
    for (;;) {
      if (parser.is_done())
        co_return 0;
      msg.body().data = buf.data();
      msg.body().size = buf.size();
      lowest().expires_after(limits_.header_timeout);
      auto [e, n] = co_await bhttp::async_read_some(client_, buf_, parser, net::use_task_nothrow);
      if (e == bhttp::error::need_buffer)
        e = {};
      if (e) {
        ec = e;
        status = body_error_status(e);
        co_return 0;
      }
      size_t got = buf.size() - msg.body().size;
      // Only a chunk-size line was parsed: read on.
      if (got == 0 && !parser.is_done())
        continue;
      co_return got;
    }
  }

  bool done() const override {
    return !parser_ || parser_->is_done();
  }

  // A framing or size error is answered; a vanished client is not.
  static unsigned body_error_status(const error_code& e) {
    bool http_error = e.category() == bhttp::make_error_code(bhttp::error::body_limit).category();
    return e == bhttp::error::body_limit ? 413 : http_error ? 400 : 0;
  }

  // What the parser makes of the bytes already in buf_, without a read from the client.
  size_t read_now(asio::mutable_buffer buf, error_code& ec, unsigned& status) override {
    ec = {};
    status = 0;
    if (!parser_ || parser_->is_done())
      return 0;
    auto& parser = *parser_;
    auto& body = parser.get().body();
    body.data = buf.data();
    body.size = buf.size();
    while (buf_.size() > 0 && body.size > 0 && !parser.is_done()) {
      error_code e;
      size_t used = parser.put(buf_.data(), e);
      buf_.consume(used);
      if (e == bhttp::error::need_more || e == bhttp::error::need_buffer)
        break; // a part of a chunk's header, or buf is full
      if (e) {
        ec = e;
        status = body_error_status(e);
        return 0;
      }
      if (used == 0)
        break;
    }
    return buf.size() - body.size;
  }

  net::Task<bool> send_continue() override {
    lowest().expires_after(limits_.send_timeout);
    static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] = co_await asio::async_write(client_, asio::buffer(k100), net::use_task_nothrow);
    co_return !ec;
  }

  // --- ResponseSink ----------------------------------------------------------------------------
  // The head is not written at once: it waits (in out_head_) for the first body bytes or the
  // end of the response, so that a small response leaves in one write. flush() sends it early
  // when the body is slow to come.
  bool head(ResponseMessage& res, bool body) override {
    res_ = &res;
    res_has_body_ = body;
    // A request whose body was not read cannot be followed by another on this connection.
    bool keep = keep_alive_ && !worker_.draining() && done();
    // (No Transfer-Encoding and no Connection field come from the upstream: see ResponseSink.)
    bool unframed = body && !res.has_content_length();
    out_chunked_ = false;
    if (req_->version == 10) {
      res.version(10);
      if (unframed)
        keep = false; // the body ends with the connection
    } else {
      res.version(11);
      if (unframed) {
        res.chunked(true);
        out_chunked_ = true;
      }
    }
    if (!done())
      linger_ = true;
    // A Connection field only when the version's default does not hold (or a filter set one).
    if (keep != (req_->version == 11) || res.find(bhttp::field::connection) != res.end())
      res.keep_alive(keep);
    keep_after_ = keep;
    out_finished_ = false;
    out_head_.clear();
    append_response_head(out_head_, res);
    return true;
  }

  // Not a coroutine itself: the one it returns (write_parts) is the only frame per call.
  using Parts = std::array<asio::const_buffer, 4>;

  // The parts of a data() call: the held-back head, a chunk's size line, the chunk, its CRLF.
  size_t data_parts(asio::const_buffer chunk, Parts& parts) {
    size_t count = 0;
    if (!res_has_body_ || chunk.size() == 0)
      return 0;
    if (!out_head_.empty())
      parts[count++] = asio::buffer(out_head_);
    if (out_chunked_) {
      auto [end, err] = std::to_chars(size_line_.data(), size_line_.data() + size_line_.size() - 2,
                                      chunk.size(), 16);
      (void)err;
      *end++ = '\r';
      *end++ = '\n';
      parts[count++] =
          asio::buffer(size_line_.data(), static_cast<size_t>(end - size_line_.data()));
    }
    parts[count++] = chunk;
    if (out_chunked_)
      parts[count++] = asio::buffer("\r\n", 2);
    return count;
  }

  net::Task<bool> data(asio::const_buffer chunk, bool more) override {
    Parts parts{};
    size_t count = data_parts(chunk, parts);
    return write_parts(parts, count, more && !kUnix); // (no packets to fill on a Unix socket)
  }

  std::optional<bool> data_now(asio::const_buffer chunk) override {
    if constexpr (kTls) {
      return std::nullopt;
    } else {
      Parts parts{};
      size_t count = data_parts(chunk, parts);
      if (count == 0)
        return true;
      started_ = true; // from here on, no other response can replace this one
      size_t sent = 0;
      auto done = offer_now(parts, count, sent, false);
      if (!done)
        sent_ahead_ = sent; // data() with the same chunk skips what went
      return done;
    }
  }

  // Offers parts[0..count) to a plain connection's socket at once (net::send_now): false when
  // the client is gone, true when the socket took them all (the held-back head is gone either
  // way), else nullopt with `sent` the bytes it took. With `more`, the kernel may keep the tail
  // that does not fill a packet until more comes or push() (MSG_MORE), as HAProxy does while
  // it relays a body: a 256 KiB body then leaves in full 64 KiB packets on loopback instead of
  // one per read, each waking the client.
  std::optional<bool> offer_now(const Parts& parts, size_t count, size_t& sent, bool more) {
    error_code ec;
    sent = net::send_now(lowest().socket().native_handle(), parts.data(), count, ec, more);
    if (ec) {
      out_head_.clear();
      corked_ = false;
      return false;
    }
    if (sent == beast::buffer_bytes(std::span<const asio::const_buffer>(parts.data(), count))) {
      out_head_.clear();
      corked_ = more;
      return true;
    }
    corked_ = false; // the rest goes with async_write, which pushes what the socket holds
    return std::nullopt;
  }

  // Sends what the socket holds back: what MSG_MORE left (setting TCP_NODELAY again pushes
  // it), or on TLS what TCP_CORK held (cork()).
  void push() {
    if (std::exchange(corked_, false)) {
      int fd = lowest().socket().native_handle();
      int on = 1, off = 0;
      if constexpr (kTls)
        ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
      else
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
  }

  // TLS writes go through OpenSSL (net::TlsStream: up to three 16 KiB records per send), so
  // MSG_MORE cannot be given; while a body is relayed with more to come, TCP_CORK gathers the
  // records into full packets instead, until push().
  void cork() {
    if (!std::exchange(corked_, true)) {
      int on = 1;
      ::setsockopt(lowest().socket().native_handle(), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    }
  }

  bool finish_now() override {
    if (!out_finished_ && out_head_.empty() && !(res_has_body_ && out_chunked_))
      out_finished_ = true; // nothing held back, no last chunk to send
    if (out_finished_)
      push();
    return out_finished_;
  }

  net::Task<bool> finish(const Fields* trailers) override {
    (void)trailers; // HTTP/1.1 clients rarely ask for trailers (TE: trailers); not relayed
    if (out_finished_) {
      push();
      co_return true;
    }
    out_finished_ = true;
    std::array<asio::const_buffer, 4> parts;
    size_t count = 0;
    if (!out_head_.empty())
      parts[count++] = asio::buffer(out_head_);
    if (res_has_body_ && out_chunked_)
      parts[count++] = asio::buffer("0\r\n\r\n", 5);
    co_return co_await write_parts(parts, count);
  }

  net::Task<bool> flush() override {
    std::array<asio::const_buffer, 4> parts;
    size_t count = 0;
    if (!out_head_.empty())
      parts[count++] = asio::buffer(out_head_);
    co_return co_await write_parts(parts, count);
  }

  // One gathered write of parts[0..count); the held-back head is gone once written. `parts` is
  // a copy: the callers return this coroutine without waiting for it themselves. On a plain
  // connection the socket is offered the bytes at once (net::send_now); only what it did not
  // take waits for it, under send-timeout.
  net::Task<bool> write_parts(Parts parts, size_t count, bool more = false) {
    if (count == 0) {
      push();
      co_return true;
    }
    started_ = true; // from here on, no other response can replace this one
    std::span<const asio::const_buffer> all(parts.data(), count);
    beast::buffers_suffix<std::span<const asio::const_buffer>> rest(all);
    if (sent_ahead_ > 0) {
      // data_now() sent the start of these parts: the socket was full a moment ago.
      rest.consume(std::exchange(sent_ahead_, 0));
    } else if constexpr (!kTls) {
      size_t sent = 0;
      if (auto done = offer_now(parts, count, sent, more))
        co_return *done;
      rest.consume(sent);
    } else if (more) {
      cork();
    }
    lowest().expires_after(limits_.send_timeout);
    auto [ec, n] = co_await asio::async_write(client_, rest, net::use_task_nothrow);
    out_head_.clear();
    if (kTls && !more)
      push();
    co_return !ec;
  }

  // After 101 Switching Protocols: answer the client, then copy bytes both ways until either side
  // closes or nothing moves for tunnel-idle-timeout. The connection is not HTTP any more.
  net::Task<bool> tunnel(ResponseMessage& res, upstream::Conn& conn,
                         asio::const_buffer pending) override {
    auto& req = *req_;
    started_ = true;
    keep_after_ = false;
    std::string upgrade(res[bhttp::field::upgrade]);
    strip_hop_by_hop(res);
    res.set(bhttp::field::upgrade, upgrade.empty() ? req.upgrade : upgrade);
    res.set(bhttp::field::connection, "upgrade");
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = true;
    bhttp::serializer<false, bhttp::buffer_body, Fields> sr{res};
    lowest().expires_after(limits_.send_timeout);
    if (auto [ec, n] = co_await bhttp::async_write_header(client_, sr, net::use_task_nothrow); ec)
      co_return true;
    // Bytes that arrived with the heads belong to the new protocol.
    if (pending.size() > 0) {
      auto [ec, n] = co_await asio::async_write(client_, pending, net::use_task_nothrow);
      if (ec)
        co_return true;
      req.bytes_out += n;
    }
    if (buf_.size() > 0) {
      conn.expires_after(limits_.tunnel_idle_timeout);
      auto [ec, n] = co_await asio::async_write(conn, buf_.data(), net::use_task_nothrow);
      if (ec)
        co_return true;
      buf_.consume(n);
    }
    using namespace boost::asio::experimental::awaitable_operators;
    auto idle = limits_.tunnel_idle_timeout;
    // Either direction ending ends both (the other is cancelled).
    co_await (pump_to_upstream(conn, idle) || pump_to_client(conn, idle, &req.bytes_out));
    logger("http")->debug("{}:{}: {} tunnel to {} closed", conn_.peer_ip, conn_.peer_port,
                          req.upgrade, req.upstream);
    co_return true;
  }

  net::Task<void> pump_to_upstream(upstream::Conn& conn, std::chrono::milliseconds idle) {
    std::array<char, 16 * 1024> buf{};
    // The request came through a drained read (net/drained_read.hpp), which may have consumed
    // the client's end of file: the first read tries recv() at once, and sees it. Later reads
    // are Asio's, which try at once after any read that returned data.
    bool first = true;
    for (;;) {
      lowest().expires_after(idle);
      error_code ec;
      size_t n = 0;
      bool now = false;
      if constexpr (!kTls)
        if (std::exchange(first, false))
          now = net::recv_now(lowest().socket().native_handle(), asio::buffer(buf), n, ec);
      if (!now) {
        auto [e, got] = co_await client_.async_read_some(asio::buffer(buf), net::use_task_nothrow);
        ec = e;
        n = got;
      }
      if (ec)
        break;
      conn.expires_after(idle);
      auto [wec, wn] =
          co_await asio::async_write(conn, asio::buffer(buf.data(), n), net::use_task_nothrow);
      if (wec)
        break;
    }
  }

  net::Task<void> pump_to_client(upstream::Conn& conn, std::chrono::milliseconds idle,
                                 uint64_t* counter) {
    std::array<char, 16 * 1024> buf{};
    bool first = true; // (the 101 came through a drained read: see pump_to_upstream)
    for (;;) {
      conn.expires_after(idle);
      error_code ec;
      size_t n = 0;
      if (!std::exchange(first, false) || !conn.read_now(asio::buffer(buf), n, ec)) {
        auto [e, got] = co_await conn.async_read_some(asio::buffer(buf), net::use_task_nothrow);
        ec = e;
        n = got;
      }
      if (ec)
        break;
      lowest().expires_after(idle);
      auto [wec, wn] =
          co_await asio::async_write(client_, asio::buffer(buf.data(), n), net::use_task_nothrow);
      if (wec)
        break;
      *counter += wn;
    }
  }

  // A request refused before routing: answer (and close) and log why.
  net::Task<void> reject(ProxyRequest& req, unsigned status, std::string_view why) {
    logger("http")->info("{}:{}: {} {}: {}", conn_.peer_ip, conn_.peer_port, status,
                         reason_text(status), why);
    req_ = &req;
    keep_alive_ = false;
    started_ = false;
    co_await respond_error(service_, conn_, req, *this, status);
    linger_ = true;
    req_ = nullptr;
    res_ = nullptr;
    out_head_.clear();
  }

  static constexpr size_t kMaxBuffer = 1024 * 1024;
  // More than any PROXY header the parser accepts (v2 is refused above 4096 bytes).
  static constexpr size_t kMaxProxyHeader = 8192;
  static constexpr std::chrono::seconds kLingerTime{5};
  static constexpr std::chrono::seconds kLingerRead{1};

  Worker& worker_;
  const WorkerListener& listener_;
  const WorkerService& service_; // the default service: its limits apply to the connection
  const config::LimitsConfig& limits_;
  HeadLimits head_limits_;
  Lowest& lowest() {
    return beast::get_lowest_layer(client_);
  }

  Stream client_;
  ConnInfo conn_;
  // Bytes read from the client and not consumed yet; a block of the worker's pool while there
  // are any (see await_request).
  beast::basic_flat_buffer<BufferPool::Allocator<char>> buf_{
      BufferPool::Allocator<char>(&worker_.buffers())};
  Clock::time_point accepted_ = Clock::now();
  bool socket_v6_ = false; // TCP: the socket's own family is AF_INET6 (for parking)
  bool proxied_ = false;   // conn_ holds the addresses of a PROXY protocol header
  bool first_request_ = true;
  bool idle_ = false;
  bool linger_ = false; // close with a lingering read (see linger())
  // Parking an idle keep-alive connection (plain streams; see on_idle_timeout).
  bool reading_idle_ = false;       // run() waits between requests with a block
  bool park_ = false;               // the sweep cancelled that read to park the connection
  bool parked_out_ = false;         // run() returned to park the connection (see park_out)
  bool resumed_ = false;            // run() continues a parked connection
  Clock::time_point wait_deadline_; // keepalive-timeout of the current wait
  // The exchange in progress.
  std::optional<bhttp::request_parser<bhttp::buffer_body, SmallAllocator<char>>> parser_;
  std::optional<RequestMessage> own_msg_; // a request without a body (no parser needed)
  ProxyRequest* req_ = nullptr;
  ResponseMessage* res_ = nullptr;
  std::string out_head_; // a response head waiting for its body's first bytes (see head())
  bool out_chunked_ = false;
  bool out_finished_ = false;
  std::array<char, 20> size_line_{}; // a chunk's size line, until its write is done
  bool corked_ = false;   // body bytes held back (MSG_MORE; TCP_CORK on TLS): push() before a wait
  size_t sent_ahead_ = 0; // what data_now() sent of the parts data() is to send
  bool res_has_body_ = false;
  bool keep_alive_ = false; // the request allows another after it
  bool keep_after_ = false; // the response said the connection stays open
};

template <class Stream> net::Task<void> serve(std::unique_ptr<Session<Stream>> session) {
  // A safety net: nothing on the request path should throw, but if something does (a library
  // limit, out of memory), this connection ends and the worker goes on.
  try {
    co_await session->run();
  } catch (const std::exception& e) {
    logger("http")->error("connection aborted by an internal error: {}", e.what());
    co_return;
  }
  if constexpr (!std::is_same_v<Stream, TlsStream>) {
    if (session->parked_out())
      Session<Stream>::park_out(std::move(session));
  }
}

template <class Stream> void Session<Stream>::start(std::unique_ptr<Session> self) {
  auto& ctx = self->worker_.context();
  asio::co_spawn(ctx, serve(std::move(self)), asio::detached);
}

} // namespace

void start_session(Worker& worker, const WorkerListener& listener,
                   asio::basic_stream_socket<tcp, net::Executor> socket) {
  if (listener.plan->tls) {
    auto session = std::make_unique<Session<TlsStream>>(
        worker, listener, std::move(socket), listener.plan->tls->context(), worker.buffers());
    asio::co_spawn(worker.context(), serve(std::move(session)), asio::detached);
    return;
  }
  auto session = std::make_unique<Session<PlainStream>>(worker, listener, std::move(socket));
  asio::co_spawn(worker.context(), serve(std::move(session)), asio::detached);
}

void start_unix_session(
    Worker& worker, const WorkerListener& listener,
    asio::basic_stream_socket<asio::local::stream_protocol, net::Executor> socket) {
  auto session = std::make_unique<Session<UnixStream>>(worker, listener, std::move(socket));
  asio::co_spawn(worker.context(), serve(std::move(session)), asio::detached);
}

void resume_session(Worker& worker, ParkedConn&& parked) {
  if (parked.unix_socket)
    Session<UnixStream>::resume(worker, std::move(parked));
  else
    Session<PlainStream>::resume(worker, std::move(parked));
}

} // namespace weir::core::http
