#include "core/http/proxy.hpp"

#include "core/http/exchange.hpp"
#include "core/http/forwarded.hpp"
#include "core/http/host_match.hpp"
#include "core/http/response_head.hpp"
#include "core/http/wire.hpp"
#include "core/net/drained_read.hpp"
#include "core/net/proxy_protocol.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/worker.hpp"
#include "core/upstream/conn.hpp"
#include "core/upstream/h2_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <memory>
#include <span>
#include <tuple>

namespace weir::core::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Bodies stream through one buffer of this size per active exchange.
constexpr size_t kRelayBufferSize = BufferPool::kBlockSize;
constexpr uint32_t kMaxUpstreamHead = 60000; // below the 64 KiB a single Beast field may hold
constexpr int kMaxInterimResponses = 16;
// What one read from an upstream asks for with `buffered` bytes unparsed: enough to fill one of
// the pool's blocks (the read buffer then stays one pooled block), at least 4 KiB.
constexpr size_t upstream_read_size(size_t buffered) {
  return buffered + 4096 <= BufferPool::kBlockSize ? BufferPool::kBlockSize - buffered : 4096;
}

// Call `fn` with each non-empty, trimmed element of a comma-separated header (all its lines, in
// order); stop early when `fn` returns true. Returns whether it stopped early.
template <class Fn> bool for_each_token(const Fields& f, bhttp::field name, Fn&& fn) {
  return f.each_value(name, [&](std::string_view v) {
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
    return false;
  });
}

// From `since` to `until`, or to now when `until` is unset (the epoch).
uint64_t elapsed_ns(Clock::time_point since, Clock::time_point until = {}) {
  if (until == Clock::time_point())
    until = Clock::now();
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(until - since).count());
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

std::string status_body(unsigned status) {
  return std::to_string(status) + " " + std::string(reason_text(status)) + "\n";
}

