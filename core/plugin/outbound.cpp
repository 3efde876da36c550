#include "core/plugin/outbound.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames in this file (the
// frame's class-specific operator new and delete do match).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "core/net/dns.hpp"
#include "core/plugin/host_api.hpp"
#include "core/upstream/conn.hpp"
#include "core/upstream/targets.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <vector>

namespace weir::core::plugin {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

struct OutboundService::Op {
  OutboundService* service = nullptr; // valid while !cancelled
  weir_request_id_t id = 0;
  bool cancelled = false;
  upstream::Conn* conn = nullptr; // while the coroutine holds one

  // The operation ended: forget it (its callback is about to run).
  void finish() {
    if (!cancelled && service != nullptr)
      service->ops_.erase(id);
  }
};

namespace {

constexpr uint64_t kDefaultProbeTimeoutMs = 5000;
constexpr uint64_t kDefaultFetchTimeoutMs = 10000;
constexpr uint64_t kDefaultMaxBody = 65536;
constexpr size_t kMaxResponseHead = 65536;

std::string_view sv(weir_str_t s) {
  return s.data != nullptr ? std::string_view(s.data, s.len) : std::string_view();
}

template <class T> bool has_field(const T* p, size_t end_offset) {
  return p != nullptr && p->struct_size >= end_offset;
}

std::chrono::milliseconds left(Clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return d.count() > 0 ? d : std::chrono::milliseconds(1);
}

// A name being looked up (on the control thread, for every plugin object). A check of a name
// whose lookup started less than kJoinLookup ago (or the check's own timeout, when longer) waits
// for that answer: a DNS server that does not answer sees about one lookup of a name per
// kJoinLookup, not one per check and checker. An older lookup is not joined (its retries come
// seconds apart: a server that came back would not be heard from soon); a new one starts.
constexpr std::chrono::seconds kJoinLookup{3};

struct HostLookup {
  Clock::time_point started;
  bool done = false;
  net::DnsAnswer answer;
  std::vector<asio::steady_timer*> waiters; // woken (cancelled) by the answer
};

} // namespace

struct OutboundService::Lookups {
  std::unordered_map<std::string, std::shared_ptr<HostLookup>> by_name;
};

namespace {

// Fill `target` from an address as plugins write it. A host name is left for resolve() (on the
// operation's coroutine, not here on the control thread): `port` is then non-zero.
bool make_target(std::string_view address, upstream::Target& target, uint16_t& port,
                 std::string& error) {
  target.address = std::string(address);
  target.id = target.address;
  port = 0;
  if (address.starts_with("unix:")) {
    target.unix_path = std::string(address.substr(5));
    if (target.unix_path.empty()) {
      error = "empty Unix socket path";
      return false;
    }
    return true;
  }
  std::string host;
  uint16_t p = 0;
  switch (upstream::parse_address(address, target.endpoint, host, p, error)) {
  case upstream::AddressKind::invalid:
    return false;
  case upstream::AddressKind::literal:
    return true;
  case upstream::AddressKind::name:
    break;
  }
  target.host = std::move(host);
  port = p;
  return true;
}

// A client context with the system's roots (or `ca_file`), offering http/1.1.
std::shared_ptr<asio::ssl::context> plain_client_tls(bool verify, const std::string& ca_file,
                                                     std::string& error) {
  static std::shared_ptr<asio::ssl::context> system_verify;
  static std::shared_ptr<asio::ssl::context> system_no_verify;
  if (ca_file.empty()) {
    auto& slot = verify ? system_verify : system_no_verify;
    if (!slot)
      slot = upstream::make_client_tls(verify, "", "", "", "1.2", "h1", error);
    return slot;
  }
  return upstream::make_client_tls(verify, ca_file, "", "", "1.2", "h1", error);
}

std::string status_error(const std::string& error) {
  return error.empty() ? std::string("failed") : error;
}

// A host name to look up before connecting (make_target left one: `port` non-zero), with the
// process's resolver, within the operation's timeout (`budget`, for the message).
struct NameLookup {
  net::DnsResolver* dns = nullptr;
  std::shared_ptr<OutboundService::Lookups> lookups;
  uint16_t port = 0;
  std::chrono::milliseconds budget{0};
};

net::Task<bool> resolve(const NameLookup& how, upstream::Target& target, Clock::time_point deadline,
                        std::string& error) {
  if (how.port == 0)
    co_return true;
  const std::string& host = target.host;
  if (how.dns == nullptr || !how.lookups) {
    error = "cannot resolve \"" + host + "\": no resolver in this process";
    co_return false;
  }
  auto& by_name = how.lookups->by_name;
  std::shared_ptr<HostLookup> l = by_name[host];
  auto now = Clock::now();
  if (!l || l->done || now - l->started >= std::max<Clock::duration>(how.budget, kJoinLookup)) {
    l = std::make_shared<HostLookup>();
    l->started = now;
    by_name[host] = l;
    how.dns->lookup_host(host, [l, lookups = how.lookups, host](net::DnsAnswer a) {
      l->done = true;
      l->answer = std::move(a);
      for (auto* t : l->waiters)
        t->cancel();
      l->waiters.clear();
      auto it = lookups->by_name.find(host);
      if (it != lookups->by_name.end() && it->second == l)
        lookups->by_name.erase(it);
    });
  }
  if (!l->done) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex, left(deadline));
    l->waiters.push_back(&timer);
    struct Unlist { // also when the frame goes unresumed (the io_context's end)
      HostLookup& l;
      asio::steady_timer* t;
      ~Unlist() { std::erase(l.waiters, t); }
    } unlist{*l, &timer};
    co_await timer.async_wait(net::use_task_nothrow);
  }
  if (!l->done) {
    error = "cannot resolve \"" + host + "\": no answer within " +
            std::to_string(how.budget.count()) + "ms";
    co_return false;
  }
  auto ip = net::first_address(l->answer, host, error);
  if (!ip)
    co_return false;
  target.endpoint = asio::ip::tcp::endpoint(*ip, how.port);
  co_return true;
}

