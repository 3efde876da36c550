#include "core/runtime/admin.hpp"

#include "core/runtime/logging.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>

namespace weir::core {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto kIdle = std::chrono::seconds(10);
// Connections served at once. The endpoint is for operators and monitoring; beyond this (a
// misbehaving scraper, a flood) a new connection is closed at once instead of each holding a
// coroutine and a buffer on the control thread, which also runs discovery and health checks.
constexpr size_t kMaxConnections = 64;
constexpr auto kRefusalLogEvery = std::chrono::seconds(10);
} // namespace

struct AdminServer::State {
  explicit State(asio::io_context& c) : acceptor(c) {}
  tcp::acceptor acceptor;
  std::map<std::string, std::function<boost::json::object()>> routes;
  bool closed = false;
  size_t open = 0;    // connections being served
  size_t refused = 0; // since the last log line about it
  std::chrono::steady_clock::time_point refusal_logged{};
};

namespace {

bhttp::response<bhttp::string_body> answer(AdminServer::State& st,
                                           const bhttp::request<bhttp::string_body>& req) {
  bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
  res.set(bhttp::field::server, "weir");
  res.set(bhttp::field::cache_control, "no-store");
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  auto text = [&](bhttp::status status, std::string body) {
    res.result(status);
    res.set(bhttp::field::content_type, "text/plain");
    res.body() = std::move(body);
  };
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
    text(bhttp::status::method_not_allowed, "405 Method Not Allowed\n");
    res.set(bhttp::field::allow, "GET, HEAD");
  } else if (target == "/healthz") {
    text(bhttp::status::ok, "ok\n");
  } else if (target == "/") {
    boost::json::array paths;
    paths.emplace_back("/healthz");
    for (const auto& [path, fn] : st.routes)
      paths.emplace_back(path);
    boost::json::object o;
    o["endpoints"] = std::move(paths);
    res.set(bhttp::field::content_type, "application/json");
    res.body() = boost::json::serialize(o) + "\n";
  } else if (auto it = st.routes.find(std::string(target)); it != st.routes.end()) {
    res.set(bhttp::field::content_type, "application/json");
    res.body() = boost::json::serialize(it->second()) + "\n";
  } else {
    text(bhttp::status::not_found, "404 Not Found\n");
  }
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  if (req.method() == bhttp::verb::head)
    res.body().clear(); // Content-Length stays that of the GET answer
  return res;
}

asio::awaitable<void> serve(std::shared_ptr<AdminServer::State> st, tcp::socket socket) {
  struct Counted {
    AdminServer::State& s;
    explicit Counted(AdminServer::State& state) : s(state) { ++s.open; }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;
    ~Counted() { --s.open; }
  } counted(*st);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buf;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(4096);
    parser.header_limit(8192);
    stream.expires_after(kIdle);
    auto [ec, n] = co_await bhttp::async_read(stream, buf, parser, nothrow);
    if (ec || st->closed)
      break;
    auto res = answer(*st, parser.get());
    bool keep = res.keep_alive();
    stream.expires_after(kIdle);
    bhttp::serializer<false, bhttp::string_body> sr{res};
    if (parser.get().method() == bhttp::verb::head) {
      auto [wec, wn] = co_await bhttp::async_write_header(stream, sr, nothrow);
      if (wec)
        break;
    } else {
      auto [wec, wn] = co_await bhttp::async_write(stream, sr, nothrow);
      if (wec)
        break;
    }
    if (!keep)
      break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

asio::awaitable<void> accept_loop(std::shared_ptr<AdminServer::State> st) {
  for (;;) {
    auto [ec, socket] = co_await st->acceptor.async_accept(nothrow);
    if (st->closed)
      co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted)
        co_return;
      logger("admin")->warn("accept failed: {}", ec.message());
      continue;
    }
    if (st->open >= kMaxConnections) {
      boost::system::error_code ignored;
      socket.close(ignored);
      ++st->refused;
      auto now = std::chrono::steady_clock::now();
      if (now - st->refusal_logged >= kRefusalLogEvery) {
        logger("admin")->warn("{} connection(s) closed at once: {} are being served already "
                              "(the limit)",
                              st->refused, kMaxConnections);
        st->refused = 0;
        st->refusal_logged = now;
      }
      continue;
    }
    asio::co_spawn(st->acceptor.get_executor(), serve(st, std::move(socket)), asio::detached);
  }
}

} // namespace

AdminServer::AdminServer(asio::io_context& control) : state_(std::make_shared<State>(control)) {}

AdminServer::~AdminServer() {
  state_->closed = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
}

void AdminServer::route(std::string path, std::function<boost::json::object()> fn) {
  state_->routes[std::move(path)] = std::move(fn);
}

bool AdminServer::listen(const tcp::endpoint& ep, std::string& error) {
  boost::system::error_code ec;
  auto& a = state_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec)
    a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    a.bind(ep, ec);
  if (!ec)
    a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error = ec.message();
    return false;
  }
  asio::co_spawn(a.get_executor(), accept_loop(state_), asio::detached);
  return true;
}

tcp::endpoint AdminServer::endpoint() const {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec);
}

} // namespace weir::core