const WorkerService* find_service(const std::vector<const WorkerService*>& services,
                                  std::string_view name) {
  if (name.empty())
    return nullptr;
  for (const auto* s : services)
    for (const auto& n : s->plan->cfg->server_names)
      if (n == name)
        return s;
  for (const auto* s : services)
    for (const auto& n : s->plan->cfg->server_names)
      if (n.starts_with("*.") && wildcard_match(n, name))
        return s;
  return nullptr;
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

// An answer from weir itself, through the downstream protocol.
net::Task<void> respond_local(const WorkerService& service, const ConnInfo& conn, ProxyRequest& req,
                              ResponseSink& sink, unsigned status, std::string_view content_type,
                              std::string body, const WorkerRoute* route, Exchange* ex) {
  ResponseMessage res{static_cast<bhttp::status>(status), 11};
  res.set(bhttp::field::server, "weir");
  if (!content_type.empty())
    res.set(bhttp::field::content_type, content_type);
  bool no_body = req.head || status == 204 || status == 304 || (status >= 100 && status < 200);
  if (status != 204 && status != 304)
    res.content_length(body.size());
  if (route != nullptr && ex != nullptr) {
    ex->response = &res;
    ex->status = status;
    run_response_filters(route, *ex);
    ex->response = nullptr;
  }
  req.status = status;
  req.bytes_out = 0;
  bool send_body = !no_body && !body.empty();
  if (sink.head(res, send_body)) {
    bool ok = true;
    if (send_body) {
      ok = co_await sink.data(asio::buffer(body), false);
      if (ok)
        req.bytes_out = body.size();
    }
    if (ok)
      co_await sink.finish(nullptr);
  }
  log_request(service, conn, req);
}

enum class Outcome {
  done,          // the response was relayed; the upstream connection must close
  done_reusable, // the response was relayed; the upstream connection can be pooled
  aborted,       // failed after the response began (or the client went away): close everything
  broken,        // the upstream failed after its head went to the sink: like aborted, but when
                 // the sink sent nothing yet, the client still gets a 502
  unsent,        // the request could not be written: nothing reached the upstream
  stale,         // the upstream closed without answering after the request was written
  timeout,       // no response head within response-timeout
  failed,        // any other upstream failure before a response began
  client_failed, // the client's body failed before a response began; `req.status` says how
};

// Forwarding one request: the load balancer's choice, connections, retries, relaying.
class Forwarder {
public:
  Forwarder(Worker& worker, const WorkerService& service, const ConnInfo& conn, ProxyRequest& req,
            BodySource& body, ResponseSink& sink, const WorkerRoute& route, Exchange& ex)
      : worker_(worker), service_(service), conn_(conn), req_(req), body_(body), sink_(sink),
        route_(route), ex_(ex), up_(*route.upstream), ucfg_(*up_.plan->cfg),
        pol_(route.plan->policy) {
    if (pol_.request_timeout)
      deadline_ = req_.start + *pol_.request_timeout;
  }

  // (The loop over targets and the HTTP/1.1 exchange are in handle_request(), whose coroutine
  // frame holds the Forwarder: two coroutine frames less per request.)
  friend net::Task<bool> http::handle_request(Worker& worker, const WorkerService& service,
                                              const ConnInfo& conn, ProxyRequest& req,
                                              BodySource& body, ResponseSink& sink);

private:
  // What to do after one exchange: a final answer (the request is done, true when the
  // downstream connection may carry another), or nullopt with `retry` set when it may go again
  // on a fresh connection to the same target.
  // `other` is set (and nullopt returned) when the request may go to another target: nothing of
  // it reached this one, or it is idempotent, had no body and the connection closed before any
  // byte of a response.
  // The answer for an exchange that ended (answered in full, or aborted), with its log line;
  // nullopt for the other outcomes, which conclude() handles. A plain call: the common case
  // needs no coroutine frame.
  std::optional<bool> settled(Outcome outcome) {
    if (outcome != Outcome::done_reusable && outcome != Outcome::done &&
        outcome != Outcome::aborted)
      return std::nullopt;
    log_request(service_, conn_, req_);
    return outcome != Outcome::aborted && !client_gone_;
  }

  net::Task<std::optional<bool>> conclude(Outcome outcome, bool reused, bool& retry, bool& other) {
    retry = false;
    other = false;
    if (auto done = settled(outcome))
      co_return done;
    switch (outcome) {
    case Outcome::done_reusable:
    case Outcome::done:
    case Outcome::aborted:
      break; // settled() answered
    case Outcome::broken:
      failure_status_ = 502;
      co_await fail(502); // only logs when bytes of the response went out already
      co_return false;
    case Outcome::client_failed:
      co_await fail(req_.status);
      co_return false;
    case Outcome::unsent:
      if (!body_started_) {
        // Nothing (or not even a whole head) reached the upstream.
        (reused ? retry : other) = true;
        failure_status_ = 502;
        co_return std::nullopt;
      }
      failure_status_ = 502;
      break;
    case Outcome::stale:
      // The request went out; only an idempotent one may be sent again (RFC 9110 9.2.2):
      // a POST could have been processed before the connection dropped.
      if (!body_started_ && idempotent(req_.msg->method())) {
        (reused ? retry : other) = true;
        failure_status_ = 502;
        if (other)
          logger("upstream")
              ->warn("{} (upstream {}): connection closed before a response to {} {} (safe to "
                     "send again)",
                     req_.upstream, ucfg_.name, req_.method, req_.path);
        co_return std::nullopt;
      }
      logger("upstream")
          ->warn("{} (upstream {}): connection closed before a response to {} {}", req_.upstream,
                 ucfg_.name, req_.method, req_.path);
      failure_status_ = 502;
      break;
    case Outcome::timeout:
      failure_status_ = 504;
      break;
    case Outcome::failed:
      failure_status_ = 502;
      break;
    }
    // The upstream failed before a response began.
    co_await fail(failure_status_);
    co_return false;
  }

  void connect_failed(size_t idx, const upstream::Target& target, const std::string& error,
                      Clock::time_point t0) {
    // Logged per failure, but at most Worker::kGateBurst lines per target and second: an
    // outage under load would otherwise write thousands of identical lines.
    bool last = false;
    uint64_t suppressed = 0;
    if (worker_.log_gate(ucfg_.name + '\n' + target.id, last, suppressed))
      logger("upstream")
          ->warn("connect to {} (upstream {}) failed: {}{}{}", target.address, ucfg_.name, error,
                 suppressed > 0 ? fmt::format(" ({} similar lines left out before)", suppressed)
                                : std::string(),
                 last ? fmt::format(" (further failures to this target are not logged for the "
                                    "rest of this second)")
                      : std::string());
    lb_done(idx, 0, elapsed_ns(t0));
    observe(target, 0, true, false, t0);
  }

  // on_done for the target the request started on: indices refer to the set the load balancer
  // had at on_start; when a new set arrived since, the same target is found by id (the load
  // balancer kept its state by target), and a target that left gets no on_done.
  void lb_done(size_t idx, uint32_t status, uint64_t ns) {
    const upstream::TargetSet* now = up_.targets.get();
    if (now == snapshot_ || now == nullptr || snapshot_ == nullptr) {
      up_.lb->on_done(idx, status, ns);
      return;
    }
    const std::string& id = snapshot_->targets[idx].id;
    for (size_t i = 0; i < now->targets.size(); ++i) {
      if (now->targets[i].id == id) {
        up_.lb->on_done(i, status, ns);
        return;
      }
    }
  }

  // Whether `target` is still in the worker's current set, leading to the same place (discovery
  // may have removed it, or its host name moved, while the request ran).
  bool still_published(const upstream::Target& target) const {
    const upstream::TargetSet* now = up_.targets.get();
    if (now == snapshot_)
      return true;
    if (now == nullptr)
      return false;
    return std::any_of(now->targets.begin(), now->targets.end(), [&](const upstream::Target& t) {
      return upstream::same_destination(t, target);
    });
  }

  // Tell passive health checkers (if the upstream has any) how an attempt ended.
  void observe(const upstream::Target& target, uint32_t status, bool connect_failed, bool timed_out,
               Clock::time_point t0, Clock::time_point until = {}) {
    if (!up_.observed)
      return;
    Observation o;
    o.target_id = target.id;
    o.status = status;
    o.connect_failed = connect_failed;
    o.timed_out = timed_out;
    o.duration_ns = elapsed_ns(t0, until);
    worker_.observe(up_.index, std::move(o));
  }

  // The time a wait may last: `limit`, cut short by the request's deadline.
  Clock::duration wait_limit(Clock::duration limit) const {
    if (!deadline_)
      return limit;
    auto left = *deadline_ - Clock::now();
    if (left < Clock::duration::zero())
      left = Clock::duration::zero();
    return std::min(limit, left);
  }
  Clock::time_point wait_deadline(Clock::duration limit) const {
    return Clock::now() + wait_limit(limit);
  }
  bool past_deadline() const { return deadline_ && Clock::now() >= *deadline_; }
  // The log text for a timeout: which limit ran out.
  std::string timeout_text() const {
    if (past_deadline())
      return fmt::format("request-timeout of {}ms reached", pol_.request_timeout->count());
    return fmt::format("no response within {}ms", pol_.response_timeout.count());
  }

  // HTTP/2 to one target: a stream on a shared connection, opening one when none has room.
  net::Task<std::optional<bool>> try_h2(size_t idx, const upstream::Target& target) {
    std::string scratch;
    const std::string& key = pool_key(target, scratch);
    auto& pool = worker_.h2_pool();
    bool is_auto = ucfg_.protocol == "auto";
    upstream::H2Settings settings;
    settings.max_concurrent_streams = ucfg_.h2_max_concurrent_streams;
    settings.upstream_name = ucfg_.name;
    settings.target = target.address;
    settings.write_timeout = ucfg_.response_timeout;
    for (int fresh_try = 0; fresh_try < 2; ++fresh_try) {
      std::shared_ptr<upstream::H2Conn> hc = fresh_try == 0 ? pool.find(key) : nullptr;
      bool reused = hc != nullptr;
      // "auto" with an idle HTTP/1.1 connection kept (ALPN chose http/1.1 before): use it.
      if (!hc && is_auto && fresh_try == 0 && worker_.pool().has_idle(key)) {
        h1_instead_ = true; // handle_request() goes on with HTTP/1.1
        co_return std::nullopt;
      }
      up_.lb->on_start(idx);
      auto t0 = Clock::now();
      if (!hc) {
        if (!is_auto) // registered at once: concurrent requests wait for this one
          hc = pool.add(key, settings, ucfg_.idle_timeout);
        std::string error;
        auto conn = co_await upstream::connect(worker_.context().get_executor(), target,
                                               connect_options(), error);
        if (conn && conn->tls() && !is_auto && conn->alpn() != "h2") {
          error = "the target did not agree to HTTP/2 (ALPN chose \"" +
                  (conn->alpn().empty() ? std::string("nothing") : conn->alpn()) + "\")";
          conn.reset();
        }
        if (!conn) {
          if (hc)
            upstream::H2Pool::failed(hc, error);
          connect_failed(idx, target, error, t0);
          co_return std::nullopt;
        }
        if (is_auto && conn->alpn() != "h2") {
          h1_instead_ = true; // handle_request() goes on with HTTP/1.1 on this connection
          h1_conn_ = std::move(conn);
          h1_started_ = t0;
          co_return std::nullopt;
        }
        if (is_auto)
          hc = pool.adopt(key, std::move(conn), settings, ucfg_.idle_timeout);
        else
          upstream::H2Pool::start(hc, std::move(conn));
      } else if (upstream::H2Pool::connecting(hc)) {
        std::string error;
        if (!co_await upstream::H2Pool::wait_ready(hc, t0 + wait_limit(pol_.connect_timeout),
                                                   error)) {
          connect_failed(idx, target, error, t0);
          co_return std::nullopt;
        }
      }
      auto call = upstream::H2Pool::open(hc);
      Outcome outcome = Outcome::unsent;
      if (call)
        outcome = co_await exchange_h2(*call);
      lb_done(idx, req_.status, elapsed_ns(t0));
      if (outcome != Outcome::client_failed)
        observe(target, req_.status, false, outcome == Outcome::timeout, t0);
      bool retry = false;
      bool other = false;
      auto result = co_await conclude(outcome, reused || !call, retry, other);
      if (other)
        co_return std::nullopt;
      if (!retry)
        co_return result.has_value() ? result : std::optional<bool>(false);
    }
    co_await fail(failure_status_);
    co_return false;
  }

  // One attempt on one HTTP/2 stream.
  net::Task<Outcome> exchange_h2(upstream::H2Call& call) {
    auto& msg = *req_.msg;
    std::string_view authority = msg[bhttp::field::host];
    if (authority.empty())
      authority = req_.upstream;
    if (!call.submit(msg.method_string(), msg.target(), ucfg_.tls ? "https" : "http", authority,
                     msg, req_.has_body, req_.te_trailers))
      co_return Outcome::unsent;
    if (req_.expect_continue && !continue_sent_) {
      continue_sent_ = true;
      if (!co_await body_.send_continue())
        co_return Outcome::aborted;
    }
    if (!relay_)
      relay_ = worker_.buffers().block();
    bool body_ok = true;
    if (held_ > 0) { // kept from an HTTP/1.1 attempt that sent nothing
      body_started_ = true;
      body_ok = co_await call.write(asio::buffer(relay_.get(), held_),
                                    wait_deadline(pol_.response_timeout));
    }
    while (req_.has_body && !body_.done() && body_ok) {
      body_started_ = true;
      error_code ec;
      unsigned status = 0;
      size_t n = co_await body_.read(asio::buffer(relay_.get(), kRelayBufferSize), ec, status);
      if (ec)
        co_return body_failed(ec, status);
      if (n > 0)
        body_ok = co_await call.write(asio::buffer(relay_.get(), n),
                                      wait_deadline(pol_.response_timeout));
    }
    if (body_ok)
      call.end_body(body_.trailers());
    // The upstream may answer before (or instead of) taking the whole body.
    auto head = co_await call.read_head(wait_deadline(pol_.response_timeout));
    switch (head) {
    case upstream::H2Head::ok:
      break;
    case upstream::H2Head::timeout:
      call.suspect();
      logger("upstream")->warn("{} (upstream {}): {}", req_.upstream, ucfg_.name, timeout_text());
      co_return Outcome::timeout;
    case upstream::H2Head::refused:
      co_return body_started_ ? Outcome::failed : Outcome::unsent;
    case upstream::H2Head::failed:
      if (!body_started_)
        co_return Outcome::stale;
      logger("upstream")
          ->warn("{} (upstream {}): HTTP/2 stream failed before a response", req_.upstream,
                 ucfg_.name);
      co_return Outcome::failed;
    }
    ResponseMessage res{static_cast<bhttp::status>(call.status()), 11};
    for (const auto& f : call.head())
      res.insert(f.name_string(), f.value());
    req_.status = call.status();
    bool no_body = req_.head || req_.status == 204 || req_.status == 304;
    strip_hop_by_hop(res);
    ex_.response = &res;
    ex_.status = req_.status;
    run_response_filters(&route_, ex_);
    ex_.response = nullptr;
    if (!sink_.head(res, !no_body))
      co_return Outcome::aborted;
    if (!no_body) {
      for (;;) {
        // A sink holding the head back sends it before a wait for body bytes not there yet.
        if (!call.readable() && !co_await sink_.flush())
          co_return Outcome::aborted;
        std::string error;
        size_t n = co_await call.read(asio::buffer(relay_.get(), kRelayBufferSize),
                                      wait_deadline(pol_.response_timeout), error);
        if (n == 0 && !error.empty()) {
          if (error == "timed out")
            call.suspect();
          logger("upstream")
              ->warn("{} (upstream {}): response body failed: {}", req_.upstream, ucfg_.name,
                     error);
          co_return Outcome::broken;
        }
        if (n == 0)
          break;
        // More that is already here may join this piece (see ResponseSink::data).
        if (!co_await sink_.data(asio::buffer(relay_.get(), n), call.buffered()))
          co_return Outcome::aborted;
        req_.bytes_out += n;
      }
    }
    if (!co_await sink_.finish(call.trailers()))
      co_return Outcome::aborted;
    co_return Outcome::done;
  }

  // The key of `target`'s connections in the worker's pools: the target's own, or one made in
  // `scratch`.
  const std::string& pool_key(const upstream::Target& target, std::string& scratch) const {
    // A PROXY header describes one client: such connections carry only that client's requests.
    if (up_.plan->proxy_protocol == 0 && !target.pool_key.empty())
      return target.pool_key;
    // Connections belong to their upstream group: two groups may reach one address with
    // different TLS settings (verification, client certificate, server name).
    scratch = ucfg_.name + '\n' + target.id;
    if (up_.plan->proxy_protocol != 0)
      scratch += '\n' + proxy_client().first + ':' + std::to_string(proxy_client().second);
    return scratch;
  }
  // The same with its hash for the worker's pool (the target's own, hashed when published).
  upstream::Pool::Key hashed_pool_key(const upstream::Target& target, std::string& scratch) const {
    const std::string& key = pool_key(target, scratch);
    if (&key != &target.pool_key)
      return upstream::Pool::keyed(key);
    assert(target.pool_hash == upstream::Pool::hash(key)); // (set with pool_key: server.cpp)
    return {key, target.pool_hash};
  }

  // The client a PROXY header towards the upstream names: the request's client address (trusted
  // proxies and an incoming PROXY header applied), with the connection's port when that address
  // is the connection's own.
  std::pair<std::string, uint16_t> proxy_client() const {
    if (req_.client_ip.empty())
      return {conn_.peer_ip, conn_.peer_port};
    return {req_.client_ip, req_.client_port};
  }

  upstream::ConnectOptions connect_options() const {
    upstream::ConnectOptions o;
    o.connect_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(wait_limit(pol_.connect_timeout));
    o.tls = up_.plan->client_tls.get();
    o.pool = &worker_.buffers();
    if (ucfg_.tls) {
      o.verify = ucfg_.tls->verify;
      o.server_name = ucfg_.tls->server_name;
    }
    o.proxy_protocol = up_.plan->proxy_protocol;
    if (o.proxy_protocol != 0) {
      net::ProxyHeader h;
      std::tie(h.src_ip, h.src_port) = proxy_client();
      h.dst_ip = conn_.local_ip;
      h.dst_port = conn_.local_port;
      h.local = h.src_ip == "unix" || conn_.local_ip.empty();
      o.proxy_header = o.proxy_protocol == 2 ? net::make_proxy_v2(h) : net::make_proxy_v1(h);
    }
    o.upstream_name = ucfg_.name;
    return o;
  }

  net::Task<void> fail(unsigned status) {
    if (sink_.started()) {
      log_request(service_, conn_, req_);
      co_return;
    }
    co_await respond_local(service_, conn_, req_, sink_, status, "text/plain", status_body(status),
                           &route_, &ex_);
  }

  // Whether the body is read whole before a target is picked: its stated length fits the
  // relay block, and the client does not wait for a 100 Continue first.
  bool reads_body_first() const {
    return req_.has_body && !req_.expect_continue && req_.content_length &&
           *req_.content_length <= kRelayBufferSize;
  }

  // Such a body, read whole before a target is picked or a connection taken, as nginx buffers
  // request bodies: it then goes upstream with the head in one write and can be sent again on
  // another try, and the upload's time counts neither against a target (its latency, an idle
  // connection's life, the response timeout) nor as a try. nullopt when all of it came; else
  // what handle_request returns (the client failed: answered when it can be, or left).
  net::Task<std::optional<bool>> read_whole_body() {
    if (!relay_)
      relay_ = worker_.buffers().block();
    while (!body_.done() && held_ < kRelayBufferSize) {
      error_code ec;
      unsigned status = 0;
      size_t n = co_await body_.read(asio::buffer(relay_.get() + held_, kRelayBufferSize - held_),
                                     ec, status);
      if (ec) {
        if (body_failed(ec, status) == Outcome::aborted)
          co_return settled(Outcome::aborted);
        co_await fail(req_.status);
        co_return false;
      }
      if (n == 0)
        break;
      held_ += n;
    }
    held_whole_ = body_.done();
    co_return std::nullopt;
  }

  // A failed read of the request body: the log line, the status to answer (none when `status`
  // is 0: the client left or its connection timed out and closed, logged as 408 like nginx
  // does), the outcome.
  Outcome body_failed(error_code ec, unsigned status) {
    logger("http")->info("{}:{}: request body failed: {}", conn_.peer_ip, conn_.peer_port,
                         ec.message());
    req_.status = status != 0 ? status : ec == beast::error::timeout ? 408 : 400;
    return status == 0 ? Outcome::aborted : Outcome::client_failed;
  }

  // The request head and its body, streamed from the client through Beast's serializer (which
  // frames a chunked body). Outcome::done when all of it went out.
  //
  // Body bytes that are already here (a small POST comes with its head; a body read whole
  // first, see read_whole_body) go out in the same write as the head: one system call and one
  // packet instead of two. They are kept (held_) until some of them went out, so a write that
  // sent nothing can be tried again on another connection; when they are the whole body, until
  // the exchange ends, so the request can be sent again as one without a body could (an
  // idempotent one whose connection closed before a response). The rest of a longer body is
  // streamed and cannot be sent again. A client that expects 100 Continue gets it only after
  // the head went upstream, and its body is never read before.
  net::Task<Outcome> send_with_body(upstream::Conn& conn, RequestMessage& msg) {
    bhttp::serializer<true, bhttp::buffer_body, Fields> sr{msg};
    conn.expires_after(wait_limit(pol_.response_timeout));
    if (!relay_)
      relay_ = worker_.buffers().block();
    bool awaits_continue = req_.expect_continue && !continue_sent_;
    if (held_ == 0 && !awaits_continue && !body_.done()) {
      // As much as is here (a chunked body's last chunk comes in a read of its own).
      while (!body_.done() && held_ < kRelayBufferSize) {
        error_code ec;
        unsigned status = 0;
        size_t n = body_.read_now(asio::buffer(relay_.get() + held_, kRelayBufferSize - held_), ec,
                                  status);
        if (ec)
          co_return body_failed(ec, status);
        if (n == 0)
          break;
        held_ += n;
      }
      held_whole_ = body_.done();
    }
    if (held_ > 0) {
      msg.body().data = relay_.get();
      msg.body().size = held_;
      msg.body().more = !held_whole_;
      auto [ec, n] = co_await bhttp::async_write(conn, sr, net::use_task_nothrow);
      if (ec == bhttp::error::need_buffer)
        ec = {};
      if (ec && n == 0)
        co_return Outcome::unsent; // the held bytes can go again
      if (!held_whole_) {
        held_ = 0; // relay_ is reused for the rest of the body, which cannot go again
        body_started_ = true;
      }
      // (A whole body that went out in part: sent again only for an idempotent method.)
      if (ec)
        co_return body_started_ ? Outcome::failed : Outcome::stale;
    } else {
      auto [ec, n] = co_await bhttp::async_write_header(conn, sr, net::use_task_nothrow);
      if (ec)
        co_return body_started_ ? Outcome::failed : Outcome::unsent;
      if (awaits_continue) {
        continue_sent_ = true;
        if (!co_await body_.send_continue())
          co_return Outcome::aborted;
      }
    }
    // Stream the rest of the request body (if any) from the client to the upstream.
    while (!body_.done() || !sr.is_done()) {
      if (!body_.done()) {
        body_started_ = true;
        error_code ec;
        unsigned status = 0;
        size_t n = co_await body_.read(asio::buffer(relay_.get(), kRelayBufferSize), ec, status);
        if (ec)
          co_return body_failed(ec, status);
        msg.body().data = relay_.get();
        msg.body().size = n;
        msg.body().more = !body_.done();
        // An empty buffer would be serialized as a zero-size (that is: last) chunk.
        if (n == 0) {
          if (msg.body().more)
            continue;
          msg.body().data = nullptr;
        }
      } else {
        msg.body().data = nullptr;
        msg.body().size = 0;
        msg.body().more = false;
      }
      conn.expires_after(wait_limit(pol_.response_timeout));
      auto [ec, n] = co_await bhttp::async_write(conn, sr, net::use_task_nothrow);
      if (ec == bhttp::error::need_buffer)
        ec = {};
      if (ec)
        co_return body_started_ ? Outcome::failed : Outcome::unsent;
    }
    co_return Outcome::done;
  }

  // One attempt on one upstream connection (HTTP/1.1).
  // A connection whose exchange ended cleanly goes back to the worker's pool. Not when its
  // target left the set while the request ran (it drains), nor once the worker drains (the pool
  // was emptied; a connection kept now would live on, and its stream's timer would hold the
  // worker's shutdown until it fires).
  void keep_connection(std::unique_ptr<upstream::Conn>& conn, const upstream::Pool::Key& key,
                       const upstream::Target& target, Clock::time_point now) {
    if (still_published(target) && !worker_.draining())
      worker_.pool().put(key, std::move(conn), ucfg_.pool_size, ucfg_.idle_timeout, now);
  }

  using UpBuffer = beast::basic_flat_buffer<BufferPool::Allocator<char>>;

  // Read more of a response body from the upstream into up_buf; when it has to wait, the sink
  // first sends what it holds back. Returns the error (eof when the upstream closed).
  net::Task<error_code> read_body_more(upstream::Conn& conn, UpBuffer& up_buf) {
    // Every read from the upstream is a drained read (net/drained_read.hpp): after one that came
    // up short, the first read of the next response (the head loop in handle_request()), issued
    // right after its request went out, waits for the upstream's bytes instead of trying recv() at
    // once and failing. Any other read, as this one, tries recv() first, which sees an end of
    // file that the read before it consumed with its data (a body delimited by the close, a
    // truncated one). One missed before a first read is the pool's to catch (Pool::take).
    auto space = up_buf.prepare(upstream_read_size(up_buf.size()));
    error_code ec;
    size_t n = 0;
    if (!conn.read_now(space, n, ec)) {
      if (!co_await sink_.flush()) {
        client_gone_ = true;
        co_return asio::error::operation_aborted;
      }
      conn.expires_after(wait_limit(pol_.response_timeout));
      auto [e, got] = co_await conn.async_read_some(net::DrainedRead(space), net::use_task_nothrow);
      ec = e;
      n = got;
    }
    up_buf.commit(n);
    co_return ec;
  }

  void log_body_failure(error_code ec) {
    logger("upstream")
        ->warn("{} (upstream {}): response body failed: {}", req_.upstream, ucfg_.name,
               ec == asio::error::eof ? "partial message" : ec.message());
  }

  // A body of `length` bytes: relayed straight from up_buf as it comes, counted. Returns whether
  // all of it came (false with client_gone_ when the client left first).
  net::Task<bool> relay_counted(upstream::Conn& conn, UpBuffer& up_buf, uint64_t length) {
    while (length > 0) {
      if (up_buf.size() == 0) {
        error_code ec = co_await read_body_more(conn, up_buf);
        if (client_gone_)
          co_return false;
        if (ec) {
          log_body_failure(ec);
          co_return false;
        }
      }
      auto data = up_buf.data();
      size_t n = static_cast<size_t>(std::min<uint64_t>(length, data.size()));
      if (!co_await sink_.data(asio::buffer(data.data(), n), n < length)) {
        // The client left. When that was the last of the body, the upstream's side of the
        // exchange is complete and its connection stays usable.
        client_gone_ = true;
        up_buf.consume(n);
        co_return length == n;
      }
      up_buf.consume(n);
      length -= n;
      req_.bytes_out += n;
    }
    co_return true;
  }

  // A chunked body, or one that ends when the upstream closes: Beast's parser takes the framing
  // off (it is given a head that says only that) and leaves the data in relay_.
  net::Task<bool> relay_parsed(upstream::Conn& conn, UpBuffer& up_buf, bool chunked) {
    auto rp = std::make_unique<bhttp::response_parser<bhttp::buffer_body, SmallAllocator<char>>>();
    rp->body_limit(boost::none);
    {
      std::string_view head = chunked ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      : "HTTP/1.1 200 OK\r\n\r\n";
      error_code pec;
      rp->put(asio::buffer(head.data(), head.size()), pec);
    }
    if (!relay_)
      relay_ = worker_.buffers().block();
    auto& body = rp->get().body();
    // Parse the body out of up_buf into relay_; read from the upstream only when the parser
    // needs more, and let the sink send a held-back head before waiting.
    bool need_read = up_buf.size() == 0;
    while (!rp->is_done()) {
      if (need_read) {
        error_code ec = co_await read_body_more(conn, up_buf);
        if (client_gone_)
          co_return false;
        if ((ec == asio::ssl::error::stream_truncated || ec == asio::error::eof) && !chunked) {
          // Close-delimited: the end of the connection is the end of the body.
          ec = {};
          if (up_buf.size() == 0)
            rp->put_eof(ec);
        }
        if (ec) {
          log_body_failure(ec);
          co_return false;
        }
        need_read = false;
        if (rp->is_done())
          break;
      }
      body.data = relay_.get();
      body.size = kRelayBufferSize;
      error_code pec;
      size_t used = rp->put(up_buf.data(), pec);
      up_buf.consume(used);
      if (pec == bhttp::error::need_buffer)
        pec = {};
      if (pec == bhttp::error::need_more) {
        pec = {};
        need_read = true;
      }
      if (pec) {
        log_body_failure(pec);
        co_return false;
      }
      size_t got = kRelayBufferSize - body.size;
      if (got > 0) {
        if (!co_await sink_.data(asio::buffer(relay_.get(), got), !rp->is_done())) {
          // The client left. When that was the last of the body, the upstream's side of the
          // exchange is complete and its connection stays usable.
          client_gone_ = true;
          co_return rp->is_done();
        }
        req_.bytes_out += got;
      }
      if (up_buf.size() == 0 || (used == 0 && got == 0))
        need_read = true;
    }
    co_return true;
  }

  Worker& worker_;
  const WorkerService& service_;
  const ConnInfo& conn_;
  ProxyRequest& req_;
  BodySource& body_;
  ResponseSink& sink_;
  const WorkerRoute& route_;
  Exchange& ex_;
  WorkerUpstream& up_;
  const config::UpstreamConfig& ucfg_;
  const ForwardPolicy& pol_;
  const upstream::TargetSet* snapshot_ =
      nullptr; // the set indices refer to (kept alive by handle_request)
  std::optional<Clock::time_point> deadline_; // request-timeout
  BufferPool::Block relay_;                   // from the worker's pool, when a body is relayed
  bool body_started_ = false;
  size_t held_ = 0;         // bytes of the request body in relay_, kept to send again
  bool held_whole_ = false; // ... and they are the whole body
  bool continue_sent_ = false;
  bool client_gone_ = false; // a write to the client failed: its connection closes
  unsigned failure_status_ = 502;
  // Set by try_h2 when "auto" chose HTTP/1.1 for the target (ALPN, or an idle HTTP/1.1
  // connection in the pool): handle_request() goes on with HTTP/1.1, on h1_conn_ when try_h2
  // made one (its on_start was at h1_started_).
  bool h1_instead_ = false;
  std::unique_ptr<upstream::Conn> h1_conn_;
  std::optional<Clock::time_point> h1_started_;
};

} // namespace