net::Task<void> run_probe(std::shared_ptr<OutboundService::Op> op, upstream::Target target,
                          NameLookup lookup, upstream::ConnectOptions opts, weir_probe_cb cb,
                          void* user) {
  auto t0 = Clock::now();
  auto deadline = t0 + opts.connect_timeout;
  std::string error;
  auto ex = co_await asio::this_coro::executor;
  bool resolved = co_await resolve(lookup, target, deadline, error);
  if (op->cancelled)
    co_return;
  std::unique_ptr<upstream::Conn> conn;
  if (resolved) {
    opts.connect_timeout = left(deadline);
    conn = co_await upstream::connect(ex, target, opts, error);
    if (op->cancelled)
      co_return;
  }
  if (conn)
    conn->close();
  op->finish();
  weir_probe_result_t r{};
  r.struct_size = sizeof r;
  r.status = conn ? WEIR_OK : WEIR_ERROR;
  std::string text = conn ? std::string() : status_error(error);
  r.error = weir_str_t{text.data(), text.size()};
  r.duration_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  cb(user, &r);
}

struct FetchPlan {
  upstream::Target target;
  NameLookup lookup; // target.host to be resolved first (make_target)
  upstream::ConnectOptions opts;
  bhttp::request<bhttp::string_body> req;
  Clock::time_point deadline;
  uint64_t max_body = kDefaultMaxBody;
  std::shared_ptr<asio::ssl::context> tls_keep; // a context made for this request only
};

