#include "core/http/session.hpp"

#include "core/http/exchange.hpp"
#include "core/http/head_check.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/worker.hpp"
#include "core/tls/server_tls.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace weir::core::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// Bodies stream through one buffer of this size per active exchange; reads are sized to match.
constexpr size_t kRelayBufferSize = 32 * 1024;

// Call `fn` with each non-empty, trimmed element of a comma-separated header (all its lines, in
// order); stop early when `fn` returns true. Returns whether it stopped early.
template <class Fn> bool for_each_token(const bhttp::fields& f, bhttp::field name, Fn&& fn) {
  for (auto [it, end] = f.equal_range(name); it != end; ++it) {
    std::string_view v = it->value();
    while (!v.empty()) {
      auto comma = v.find(',');
      auto item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
        item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
        item.remove_suffix(1);
      if (!item.empty() && fn(item))
        return true;
      if (comma == std::string_view::npos)
        break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

// Remove the hop-by-hop headers of RFC 9110 section 7.6.1: those named by Connection, and the
// fixed set. Transfer-Encoding stays: it is framing, rewritten by the serializer as needed.
void strip_hop_by_hop(bhttp::fields& f) {
  std::vector<std::string> named;
  for_each_token(f, bhttp::field::connection, [&](std::string_view token) {
    if (!beast::iequals(token, "transfer-encoding") && !beast::iequals(token, "content-length") &&
        !beast::iequals(token, "host"))
      named.emplace_back(token);
    return false;
  });
  for (const auto& n : named)
    f.erase(n);
  f.erase(bhttp::field::connection);
  f.erase(bhttp::field::keep_alive);
  f.erase(bhttp::field::te);
  f.erase(bhttp::field::trailer);
  f.erase(bhttp::field::upgrade);
  for (auto it = f.begin(); it != f.end();) {
    std::string_view name = it->name_string();
    if (name.size() >= 6 && beast::iequals(name.substr(0, 6), "proxy-"))
      it = f.erase(it);
    else
      ++it;
  }
}

uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

// RFC 9110 9.2.2.
bool idempotent(bhttp::verb method) {
  switch (method) {
  case bhttp::verb::get:
  case bhttp::verb::head:
  case bhttp::verb::options:
  case bhttp::verb::trace:
  case bhttp::verb::put:
  case bhttp::verb::delete_:
    return true;
  default:
    return false;
  }
}

// The size of a parsed head as it was on the wire (close enough: separators counted).
size_t head_size(const bhttp::fields& f) {
  size_t n = 64; // status line
  for (const auto& field : f)
    n += field.name_string().size() + field.value().size() + 4;
  return n;
}

// Whether a comma-separated header (all its lines) lists `token`, case-insensitively.
bool has_token(const bhttp::fields& f, bhttp::field name, std::string_view token) {
  return for_each_token(f, name,
                        [&](std::string_view item) { return beast::iequals(item, token); });
}

std::string_view reason_text(unsigned status) {
  return bhttp::obsolete_reason(static_cast<bhttp::status>(status));
}

// Stream is beast::tcp_stream (plain HTTP) or beast::ssl_stream<beast::tcp_stream> (TLS).
template <class Stream> class Session final : public Drainable {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

public:
  template <class... StreamArgs>
  Session(Worker& worker, const WorkerService& service, StreamArgs&&... stream_args)
      : worker_(worker), service_(service), limits_(service.plan->cfg->limits),
        client_(std::forward<StreamArgs>(stream_args)...) {
    error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    if (!ec) {
      client_ip_ = ep.address().to_string();
      client_port_ = ep.port();
    }
    head_limits_.max_request_line = limits_.max_request_line;
    head_limits_.max_header_bytes = limits_.max_header_bytes;
    head_limits_.max_headers = limits_.max_headers;
    registration_ = worker_.add_session(this);
  }

  ~Session() { worker_.remove_session(registration_); }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void on_drain() override {
    if (idle_) {
      error_code ec;
      lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
      lowest().socket().close(ec);
    }
  }

  asio::awaitable<void> run() {
    if constexpr (kTls) {
      // The handshake counts against header-timeout, like the head that follows it.
      lowest().expires_after(limits_.header_timeout);
      auto [ec] = co_await client_.async_handshake(asio::ssl::stream_base::server, nothrow);
      if (ec) {
        logger("tls")->debug("{}:{}: handshake failed: {}", client_ip_, client_port_, ec.message());
        error_code ignored;
        lowest().socket().close(ignored);
        co_return;
      }
    }
    for (;;) {
      bool keep = co_await serve_one();
      if (!keep || worker_.draining())
        break;
    }
    error_code ec;
    if constexpr (kTls) {
      // close_notify, briefly waiting for the peer's (a client that vanished costs 1 s at most).
      lowest().expires_after(std::chrono::seconds(1));
      co_await client_.async_shutdown(nothrow);
    }
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (linger_ && !ec && !kTls)
      co_await linger();
    lowest().socket().close(ec);
  }

  // After answering a request whose body (or rest) was not read, closing at once would make the
  // kernel reset the connection, and the client could lose the answer. Like nginx's lingering
  // close: the write side is shut already; read and discard for a bounded time until EOF.
  asio::awaitable<void> linger() {
    auto deadline = Clock::now() + kLingerTime;
    std::array<char, 4096> scratch{};
    for (int i = 0; i < 4096; ++i) {
      auto now = Clock::now();
      if (now >= deadline)
        break;
      lowest().expires_at(std::min(deadline, now + kLingerRead));
      auto [ec, n] = co_await client_.async_read_some(asio::buffer(scratch), nothrow);
      if (ec)
        break;
    }
  }

private:
  // What one exchange needs across its steps.
  struct Request {
    unsigned version = 11;
    std::string method;
    std::string target; // as received, for the log
    std::string path;
    std::string query;
    std::string host;
    bool head = false;
    bool has_body = false;
    bool expect_continue = false;
    std::string upgrade; // the protocol of an Upgrade request (e.g. "websocket"), else empty
    bool keep_alive = false;
    bool keep_alive_after = false; // the response allowed another request
    bool logged = false;
    Clock::time_point start;
    std::string upstream; // the target used, for the log
    uint64_t bytes_out = 0;
    unsigned status = 0;
  };

  std::chrono::milliseconds ms(config::Duration d) const { return d; }

  // Serve one request. Returns whether the connection may carry another.
  asio::awaitable<bool> serve_one() {
    // --- read the head ---------------------------------------------------------------------
    size_t head_len = 0;
    size_t skip = 0;
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
        break;
      if (unsigned st = check_partial_head(view.substr(skip), head_limits_); st != 0) {
        Request r;
        r.start = Clock::now();
        co_await reject(r, st, st == 414 ? "request line too long" : "request head too large");
        co_return false;
      }
      if (buf_.size() >= kMaxBuffer)
        co_return false;
      idle_ = buf_.size() == 0;
      if (idle_ && worker_.draining())
        co_return false;
      if (!idle_ && !head_deadline)
        head_deadline = Clock::now() + limits_.header_timeout;
      if (head_deadline) {
        lowest().expires_at(*head_deadline);
      } else {
        lowest().expires_after(ms(limits_.keepalive_timeout));
      }
      auto [ec, n] = co_await client_.async_read_some(buf_.prepare(kReadSize), nothrow);
      idle_ = false;
      if (ec) {
        if (ec == beast::error::timeout && buf_.size() > 0) {
          // Like nginx: logged as 408, and the connection is closed without an answer (the
          // timer already closed the socket).
          Request r;
          r.start = Clock::now();
          r.status = 408;
          logger("http")->info("{}:{}: 408: timed out reading the request head", client_ip_,
                               client_port_);
          log_access(r);
        }
        co_return false;
      }
      buf_.commit(n);
    }
    buf_.consume(skip);
    head_len -= skip;
    first_request_ = false;

    Request req;
    req.start = Clock::now();
    {
      auto data = buf_.data();
      std::string_view head(static_cast<const char*>(data.data()), head_len);
      HeadCheck hc = check_head(head, head_limits_);
      if (hc.status != 0) {
        auto sp = head.find(' ');
        if (sp != std::string_view::npos)
          req.method = std::string(head.substr(0, sp));
        co_await reject(req, hc.status, hc.reason);
        co_return false;
      }
      req.version = hc.version;
      req.has_body = hc.chunked || (hc.content_length && *hc.content_length > 0);
      if (limits_.max_body > 0 && hc.content_length && *hc.content_length > limits_.max_body) {
        co_await reject(req, 413, "request body larger than limits.max-body");
        co_return false;
      }
    }

    bhttp::request_parser<bhttp::buffer_body> parser;
    parser.header_limit(static_cast<uint32_t>(limits_.max_header_bytes + 1));
    if (limits_.max_body > 0) {
      parser.body_limit(limits_.max_body);
    } else {
      parser.body_limit(boost::none);
    }
    {
      auto [ec, n] = co_await bhttp::async_read_header(client_, buf_, parser, nothrow);
      if (ec) {
        co_await reject(req, 400, "malformed request: " + ec.message());
        co_return false;
      }
    }
    auto& msg = parser.get();
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.head = msg.method() == bhttp::verb::head;
    req.keep_alive = msg.keep_alive();
    req.host = std::string(msg[bhttp::field::host]);
    req.expect_continue = req.version == 11 && req.has_body &&
                          beast::iequals(msg[bhttp::field::expect], "100-continue");

    // The target: origin-form, or absolute-form (whose authority replaces Host, RFC 9112 3.2.2).
    std::string_view target = req.target;
    if (target.front() != '/' && target != "*") {
      auto abs = parse_absolute_target(target); // checked by check_head already
      if (!abs) {
        co_await reject(req, 400, "invalid request target");
        co_return false;
      }
      req.host = abs->authority;
      msg.target(abs->origin_form);
      msg.set(bhttp::field::host, req.host);
      target = msg.target();
    }
    // Content-Length "5, 5" or repeated: check_head made sure they agree; send one.
    if (auto cl = msg.find(bhttp::field::content_length); cl != msg.end()) {
      std::string value(cl->value());
      auto comma = value.find(',');
      auto next = std::next(cl);
      bool repeated = next != msg.end() && next->name() == bhttp::field::content_length;
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
    req.path = std::string(target.substr(0, qmark));
    if (qmark != std::string_view::npos)
      req.query = std::string(target.substr(qmark + 1));

    // Headers as they go upstream.
    // An Upgrade request (WebSocket and others, HTTP/1.1, no body) keeps its Upgrade and
    // Connection headers: they are hop-by-hop, but the upstream must see them to switch.
    if (req.version == 11 && !req.has_body && has_token(msg, bhttp::field::connection, "upgrade"))
      req.upgrade = std::string(msg[bhttp::field::upgrade]);
    strip_hop_by_hop(msg);
    if (!req.upgrade.empty()) {
      msg.set(bhttp::field::upgrade, req.upgrade);
      msg.set(bhttp::field::connection, "upgrade");
    }
    msg.erase(bhttp::field::expect);
    // Every X-Forwarded-For line counts (a list may be split over several), then the client.
    std::string xff;
    // (Beast keeps fields of one name adjacent, in order.)
    for (auto [it, end] = msg.equal_range("X-Forwarded-For"); it != end; ++it) {
      if (!it->value().empty()) {
        xff += it->value();
        xff += ", ";
      }
    }
    xff += client_ip_;
    msg.set("X-Forwarded-For", xff);
    msg.set("X-Forwarded-Proto", kTls ? "https" : "http");
    if (!req.host.empty())
      msg.set("X-Forwarded-Host", req.host);
    msg.version(11);

    const WorkerRoute& route = service_.match(req.path);
    Exchange ex = exchange_for(req);
    ex.request = &msg;
    ex.can_respond = true;
    for (auto* f : route.filters) {
      if (!f->has_request())
        continue;
      weir_filter_result_t r = f->on_request(reinterpret_cast<weir_http_t*>(&ex));
      if (r == WEIR_FILTER_CONTINUE)
        continue;
      if (r == WEIR_FILTER_RESPONDED && ex.local)
        break;
      logger("http")->error("{} failed on {} {}", f->config().label(), req.method, req.path);
      ex.local = LocalResponse{500, "text/plain", "500 Internal Server Error\n"};
      break;
    }
    ex.can_respond = false;
    // A request whose body was not read cannot be followed by another on this connection.
    bool keep = req.keep_alive && !worker_.draining();
    if (ex.local) {
      auto local = std::move(*ex.local);
      co_await respond_local(req, local.status, local.content_type, std::move(local.body), &route,
                             keep && !req.has_body);
      co_return keep && !req.has_body;
    }
    if (route.upstream == nullptr) {
      co_await respond_local(req, 404, "text/plain", "404 Not Found\n", &route,
                             keep && !req.has_body);
      co_return keep && !req.has_body;
    }
    co_return co_await proxy(req, parser, ex, route);
  }

  // Forward the request to an upstream chosen by the load balancer and relay the response.
  asio::awaitable<bool> proxy(Request& req, bhttp::request_parser<bhttp::buffer_body>& parser,
                              Exchange& ex, const WorkerRoute& route) {
    WorkerUpstream& up = *route.upstream;
    const auto& ucfg = *up.plan->cfg;
    auto targets = up.targets; // keeps this snapshot alive for the whole exchange
    bool keep = req.keep_alive && !worker_.draining();
    if (!targets || targets->targets.empty()) {
      co_await respond_local(req, 503, "text/plain", "503 Service Unavailable\n", &route, false);
      co_return false;
    }
    auto& msg = parser.get();
    std::vector<uint8_t> excluded(targets->targets.size(), 0);
    unsigned failure_status = 502;
    bool body_started = false;

    for (uint32_t attempt = 0; attempt < targets->targets.size(); ++attempt) {
      long picked = up.lb->pick(reinterpret_cast<weir_http_t*>(&ex), attempt, excluded);
      if (picked < 0)
        break;
      auto idx = static_cast<size_t>(picked);
      const upstream::Target& target = targets->targets[idx];
      req.upstream = target.address;

      // A pooled connection the peer closed in the meantime is retried once on a fresh one,
      // which is safe because nothing of the request was consumed yet.
      for (int fresh_try = 0; fresh_try < 2; ++fresh_try) {
        std::unique_ptr<beast::tcp_stream> conn =
            fresh_try == 0 ? worker_.pool().take(target.id) : nullptr;
        bool reused = conn != nullptr;
        // Every on_start has exactly one on_done (a failed connect included), so load balancers
        // that count requests in flight stay balanced.
        up.lb->on_start(idx);
        auto t0 = Clock::now();
        if (!conn) {
          conn = std::make_unique<beast::tcp_stream>(worker_.context());
          conn->expires_after(ucfg.connect_timeout);
          auto [ec] = co_await conn->async_connect(target.endpoint, nothrow);
          if (ec) {
            logger("upstream")
                ->warn("connect to {} (upstream {}) failed: {}", target.address, ucfg.name,
                       ec == beast::error::timeout ? "timed out" : ec.message());
            excluded[idx] = 1;
            up.lb->on_done(idx, 0, elapsed_ns(t0));
            break; // next target
          }
          error_code ec2;
          conn->socket().set_option(tcp::no_delay(true), ec2);
        }
        auto outcome = co_await exchange(req, parser, msg, *conn, ucfg, route, ex, body_started);
        up.lb->on_done(idx, req.status, elapsed_ns(t0));
        switch (outcome) {
        case Outcome::done_reusable:
          worker_.pool().put(target.id, std::move(conn), ucfg.pool_size, ucfg.idle_timeout);
          [[fallthrough]];
        case Outcome::done:
          log_access(req);
          co_return keep&& req.keep_alive_after;
        case Outcome::aborted:
          log_access(req);
          co_return false;
        case Outcome::unsent:
          if (reused && !body_started)
            continue; // retry on a fresh connection
          failure_status = 502;
          break;
        case Outcome::stale:
          // The request went out; only an idempotent one may be sent again (RFC 9110 9.2.2):
          // a POST could have been processed before the connection dropped.
          if (reused && !body_started && idempotent(msg.method()))
            continue;
          failure_status = 502;
          break;
        case Outcome::timeout:
          failure_status = 504;
          break;
        case Outcome::failed:
          failure_status = 502;
          break;
        }
        // The upstream failed before a response began.
        co_await respond_local(req, failure_status, "text/plain",
                               std::to_string(failure_status) + " " +
                                   std::string(reason_text(failure_status)) + "\n",
                               &route, false);
        co_return false;
      }
    }
    co_await respond_local(req, failure_status, "text/plain",
                           std::to_string(failure_status) + " " +
                               std::string(reason_text(failure_status)) + "\n",
                           &route, false);
    co_return false;
  }

  enum class Outcome {
    done,          // the response was relayed; the upstream connection must close
    done_reusable, // the response was relayed; the upstream connection can be pooled
    aborted,       // failed after the response began (or the client went away): close everything
    unsent,        // the request could not be written: nothing reached the upstream
    stale,         // the upstream closed without answering after the request was written
    timeout,       // no response head within response-timeout
    failed,        // any other upstream failure before a response began
  };

  // One attempt on one upstream connection.
  asio::awaitable<Outcome> exchange(Request& req, bhttp::request_parser<bhttp::buffer_body>& parser,
                                    bhttp::request<bhttp::buffer_body>& msg,
                                    beast::tcp_stream& conn, const config::UpstreamConfig& ucfg,
                                    const WorkerRoute& route, Exchange& ex, bool& body_started) {
    req.keep_alive_after = false;
    // HTTP/1.1 upstream requires a Host; an HTTP/1.0 client may not have sent one.
    if (msg.find(bhttp::field::host) == msg.end())
      msg.set(bhttp::field::host, req.upstream);
    bhttp::serializer<true, bhttp::buffer_body> sr{msg};
    conn.expires_after(ucfg.response_timeout);
    {
      auto [ec, n] = co_await bhttp::async_write_header(conn, sr, nothrow);
      if (ec)
        co_return body_started ? Outcome::failed : Outcome::unsent;
    }
    if (req.expect_continue && !continue_sent_) {
      continue_sent_ = true;
      lowest().expires_after(ms(limits_.send_timeout));
      static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [ec, n] = co_await asio::async_write(client_, asio::buffer(k100), nothrow);
      if (ec)
        co_return Outcome::aborted;
    }
    // Stream the request body (if any) from the client to the upstream.
    if (!relay_)
      relay_ = std::make_unique<char[]>(kRelayBufferSize);
    do {
      if (!parser.is_done()) {
        body_started = true;
        msg.body().data = relay_.get();
        msg.body().size = kRelayBufferSize;
        lowest().expires_after(ms(limits_.header_timeout));
        auto [ec, n] = co_await bhttp::async_read_some(client_, buf_, parser, nothrow);
        if (ec == bhttp::error::need_buffer)
          ec = {};
        if (ec) {
          req.status = ec == bhttp::error::body_limit ? 413 : 400;
          logger("http")->info("{}:{}: request body failed: {}", client_ip_, client_port_,
                               ec.message());
          // A framing or size error is answered; a vanished client is not.
          if (ec.category() == bhttp::make_error_code(bhttp::error::body_limit).category())
            co_await write_simple(req, req.status, false);
          co_return Outcome::aborted;
        }
        msg.body().size = kRelayBufferSize - msg.body().size;
        msg.body().data = relay_.get();
        msg.body().more = !parser.is_done();
        // An empty buffer would be serialized as a zero-size (that is: last) chunk. When only a
        // chunk-size line was parsed, read on; at the end, say "no buffer" instead.
        if (msg.body().size == 0) {
          if (msg.body().more)
            continue;
          msg.body().data = nullptr;
        }
      } else {
        msg.body().data = nullptr;
        msg.body().size = 0;
        msg.body().more = false;
      }
      conn.expires_after(ucfg.response_timeout);
      auto [ec, n] = co_await bhttp::async_write(conn, sr, nothrow);
      if (ec == bhttp::error::need_buffer)
        ec = {};
      if (ec)
        co_return body_started ? Outcome::failed : Outcome::unsent;
    } while (!parser.is_done() || !sr.is_done());
    continue_sent_ = false;

    // Read the response head, skipping interim (1xx) responses.
    beast::flat_buffer up_buf;
    up_buf.reserve(kRelayBufferSize);
    std::optional<bhttp::response_parser<bhttp::buffer_body>> rp;
    for (int interim = 0;; ++interim) {
      if (interim > kMaxInterimResponses) {
        logger("upstream")
            ->warn("{} (upstream {}): more than {} interim (1xx) responses", req.upstream,
                   ucfg.name, kMaxInterimResponses);
        co_return Outcome::failed;
      }
      rp.emplace();
      rp->body_limit(boost::none);
      rp->header_limit(kMaxUpstreamHead); // below the 64 KiB a single field may hold
      if (req.head)
        rp->skip(true);
      conn.expires_after(ucfg.response_timeout);
      auto [ec, n] = co_await bhttp::async_read_header(conn, up_buf, *rp, nothrow);
      if (ec) {
        if (ec == beast::error::timeout) {
          logger("upstream")
              ->warn("{} (upstream {}): no response within {}ms", req.upstream, ucfg.name,
                     ucfg.response_timeout.count());
          co_return Outcome::timeout;
        }
        if ((ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
             ec == asio::error::eof) &&
            up_buf.size() == 0)
          co_return Outcome::stale;
        logger("upstream")
            ->warn("{} (upstream {}): bad response: {}", req.upstream, ucfg.name, ec.message());
        co_return Outcome::failed;
      }
      // Beast applies header_limit to what is left unparsed in the buffer; count it ourselves.
      if (head_size(rp->get()) > kMaxUpstreamHead) {
        logger("upstream")
            ->warn("{} (upstream {}): response head larger than {} bytes", req.upstream, ucfg.name,
                   kMaxUpstreamHead);
        co_return Outcome::failed;
      }
      unsigned st = rp->get().result_int();
      if (st >= 100 && st < 200 && st != 101)
        continue;
      break;
    }
    auto& res = rp->get();
    req.status = res.result_int();
    if (req.status == 101) {
      if (req.upgrade.empty() || !has_token(res, bhttp::field::connection, "upgrade")) {
        logger("upstream")->warn("{}: unexpected 101 Switching Protocols", req.upstream);
        co_return Outcome::failed;
      }
      co_return co_await tunnel(req, res, conn, up_buf);
    }
    bool upstream_keep = res.keep_alive() && res.version() == 11;
    strip_hop_by_hop(res);
    ex.response = &res;
    ex.status = req.status;
    run_response_filters(route, ex);

    bool no_body = req.head || req.status == 204 || req.status == 304;
    bool keep = req.keep_alive && !worker_.draining();
    bool delimited = res.has_content_length() || res.chunked() || no_body;
    if (!delimited)
      upstream_keep = false; // the body ends when the upstream closes
    if (req.version == 10) {
      res.version(10);
      if (res.chunked())
        res.chunked(false);
      if (!res.has_content_length() && !no_body)
        keep = false;
    } else {
      res.version(11);
      if (!delimited && !req.head)
        res.chunked(true);
    }
    res.keep_alive(keep);
    req.keep_alive_after = keep;

    bhttp::serializer<false, bhttp::buffer_body> rsr{res};
    lowest().expires_after(ms(limits_.send_timeout));
    {
      auto [ec, n] = co_await bhttp::async_write_header(client_, rsr, nothrow);
      if (ec)
        co_return Outcome::aborted;
    }
    if (!no_body) {
      do {
        if (!rp->is_done()) {
          res.body().data = relay_.get();
          res.body().size = kRelayBufferSize;
          conn.expires_after(ucfg.response_timeout);
          auto [ec, n] = co_await bhttp::async_read_some(conn, up_buf, *rp, nothrow);
          if (ec == bhttp::error::need_buffer)
            ec = {};
          if (ec == bhttp::error::end_of_stream && !delimited)
            ec = {}; // close-delimited
          if (ec) {
            logger("upstream")
                ->warn("{} (upstream {}): response body failed: {}", req.upstream, ucfg.name,
                       ec.message());
            co_return Outcome::aborted;
          }
          res.body().size = kRelayBufferSize - res.body().size;
          res.body().data = relay_.get();
          res.body().more = !rp->is_done();
          req.bytes_out += res.body().size;
          if (res.body().size == 0) { // see the request loop
            if (res.body().more)
              continue;
            res.body().data = nullptr;
          }
        } else {
          res.body().data = nullptr;
          res.body().size = 0;
          res.body().more = false;
        }
        lowest().expires_after(ms(limits_.send_timeout));
        auto [ec, n] = co_await bhttp::async_write(client_, rsr, nothrow);
        if (ec == bhttp::error::need_buffer)
          ec = {};
        if (ec)
          co_return Outcome::aborted;
      } while (!rp->is_done() || !rsr.is_done());
    } else if (!rp->is_done()) {
      upstream_keep = false;
    }
    bool reusable = upstream_keep && rp->is_done() && up_buf.size() == 0;
    co_return reusable ? Outcome::done_reusable : Outcome::done;
  }

  // After 101 Switching Protocols: answer the client, then copy bytes both ways until either side
  // closes or nothing moves for tunnel-idle-timeout. The connection is not HTTP any more.
  asio::awaitable<Outcome> tunnel(Request& req, bhttp::response<bhttp::buffer_body>& res,
                                  beast::tcp_stream& conn, beast::flat_buffer& up_buf) {
    std::string upgrade(res[bhttp::field::upgrade]);
    strip_hop_by_hop(res);
    res.set(bhttp::field::upgrade, upgrade.empty() ? req.upgrade : upgrade);
    res.set(bhttp::field::connection, "upgrade");
    bhttp::serializer<false, bhttp::buffer_body> sr{res};
    lowest().expires_after(limits_.send_timeout);
    if (auto [ec, n] = co_await bhttp::async_write_header(client_, sr, nothrow); ec)
      co_return Outcome::aborted;
    // Bytes that arrived with the heads belong to the new protocol.
    if (up_buf.size() > 0) {
      auto [ec, n] = co_await asio::async_write(client_, up_buf.data(), nothrow);
      if (ec)
        co_return Outcome::aborted;
      req.bytes_out += n;
      up_buf.consume(n);
    }
    if (buf_.size() > 0) {
      conn.expires_after(limits_.tunnel_idle_timeout);
      auto [ec, n] = co_await asio::async_write(conn, buf_.data(), nothrow);
      if (ec)
        co_return Outcome::aborted;
      buf_.consume(n);
    }
    using namespace boost::asio::experimental::awaitable_operators;
    auto idle = limits_.tunnel_idle_timeout;
    // Either direction ending ends both (the other is cancelled).
    co_await (pump(client_, lowest(), conn, conn, idle, nullptr) ||
              pump(conn, conn, client_, lowest(), idle, &req.bytes_out));
    logger("http")->debug("{}:{}: {} tunnel to {} closed", client_ip_, client_port_, req.upgrade,
                          req.upstream);
    co_return Outcome::aborted; // neither connection can carry HTTP again
  }

  // Copy `from` -> `to` until EOF, an error, or no traffic for `idle` (each transfer pushes the
  // deadline of both streams further).
  template <class From, class To>
  asio::awaitable<void> pump(From& from, beast::tcp_stream& from_low, To& to,
                             beast::tcp_stream& to_low, std::chrono::milliseconds idle,
                             uint64_t* counter) {
    std::array<char, 16 * 1024> buf{};
    for (;;) {
      from_low.expires_after(idle);
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), nothrow);
      if (ec)
        break;
      to_low.expires_after(idle);
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), nothrow);
      if (wec)
        break;
      if (counter != nullptr)
        *counter += wn;
    }
  }

  void run_response_filters(const WorkerRoute* route, Exchange& ex) {
    if (route == nullptr)
      return;
    // Response filters run in reverse order: the first filter sees the request first and the
    // response last, like layers around the upstream.
    for (auto it = route->filters.rbegin(); it != route->filters.rend(); ++it) {
      auto* f = *it;
      if (!f->has_response())
        continue;
      weir_filter_result_t r = f->on_response(reinterpret_cast<weir_http_t*>(&ex));
      if (r == WEIR_FILTER_FAILED)
        logger("http")->error("{} failed on the response to {} {}", f->config().label(), ex.method,
                              ex.path);
    }
  }
  void run_response_filters(const WorkerRoute& route, Exchange& ex) {
    run_response_filters(&route, ex);
  }

  // What filters and load balancers see of `req` (views into it).
  Exchange exchange_for(const Request& req) const {
    Exchange ex;
    ex.method = req.method;
    ex.path = req.path;
    ex.query = req.query;
    ex.host = req.host;
    ex.client_ip = client_ip_;
    ex.client_port = client_port_;
    return ex;
  }

  // Answer from weir itself (an error or a filter's local response).
  asio::awaitable<void> respond_local(Request& req, unsigned status, std::string_view content_type,
                                      std::string body, const WorkerRoute* route, bool keep) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status),
                                            req.version == 10 ? 10 : 11};
    res.set(bhttp::field::server, "weir");
    if (!content_type.empty())
      res.set(bhttp::field::content_type, content_type);
    res.body() = std::move(body);
    res.prepare_payload();
    if (route != nullptr) {
      Exchange ex = exchange_for(req);
      ex.response = &res;
      ex.status = status;
      run_response_filters(route, ex);
    }
    res.keep_alive(keep);
    if (!keep)
      linger_ = true;
    req.status = status;
    req.bytes_out = req.head ? 0 : res.body().size();
    lowest().expires_after(ms(limits_.send_timeout));
    if (req.head) {
      bhttp::serializer<false, bhttp::string_body> sr{res};
      co_await bhttp::async_write_header(client_, sr, nothrow);
    } else {
      co_await bhttp::async_write(client_, res, nothrow);
    }
    log_access(req);
  }

  asio::awaitable<void> write_simple(Request& req, unsigned status, bool keep) {
    co_await respond_local(req, status, "text/plain",
                           std::to_string(status) + " " + std::string(reason_text(status)) + "\n",
                           nullptr, keep);
  }

  // A request refused before routing: answer and log why.
  asio::awaitable<void> reject(Request& req, unsigned status, std::string_view why) {
    logger("http")->info("{}:{}: {} {}: {}", client_ip_, client_port_, status, reason_text(status),
                         why);
    co_await write_simple(req, status, false);
  }

  void log_access(Request& req) {
    if (req.logged || !access_log_enabled())
      return;
    req.logged = true;
    AccessRecord r;
    r.client_ip = client_ip_;
    r.client_port = client_port_;
    r.method = req.method.empty() ? std::string_view("-") : std::string_view(req.method);
    r.target = req.target.empty() ? std::string_view("-") : std::string_view(req.target);
    r.version = req.version;
    r.status = req.status;
    r.bytes = req.bytes_out;
    r.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - req.start).count();
    r.upstream = req.upstream;
    r.service = service_.plan->cfg->name;
    core::log_access(r);
  }

  static constexpr size_t kMaxBuffer = 1024 * 1024;
  static constexpr size_t kReadSize = 16 * 1024;
  static constexpr uint32_t kMaxUpstreamHead = 60000;
  static constexpr int kMaxInterimResponses = 16;
  static constexpr std::chrono::seconds kLingerTime{5};
  static constexpr std::chrono::seconds kLingerRead{1};

  Worker& worker_;
  const WorkerService& service_;
  const config::LimitsConfig& limits_;
  HeadLimits head_limits_;
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(client_); }

  Stream client_;
  beast::flat_buffer buf_;
  std::string client_ip_;
  uint16_t client_port_ = 0;
  std::list<Drainable*>::iterator registration_;
  std::unique_ptr<char[]> relay_;
  Clock::time_point accepted_ = Clock::now();
  bool first_request_ = true;
  bool idle_ = false;
  bool continue_sent_ = false;
  bool linger_ = false; // close with a lingering read (see linger())
};

template <class Stream> asio::awaitable<void> serve(std::unique_ptr<Session<Stream>> session) {
  // A safety net: nothing on the request path should throw, but if something does (a library
  // limit, out of memory), this connection ends and the worker goes on.
  try {
    co_await session->run();
  } catch (const std::exception& e) {
    logger("http")->error("connection aborted by an internal error: {}", e.what());
  }
}

} // namespace

void start_session(Worker& worker, const WorkerService& service, tcp::socket socket) {
  auto session = std::make_unique<Session<beast::tcp_stream>>(worker, service, std::move(socket));
  asio::co_spawn(worker.context(), serve(std::move(session)), asio::detached);
}

void start_tls_session(Worker& worker, const WorkerService& service, tcp::socket socket,
                       tls::ServerTls& tls) {
  using TlsStream = beast::ssl_stream<beast::tcp_stream>;
  auto session =
      std::make_unique<Session<TlsStream>>(worker, service, std::move(socket), tls.context());
  asio::co_spawn(worker.context(), serve(std::move(session)), asio::detached);
}

} // namespace weir::core::http