bool has_token(const Fields& f, bhttp::field name, std::string_view token) {
  return for_each_token(f, name,
                        [&](std::string_view item) { return beast::iequals(item, token); });
}

void strip_hop_by_hop(Fields& f) {
  // Names the Connection header lists (copied: that header goes too).
  // "close" (the usual one) without an allocation.
  std::vector<std::string> named;
  bool close_named = false;
  if (f.find(bhttp::field::connection) != f.end())
    for_each_token(f, bhttp::field::connection, [&](std::string_view token) {
      if (beast::iequals(token, "close"))
        close_named = true;
      else if (!beast::iequals(token, "transfer-encoding") &&
               !beast::iequals(token, "content-length") && !beast::iequals(token, "host") &&
               !beast::iequals(token, "keep-alive"))
        named.emplace_back(token);
      return false;
    });
  // One pass over the fields (each erase by name would be a tree search of its own).
  for (auto it = f.begin(); it != f.end();) {
    bool drop = false;
    switch (it->name()) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::upgrade:
      drop = true;
      break;
    default: {
      std::string_view name = it->name_string();
      drop = (name.size() >= 6 && beast::iequals(name.substr(0, 6), "proxy-")) ||
             (close_named && beast::iequals(name, "close"));
      for (size_t i = 0; !drop && i < named.size(); ++i)
        drop = beast::iequals(name, named[i]);
    }
    }
    it = drop ? f.erase(it) : std::next(it);
  }
}