net::Task<void> run_fetch(std::shared_ptr<OutboundService::Op> op, FetchPlan plan, weir_fetch_cb cb,
                          void* user) {
  auto t0 = Clock::now();
  std::string error;
  unsigned status = 0;
  std::vector<std::string> header_text;
  std::string body;
  bool truncated = false;
  bool ok = false;
  auto ex = co_await asio::this_coro::executor;
  bool resolved = co_await resolve(plan.lookup, plan.target, plan.deadline, error);
  if (op->cancelled)
    co_return;
  std::unique_ptr<upstream::Conn> conn;
  if (resolved) {
    plan.opts.connect_timeout = left(plan.deadline);
    conn = co_await upstream::connect(ex, plan.target, plan.opts, error);
    if (op->cancelled)
      co_return;
  }
  if (conn) {
    op->conn = conn.get();
    conn->expires_after(left(plan.deadline));
    auto [wec, wn] = co_await bhttp::async_write(*conn, plan.req, net::use_task_nothrow);
    if (op->cancelled)
      co_return;
    if (wec) {
      error = wec == boost::beast::error::timeout ? "timed out" : "write failed: " + wec.message();
    } else {
      boost::beast::flat_buffer buf;
      std::optional<bhttp::response_parser<bhttp::buffer_body>> parser;
      std::vector<char> chunk(16384);
      for (int interim = 0; interim < 16; ++interim) {
        parser.emplace();
        parser->body_limit(boost::none);
        parser->header_limit(kMaxResponseHead);
        if (plan.req.method() == bhttp::verb::head)
          parser->skip(true);
        conn->expires_after(left(plan.deadline));
        auto [hec, hn] =
            co_await bhttp::async_read_header(*conn, buf, *parser, net::use_task_nothrow);
        if (op->cancelled)
          co_return;
        if (hec) {
          error =
              hec == boost::beast::error::timeout ? "timed out" : "bad response: " + hec.message();
          parser.reset();
          break;
        }
        unsigned st = parser->get().result_int();
        if (st >= 100 && st < 200)
          continue;
        break;
      }
      if (parser && parser->is_header_done() && parser->get().result_int() >= 200) {
        auto& res = parser->get();
        status = res.result_int();
        for (const auto& f : res) {
          header_text.emplace_back(f.name_string());
          header_text.emplace_back(f.value());
        }
        ok = true;
        while (!parser->is_done()) {
          res.body().data = chunk.data();
          res.body().size = chunk.size();
          conn->expires_after(left(plan.deadline));
          auto [bec, bn] =
              co_await bhttp::async_read_some(*conn, buf, *parser, net::use_task_nothrow);
          if (op->cancelled)
            co_return;
          if (bec == bhttp::error::need_buffer)
            bec = {};
          size_t got = chunk.size() - res.body().size;
          size_t room = plan.max_body > body.size() ? plan.max_body - body.size() : 0;
          body.append(chunk.data(), std::min<size_t>(got, room));
          if (got > room)
            truncated = true;
          if (bec) {
            bool eof = bec == bhttp::error::end_of_stream || bec == asio::error::eof ||
                       bec == asio::ssl::error::stream_truncated;
            if (eof && !res.has_content_length() && !res.chunked())
              break; // close-delimited body
            error = bec == boost::beast::error::timeout ? "timed out"
                                                        : "response body failed: " + bec.message();
            ok = false;
            break;
          }
        }
      } else if (error.empty()) {
        error = "more than 16 interim (1xx) responses";
      }
    }
    op->conn = nullptr;
    conn->close();
  }
  op->finish();
  std::vector<weir_str_t> headers;
  for (const auto& h : header_text)
    headers.push_back(weir_str_t{h.data(), h.size()});
  weir_fetch_result_t r{};
  r.struct_size = sizeof r;
  r.status = ok ? WEIR_OK : WEIR_ERROR;
  if (!ok)
    error = status_error(error);
  r.error = weir_str_t{error.data(), ok ? 0 : error.size()};
  r.http_status = status;
  r.headers = headers.data();
  r.header_count = headers.size() / 2;
  r.body = weir_str_t{body.data(), body.size()};
  r.truncated = truncated ? 1 : 0;
  r.duration_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  cb(user, &r);
}

bool valid_token(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok)
      return false;
  }
  return true;
}

bool valid_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

} // namespace

namespace {
// One map of lookups per thread (the control thread): every plugin object's checks share it.
std::shared_ptr<OutboundService::Lookups> thread_lookups() {
  thread_local auto lookups = std::make_shared<OutboundService::Lookups>();
  return lookups;
}
} // namespace

OutboundService::OutboundService(asio::io_context& ioc) : ioc_(ioc), lookups_(thread_lookups()) {}

OutboundService::~OutboundService() {
  for (auto& [id, op] : ops_) {
    op->cancelled = true;
    op->service = nullptr;
    if (op->conn != nullptr)
      op->conn->close();
  }
}

void OutboundService::cancel(weir_request_id_t id) {
  auto it = ops_.find(id);
  if (it == ops_.end())
    return;
  it->second->cancelled = true;
  it->second->service = nullptr;
  if (it->second->conn != nullptr)
    it->second->conn->close();
  ops_.erase(it);
}