const WorkerService& choose_service(const std::vector<const WorkerService*>& services,
                                    std::string_view host, std::string_view sni) {
  if (services.size() == 1)
    return *services.front();
  if (const auto* s = find_service(services, host_without_port(host)))
    return *s;
  if (const auto* s = find_service(services, sni))
    return *s;
  return *services.front();
}

void log_request(const WorkerService& service, const ConnInfo& conn, ProxyRequest& req) {
  if (req.logged || !access_log_enabled())
    return;
  req.logged = true;
  AccessRecord r;
  r.client_ip = req.client_ip.empty() ? std::string_view(conn.peer_ip) : req.client_ip;
  r.client_port = req.client_ip.empty() ? conn.peer_port : req.client_port;
  r.method = req.method.empty() ? std::string_view("-") : std::string_view(req.method);
  r.target = req.target.empty() ? std::string_view("-") : std::string_view(req.target);
  r.version = req.version;
  r.status = req.status;
  r.bytes = req.bytes_out;
  r.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - req.start).count();
  r.upstream = req.upstream;
  r.service = service.plan->cfg->name;
  core::log_access(r);
}

net::Task<void> respond_error(const WorkerService& service, const ConnInfo& conn, ProxyRequest& req,
                              ResponseSink& sink, unsigned status) {
  co_await respond_local(service, conn, req, sink, status, "text/plain", status_body(status),
                         nullptr, nullptr);
}

namespace {

// The part of handle_request that never waits: the client address, X-Forwarded-*, the route and
// the request filters (which may answer: ex.local). Kept out of the coroutine so that its
// temporaries do not enlarge the coroutine frame.
const WorkerRoute& prepare_request(const WorkerService& service, const ConnInfo& conn,
                                   ProxyRequest& req, Exchange& ex) {
  auto& msg = *req.msg;
  // The client address: the peer, or (from trusted proxies) the rightmost untrusted hop.
  std::vector<std::string_view> xff;
  std::string chain;
  // (The X-Forwarded-* names are not among Beast's field codes: field::unknown, no lookup.)
  constexpr auto unknown = bhttp::field::unknown;
  // Whether the request has any X-Forwarded-* field: when not, the three below are added without
  // a search for the ones they replace.
  bool forwarded_fields = false;
  for (const auto& f : msg) {
    std::string_view name = f.name_string();
    if (f.name() != unknown || name.size() < 15 ||
        !beast::iequals(name.substr(0, 12), "x-forwarded-"))
      continue;
    forwarded_fields = true;
    std::string_view v = f.value();
    if (!v.empty() && beast::iequals(name, "X-Forwarded-For")) {
      xff.push_back(v);
      chain += v;
      chain += ", ";
    }
  }
  req.client_ip = conn.peer_ip;
  req.client_port = conn.peer_port;
  if (!service.plan->trusted_proxies.empty()) {
    std::vector<std::string_view> forwarded;
    msg.each_value(bhttp::field::forwarded, [&](std::string_view v) {
      forwarded.push_back(v);
      return false;
    });
    std::string client =
        effective_client(conn.peer_ip, xff, forwarded, service.plan->trusted_proxies);
    if (client != conn.peer_ip) {
      req.client_ip = std::move(client);
      req.client_port = 0;
    }
  }
  std::string_view proto = conn.tls ? "https" : "http";
  if (forwarded_fields) {
    // Every X-Forwarded-For line counts (a list may be split over several), then the peer.
    chain += conn.peer_ip;
    msg.set(unknown, "X-Forwarded-For", chain);
    msg.set(unknown, "X-Forwarded-Proto", proto);
    if (!req.host.empty())
      msg.set(unknown, "X-Forwarded-Host", req.host);
  } else {
    // Views, not copies: the peer's address lives as long as the connection, the Host as long
    // as the message (a view into its held head, or the HTTP/2 stream's :authority), the
    // protocol is static text.
    msg.adopt(unknown, "X-Forwarded-For", conn.peer_ip);
    msg.adopt(unknown, "X-Forwarded-Proto", proto);
    if (!req.host.empty())
      msg.adopt(unknown, "X-Forwarded-Host", req.host);
  }
  msg.version(11);

  const WorkerRoute& route = service.match(req.method, req.host, req.path);
  ex.method = req.method;
  ex.path = req.path;
  ex.query = req.query;
  ex.host = req.host;
  ex.client_ip = req.client_ip;
  ex.client_port = req.client_port;
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
  return route;
}

} // namespace