weir_request_id_t OutboundService::dns(HostCtx& ctx, std::string_view name, weir_dns_type_t type,
                                       weir_dns_cb cb, void* user) {
  if (cb == nullptr) {
    ctx.log->error("dns_query: no callback");
    return 0;
  }
  if (ctx.dns == nullptr) {
    ctx.log->error("dns_query: no resolver in this process");
    return 0;
  }
  if (type != WEIR_DNS_A && type != WEIR_DNS_AAAA && type != WEIR_DNS_SRV && type != WEIR_DNS_PTR &&
      type != WEIR_DNS_TXT) {
    ctx.log->error("dns_query: unsupported record type {}", type);
    return 0;
  }
  std::string n(name);
  if (n.size() > 1 && n.back() == '.' && n[n.size() - 2] != '\\')
    n.pop_back();
  // Presentation format: escapes are c-ares' to parse; only control bytes are refused here.
  bool valid = !n.empty() && n.size() <= 1024 && std::none_of(n.begin(), n.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (!valid) {
    ctx.log->error("dns_query: invalid name \"{}\"", name);
    return 0;
  }
  auto op = std::make_shared<Op>();
  op->service = this;
  op->id = next_++;
  ops_[op->id] = op;
  ctx.dns->query(n, static_cast<uint16_t>(type), [op, cb, user](net::DnsAnswer a) {
    if (op->cancelled)
      return;
    op->finish();
    std::vector<std::vector<weir_str_t>> txts(a.records.size());
    std::vector<weir_dns_record_t> records(a.records.size());
    for (size_t i = 0; i < a.records.size(); ++i) {
      const auto& r = a.records[i];
      auto& out = records[i];
      out.struct_size = sizeof(weir_dns_record_t);
      out.type = r.type;
      out.ttl = r.ttl;
      out.name = weir_str_t{r.name.data(), r.name.size()};
      out.address = weir_str_t{r.address.data(), r.address.size()};
      out.target = weir_str_t{r.target.data(), r.target.size()};
      out.priority = r.priority;
      out.weight = r.weight;
      out.port = r.port;
      for (const auto& t : r.txt)
        txts[i].push_back(weir_str_t{t.data(), t.size()});
      out.txt = txts[i].empty() ? nullptr : txts[i].data();
      out.txt_count = txts[i].size();
    }
    weir_dns_result_t res{};
    res.struct_size = sizeof res;
    res.status = a.status == net::DnsAnswer::Status::ok          ? WEIR_OK
                 : a.status == net::DnsAnswer::Status::not_found ? WEIR_ERROR_NOT_FOUND
                                                                 : WEIR_ERROR;
    res.error = weir_str_t{a.error.data(), a.error.size()};
    res.records = records.empty() ? nullptr : records.data();
    res.count = records.size();
    res.negative_ttl = a.negative_ttl;
    cb(user, &res);
  });
  return op->id;
}

weir_request_id_t OutboundService::probe(HostCtx& ctx, const weir_probe_t& probe, weir_probe_cb cb,
                                         void* user) {
  if (!has_field(&probe, offsetof(weir_probe_t, timeout_ms) + sizeof(uint64_t)) || cb == nullptr) {
    ctx.log->error("probe_start: weir_probe_t too small or no callback");
    return 0;
  }
  upstream::Target target;
  uint16_t port = 0;
  std::string error;
  if (sv(probe.address).empty() || !make_target(sv(probe.address), target, port, error)) {
    ctx.log->error("probe_start: cannot use address \"{}\": {}", sv(probe.address),
                   error.empty() ? "empty" : error);
    return 0;
  }
  uint64_t timeout = probe.timeout_ms == 0 ? kDefaultProbeTimeoutMs : probe.timeout_ms;
  upstream::ConnectOptions opts;
  opts.connect_timeout = std::chrono::milliseconds(timeout);
  opts.h1_only = true;
  if (probe.kind == WEIR_PROBE_TLS) {
    if (ctx.group_tls && ctx.group_tls->context) {
      opts.tls = ctx.group_tls->context.get();
      opts.verify = ctx.group_tls->verify;
      opts.server_name = ctx.group_tls->server_name;
    } else {
      auto tls = plain_client_tls(true, "", error);
      if (!tls) {
        ctx.log->error("probe_start: no TLS context: {}", error);
        return 0;
      }
      opts.tls = tls.get();
    }
  } else if (probe.kind != WEIR_PROBE_TCP) {
    ctx.log->error("probe_start: unknown probe kind {}", probe.kind);
    return 0;
  }
  auto op = std::make_shared<Op>();
  op->service = this;
  op->id = next_++;
  ops_[op->id] = op;
  NameLookup lookup{ctx.host_dns, lookups_, port, std::chrono::milliseconds(timeout)};
  asio::co_spawn(ioc_,
                 run_probe(op, std::move(target), std::move(lookup), std::move(opts), cb, user),
                 asio::detached);
  return op->id;
}

weir_request_id_t OutboundService::fetch(HostCtx& ctx, const weir_fetch_t& f, weir_fetch_cb cb,
                                         void* user) {
  if (!has_field(&f, offsetof(weir_fetch_t, ca_file) + sizeof(weir_str_t)) || cb == nullptr) {
    ctx.log->error("fetch_start: weir_fetch_t too small or no callback");
    return 0;
  }
  auto fail = [&](std::string_view why) -> weir_request_id_t {
    ctx.log->error("fetch_start: {}", why);
    return 0;
  };
  auto url = boost::urls::parse_absolute_uri(sv(f.url));
  if (!url)
    return fail(fmt::format("not an absolute URL: \"{}\"", sv(f.url)));
  bool https = url->scheme() == "https";
  if (!https && url->scheme() != "http")
    return fail(fmt::format("only http and https URLs are supported: \"{}\"", sv(f.url)));
  if (url->encoded_host().empty())
    return fail(fmt::format("URL without a host: \"{}\"", sv(f.url)));
  std::string method = sv(f.method).empty() ? std::string("GET") : std::string(sv(f.method));
  if (!valid_token(method))
    return fail(fmt::format("invalid method \"{}\"", method));
  if ((f.flags & WEIR_FETCH_UPSTREAM_TLS) != 0 && !ctx.in_group)
    return fail("WEIR_FETCH_UPSTREAM_TLS from an object that belongs to no upstream group");

  std::string host(url->encoded_host());
  std::string port(url->port());
  if (port.empty())
    port = https ? "443" : "80";
  std::string address(sv(f.connect_to));
  if (address.empty())
    address = host + ":" + port; // an IPv6 host keeps its brackets
  FetchPlan plan;
  std::string error;
  if (!make_target(address, plan.target, plan.lookup.port, error))
    return fail(fmt::format("cannot use address \"{}\": {}", address, error));
  uint64_t timeout = f.timeout_ms == 0 ? kDefaultFetchTimeoutMs : f.timeout_ms;
  plan.deadline = Clock::now() + std::chrono::milliseconds(timeout);
  plan.lookup.dns = ctx.host_dns;
  plan.lookup.lookups = lookups_;
  plan.lookup.budget = std::chrono::milliseconds(timeout);
  plan.max_body = f.max_body == 0 ? kDefaultMaxBody : f.max_body;
  plan.opts.h1_only = true;
  if (https) {
    bool verify = (f.flags & WEIR_FETCH_NO_VERIFY) == 0;
    if ((f.flags & WEIR_FETCH_UPSTREAM_TLS) != 0 && ctx.group_tls && ctx.group_tls->context) {
      plan.opts.tls = ctx.group_tls->context.get();
      plan.opts.verify = ctx.group_tls->verify && verify;
      plan.opts.server_name = ctx.group_tls->server_name;
    } else {
      auto tls = plain_client_tls(verify, std::string(sv(f.ca_file)), error);
      if (!tls)
        return fail(fmt::format("TLS settings: {}", error));
      plan.opts.tls = tls.get();
      plan.opts.verify = verify;
      // Keep a per-request context (a CA file) alive with the operation.
      if (!sv(f.ca_file).empty())
        plan.tls_keep = std::move(tls);
    }
    if (plan.opts.server_name.empty() && url->host_type() == boost::urls::host_type::name)
      plan.opts.server_name = host;
  }
  std::string target(url->encoded_path());
  if (target.empty())
    target = "/";
  if (url->has_query())
    target += "?" + std::string(url->encoded_query());
  plan.req.method_string(method);
  plan.req.target(target);
  plan.req.version(11);
  plan.req.set(bhttp::field::host, url->encoded_host_and_port());
  plan.req.set(bhttp::field::user_agent, "weir");
  plan.req.set(bhttp::field::connection, "close");
  for (size_t i = 0; i < f.header_count && f.headers != nullptr; ++i) {
    std::string_view name = sv(f.headers[2 * i]);
    std::string_view value = sv(f.headers[2 * i + 1]);
    if (!valid_token(name) || !valid_value(value))
      return fail(fmt::format("invalid header \"{}\"", name));
    if (boost::beast::iequals(name, "host") || boost::beast::iequals(name, "content-length") ||
        boost::beast::iequals(name, "transfer-encoding") ||
        boost::beast::iequals(name, "connection"))
      continue; // the host's
    if (boost::beast::iequals(name, "user-agent"))
      plan.req.set(bhttp::field::user_agent, value); // replaces weir's
    else
      plan.req.insert(name, value);
  }
  if (!sv(f.body).empty()) {
    plan.req.body() = std::string(sv(f.body));
    plan.req.prepare_payload();
  }
  auto op = std::make_shared<Op>();
  op->service = this;
  op->id = next_++;
  ops_[op->id] = op;
  asio::co_spawn(ioc_, run_fetch(op, std::move(plan), cb, user), asio::detached);
  return op->id;
}

} // namespace weir::core::plugin