std::string_view reason_text(unsigned status) {
  return bhttp::obsolete_reason(static_cast<bhttp::status>(status));
}

net::Task<bool> handle_request(Worker& worker, const WorkerService& service, const ConnInfo& conn,
                               ProxyRequest& req, BodySource& body, ResponseSink& sink) {
  Exchange ex;
  const WorkerRoute& route = prepare_request(service, conn, req, ex);
  if (ex.local) {
    auto local = std::move(*ex.local);
    ex.local.reset();
    co_await respond_local(service, conn, req, sink, local.status, local.content_type,
                           std::move(local.body), &route, &ex);
    co_return true;
  }
  if (route.upstream == nullptr) {
    const auto& nr = service.plan->cfg->no_route;
    co_await respond_local(service, conn, req, sink, nr.status, nr.content_type, nr.body, &route,
                           &ex);
    co_return true;
  }
  Forwarder fwd(worker, service, conn, req, body, sink, route, ex);
  auto targets = fwd.up_.targets; // keeps this snapshot alive for the whole exchange
  fwd.snapshot_ = targets.get();
  if (!targets || targets->targets.empty()) {
    logger("upstream")
        ->warn("upstream {}: no targets for {} {}", fwd.ucfg_.name, req.method, req.path);
    co_await fwd.fail(503);
    co_return false;
  }
  if (fwd.ucfg_.protocol == "h2" && !req.upgrade.empty()) {
    logger("upstream")
        ->warn("upstream {} speaks HTTP/2 only: cannot pass an Upgrade ({}) request; use "
               "protocol \"h1\" or \"auto\"",
               fwd.ucfg_.name, req.upgrade);
    co_await fwd.fail(502);
    co_return false;
  }
  // HTTP/2 to the targets ("h2"), or by ALPN ("auto"; an Upgrade request needs HTTP/1.1).
  bool h2 = fwd.ucfg_.protocol == "h2" || (fwd.ucfg_.protocol == "auto" && req.upgrade.empty());
  if (fwd.reads_body_first())
    if (auto done = co_await fwd.read_whole_body())
      co_return *done;
  // Targets tried already (no allocation for the usual few targets).
  std::array<uint8_t, 32> excluded_few{};
  std::vector<uint8_t> excluded_many;
  std::span<uint8_t> excluded(excluded_few.data(), targets->targets.size());
  if (targets->targets.size() > excluded_few.size()) {
    excluded_many.assign(targets->targets.size(), 0);
    excluded = excluded_many;
  }
  // Each try goes to a target not tried yet for this request, while tries and time remain:
  // after a connect failure (nothing was sent), or after a reset before any response byte when
  // sending the request again is safe (conclude() decides).
  const auto first_try = fwd.pol_.retry_timeout ? Clock::now() : Clock::time_point();
  auto tries_text = [](uint32_t n) { return fmt::format("{} tr{}", n, n == 1 ? "y" : "ies"); };
  for (uint32_t attempt = 0;; ++attempt) {
    if (attempt >= targets->targets.size()) {
      if (attempt > 1)
        logger("upstream")
            ->warn("upstream {}: {} {} failed on every target ({})", fwd.ucfg_.name, req.method,
                   req.path, tries_text(attempt));
      break;
    }
    if (attempt >= fwd.pol_.max_tries) {
      if (attempt > 0)
        logger("upstream")
            ->warn("upstream {}: {} {} failed after {} (max-tries)", fwd.ucfg_.name, req.method,
                   req.path, tries_text(attempt));
      break;
    }
    if (attempt > 0 && fwd.pol_.retry_timeout &&
        Clock::now() - first_try >= *fwd.pol_.retry_timeout) {
      logger("upstream")
          ->warn("upstream {}: {} {}: no further try after {}ms (retry-timeout)", fwd.ucfg_.name,
                 req.method, req.path, fwd.pol_.retry_timeout->count());
      break;
    }
    if (fwd.deadline_ && Clock::now() >= *fwd.deadline_) {
      fwd.failure_status_ = 504;
      break;
    }
    long picked = fwd.up_.lb->pick(reinterpret_cast<weir_http_t*>(&ex), attempt, excluded);
    if (picked < 0) {
      if (attempt > 0)
        logger("upstream")
            ->warn("upstream {}: {} {} failed after {}; no other target to try", fwd.ucfg_.name,
                   req.method, req.path, tries_text(attempt));
      break;
    }
    auto idx = static_cast<size_t>(picked);
    const upstream::Target& target = targets->targets[idx];
    req.upstream = target.address;
    // HTTP/1.1 to this target goes on below, written out here rather than as a coroutine of
    // its own (one frame and one resumption less per request): when HTTP/2 is not used, or when
    // "auto" chose HTTP/1.1 (try_h2 then hands over the connection it made, `pre`, and when that
    // attempt's on_start was, `started`).
    std::unique_ptr<upstream::Conn> pre;
    std::optional<Clock::time_point> started;
    if (h2) {
      std::optional<bool> done = co_await fwd.try_h2(idx, target);
      if (!fwd.h1_instead_) {
        if (done)
          co_return *done;
        excluded[idx] = 1; // not reached, or safely retryable: the next target
        continue;
      }
      fwd.h1_instead_ = false;
      pre = std::move(fwd.h1_conn_);
      started = std::exchange(fwd.h1_started_, std::nullopt);
    }
    {
      // A pooled connection when there is one, else a new one (`pre` when try_h2 made it).
      std::string scratch;
      const upstream::Pool::Key key = fwd.hashed_pool_key(target, scratch);
      // A pooled connection the peer closed in the meantime is retried once on a fresh one,
      // which is safe because nothing of the request was consumed yet, or weir holds what was.
      for (int fresh_try = 0; fresh_try < 2; ++fresh_try) {
        std::unique_ptr<upstream::Conn> up_conn = std::move(pre);
        bool reused = false;
        // One reading of the clock for the pool's look at an idle connection's age, the load
        // balancer's latency and a reused connection's first response deadline; another at the
        // end, when the connection goes back to the pool, for the latency's end too.
        const auto tried_at = Clock::now();
        bool sent_at_once = false; // the head (and no body) went out within the first call
        Clock::time_point done_at{};
        if (!up_conn && fresh_try == 0) {
          // (A request that can go again anyway skips the pool's check of a recently used
          // connection: an idempotent one without a body, or whose body weir holds whole.)
          bool resendable = (!req.has_body || fwd.held_whole_) && idempotent(req.msg->method());
          up_conn = worker.pool().take(key, resendable, tried_at);
          reused = up_conn != nullptr;
        }
        // Every on_start has exactly one on_done (a failed connect included), so load balancers
        // that count requests in flight stay balanced.
        auto t0 = tried_at;
        if (started && fresh_try == 0)
          t0 = *started;
        else
          fwd.up_.lb->on_start(idx);
        if (!up_conn) {
          std::string error;
          auto opts = fwd.connect_options();
          opts.h1_only = true;
          up_conn =
              co_await upstream::connect(worker.context().get_executor(), target, opts, error);
          if (!up_conn) {
            fwd.connect_failed(idx, target, error, t0);
            goto next_target;
          }
        }
        // The exchange (inline: no coroutine frame of its own). A connection that can carry
        // another request is back in the pool when it ends.
        Outcome outcome;
        {
          upstream::Conn& up = *up_conn;
          auto& msg = *req.msg;
          // HTTP/1.1 upstream requires a Host; an HTTP/1.0 client may not have sent one.
          if (msg.find(bhttp::field::host) == msg.end())
            msg.set(bhttp::field::host, req.upstream);
          // The buffer for the response; its memory comes from the worker's pool (see
          // upstream_read_size).
          beast::basic_flat_buffer<BufferPool::Allocator<char>> up_buf{
              BufferPool::Allocator<char>(&worker.buffers())};
          if (!req.has_body) {
            // No body: the head goes out in one write, serialized in place into the block the
            // response is then read into.
            size_t size = request_head_size(msg);
            auto room = up_buf.prepare(std::max(size, upstream_read_size(0)));
            write_request_head(static_cast<char*>(room.data()), msg);
            up_buf.commit(size);
            // Offered to the socket at once; only a rest it did not take waits (see net::send_now).
            error_code ec;
            up_buf.consume(up.write_now(up_buf.data(), ec));
            if (ec) {
              outcome = Outcome::unsent;
              goto exchanged;
            }
            sent_at_once = up_buf.size() == 0;
            if (up_buf.size() > 0) {
              up.expires_after(fwd.wait_limit(fwd.pol_.response_timeout));
              auto [e, n] = co_await asio::async_write(up, up_buf.data(), net::use_task_nothrow);
              if (e) {
                outcome = Outcome::unsent;
                goto exchanged;
              }
              up_buf.consume(n);
            }
          } else if (auto sent = co_await fwd.send_with_body(up, msg); sent != Outcome::done) {
            {
              outcome = sent;
              goto exchanged;
            }
          }

          // Read the response head, skipping interim (1xx) responses. The head is parsed where it
          // lies in up_buf, into `res` (the message the filters and the sink see).
          std::optional<ResponseMessage> res_store;
          ResponseHead framing;
          for (int interim = 0;; ++interim) {
            if (interim > kMaxInterimResponses) {
              logger("upstream")
                  ->warn("{} (upstream {}): more than {} interim (1xx) responses", req.upstream,
                         fwd.ucfg_.name, kMaxInterimResponses);
              {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            size_t head_len = 0;
            for (;;) {
              auto data = up_buf.data();
              std::string_view have(static_cast<const char*>(data.data()), data.size());
              head_len = find_response_head_end(have);
              if (head_len > 0 || have.size() > kMaxUpstreamHead)
                break;
              bool first = up_buf.size() == 0 && interim == 0;
              // (A reused connection whose request left in one call waits from tried_at,
              // microseconds ago; any other from now: after its connect, after a body's
              // upload, after a head the socket took in several writes.)
              if (first && reused && sent_at_once)
                up.expires_at(tried_at + fwd.wait_limit(fwd.pol_.response_timeout));
              else
                up.expires_after(fwd.wait_limit(fwd.pol_.response_timeout));
              // (See read_body_more: the first read of a response waits without trying.)
              auto space = up_buf.prepare(upstream_read_size(up_buf.size()));
              error_code ec;
              size_t n = 0;
              if (first || !up.read_now(space, n, ec)) {
                auto [e, got] =
                    co_await up.async_read_some(net::DrainedRead(space), net::use_task_nothrow);
                ec = e;
                n = got;
              }
              up_buf.commit(n);
              if (!ec)
                continue;
              if (ec == beast::error::timeout) {
                logger("upstream")
                    ->warn("{} (upstream {}): {}", req.upstream, fwd.ucfg_.name,
                           fwd.timeout_text());
                {
                  outcome = Outcome::timeout;
                  goto exchanged;
                }
              }
              if ((ec == asio::error::connection_reset || ec == asio::error::eof ||
                   ec == asio::ssl::error::stream_truncated) &&
                  up_buf.size() == 0) {
                outcome = Outcome::stale;
                goto exchanged;
              }
              logger("upstream")
                  ->warn("{} (upstream {}): bad response: {}", req.upstream, fwd.ucfg_.name,
                         ec == asio::error::eof ? "partial message" : ec.message());
              {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            if (head_len == 0 || head_len > kMaxUpstreamHead) {
              logger("upstream")
                  ->warn("{} (upstream {}): response head larger than {} bytes", req.upstream,
                         fwd.ucfg_.name, kMaxUpstreamHead);
              {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            auto data = up_buf.data();
            framing = ResponseHead{};
            const char* bad = parse_response_head(
                std::string_view(static_cast<const char*>(data.data()), head_len),
                res_store.emplace(), framing);
            if (bad) {
              logger("upstream")
                  ->warn("{} (upstream {}): bad response: {}", req.upstream, fwd.ucfg_.name, bad);
              {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            up_buf.consume(head_len);
            if (framing.status >= 100 && framing.status < 200 && framing.status != 101)
              continue;
            break;
          }
          auto& res = *res_store;
          req.status = framing.status;
          if (req.status == 101) {
            if (req.upgrade.empty() || !has_token(res, bhttp::field::connection, "upgrade")) {
              logger("upstream")->warn("{}: unexpected 101 Switching Protocols", req.upstream);
              {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            if (!co_await sink.tunnel(res, up, up_buf.data())) {
              if (!sink.started()) {
                outcome = Outcome::failed;
                goto exchanged;
              }
            }
            {
              outcome = Outcome::aborted;
              goto exchanged;
            } // neither connection can carry HTTP again
          }
          // Without a Connection field, HTTP/1.1 keeps the connection and HTTP/1.0 does not.
          bool upstream_keep = res.version() == 11 && (!framing.connection || res.keep_alive());
          bool no_body = req.head || req.status == 204 || req.status == 304;
          bool delimited = framing.content_length || framing.chunked || no_body;
          if (!delimited)
            upstream_keep = false; // the body ends when the upstream closes
          if (framing.hop_by_hop)
            strip_hop_by_hop(res);
          if (framing.transfer_encoding)
            res.erase(bhttp::field::transfer_encoding);
          ex.response = &res;
          ex.status = req.status;
          run_response_filters(&route, ex);
          ex.response = nullptr;

          if (!sink.head(res, !no_body)) {
            outcome = Outcome::aborted;
            goto exchanged;
          }
          bool complete = no_body; // the upstream's side of the response was read to its end
          if (!no_body && framing.content_length && !framing.chunked &&
              *framing.content_length <= up_buf.size()) {
            // The whole body came with the head (small responses): one write, no relay loop.
            auto n = static_cast<size_t>(*framing.content_length);
            complete = true;
            if (n > 0) {
              auto chunk = asio::buffer(up_buf.data().data(), n);
              std::optional<bool> sent = sink.data_now(chunk); // (no coroutine frame for data())
              if (!sent)
                sent = co_await sink.data(chunk, false);
              if (*sent)
                req.bytes_out += n;
              else
                fwd.client_gone_ = true; // after the whole body: the upstream connection stays
            }
            up_buf.consume(n);
          } else if (!no_body && framing.content_length && !framing.chunked) {
            complete = co_await fwd.relay_counted(up, up_buf, *framing.content_length);
            if (!complete && !fwd.client_gone_) {
              outcome = Outcome::broken;
              goto exchanged;
            }
          } else if (!no_body) {
            complete = co_await fwd.relay_parsed(up, up_buf, framing.chunked);
            if (!complete && !fwd.client_gone_) {
              outcome = Outcome::broken;
              goto exchanged;
            }
          }
          bool reusable = upstream_keep && complete && up_buf.size() == 0;
          // The upstream's side is done: the connection can serve another request while the client
          // takes the end of this response (over HTTP/2, finish may wait for the client's windows).
          // `up` is not touched after this.
          // The upstream's part ends here for the load balancer's latency, whether or not the
          // connection is kept (the client's taking the rest is not the upstream's time).
          done_at = Clock::now();
          if (reusable)
            fwd.keep_connection(up_conn, key, target, done_at);
          if (!fwd.client_gone_ && !sink.finish_now() && !co_await sink.finish(nullptr))
            fwd.client_gone_ = true;
          if (fwd.client_gone_ && !complete) {
            outcome = Outcome::aborted;
            goto exchanged;
          }
          outcome = reusable ? Outcome::done_reusable : Outcome::done;
        }
      exchanged:
        fwd.lb_done(idx, req.status, elapsed_ns(t0, done_at));
        if (outcome != Outcome::client_failed)
          fwd.observe(target, req.status, false, outcome == Outcome::timeout, t0, done_at);
        if (auto done = fwd.settled(outcome))
          co_return *done; // (without fwd.conclude()'s coroutine frame)
        bool retry = false;
        bool other = false;
        auto result = co_await fwd.conclude(outcome, reused, retry, other);
        if (other)
          goto next_target;
        if (!retry)
          co_return result.value_or(false);
      }
      co_await fwd.fail(fwd.failure_status_);
      co_return false;
    }
  next_target:
    excluded[idx] = 1; // not reached, or safely retryable: the next target
  }
  co_await fwd.fail(fwd.failure_status_);
  co_return false;
}

} // namespace weir::core::http
