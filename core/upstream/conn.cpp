#include "core/upstream/conn.hpp"

#include "core/net/drained_read.hpp"
#include "core/upstream/targets.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <mutex>
#include <vector>

namespace weir::core::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

namespace {

constexpr unsigned char kAlpnH1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// A buffer pool for a thread that has none of its own (see ConnectOptions::pool). The pools live
// until the process exits, after every thread and every connection (a block a connection holds
// goes back to its pool when the connection goes).
BufferPool& thread_pool() {
  static std::mutex mutex;
  static std::vector<std::unique_ptr<BufferPool>> pools;
  thread_local BufferPool* mine = nullptr;
  if (mine == nullptr) {
    std::lock_guard lock(mutex);
    pools.push_back(std::make_unique<BufferPool>());
    mine = pools.back().get();
  }
  return *mine;
}

template <class F>
decltype(auto) on_lowest(std::variant<TcpStream, TlsStream, UnixStream>& v, F&& f) {
  return std::visit(
      [&](auto& s) -> decltype(auto) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, TlsStream>)
          return f(beast::get_lowest_layer(s));
        else
          return f(s);
      },
      v);
}

// TCP's simultaneous open lets a connection to a port of this host where nothing listens reach
// itself: the kernel picked that very port as the source (a port in the ephemeral range, free).
// The connect succeeds and every byte sent comes back as the answer (a request read as a
// malformed response; a TCP health check passing). Such a connection was refused.
// (A target of 0.0.0.0 or :: reaches this host's loopback address: the peer's address is asked
// for then.)
bool connected_to_itself(const TcpStream::socket_type& s, const asio::ip::tcp::endpoint& target) {
  error_code ec;
  auto local = s.local_endpoint(ec);
  if (ec)
    return false;
  if (!target.address().is_unspecified())
    return local == target;
  auto peer = s.remote_endpoint(ec);
  return !ec && local == peer;
}

std::string ssl_error_text(SSL* ssl, const error_code& ec) {
  if (ssl != nullptr) {
    long vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK)
      return std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
  }
  return ec.message();
}

} // namespace

void Conn::expires_after(std::chrono::steady_clock::duration d) {
  on_lowest(s_, [&](auto& low) { low.expires_after(d); });
}

void Conn::expires_at(std::chrono::steady_clock::time_point t) {
  on_lowest(s_, [&](auto& low) { low.expires_at(t); });
}

void Conn::write_expires_after(std::chrono::steady_clock::duration d) {
  on_lowest(s_, [&](auto& low) { low.write_expires_after(d); });
}

void Conn::write_expires_never() {
  on_lowest(s_, [](auto& low) { low.write_expires_never(); });
}

bool Conn::read_now(boost::asio::mutable_buffer b, std::size_t& n, boost::system::error_code& ec) {
  if (std::holds_alternative<TlsStream>(s_))
    return false;
  return net::recv_now(native_handle(), b, n, ec);
}

std::size_t Conn::write_now(boost::asio::const_buffer b, boost::system::error_code& ec) {
  if (std::holds_alternative<TlsStream>(s_))
    return 0;
  return net::send_now(native_handle(), &b, 1, ec);
}

void Conn::expires_never() {
  on_lowest(s_, [](auto& low) { low.expires_never(); });
}

void Conn::close() {
  on_lowest(s_, [](auto& low) { low.close(); }); // the socket, and the timer's wait
}

bool Conn::is_open() {
  return on_lowest(s_, [](auto& low) { return low.socket().is_open(); });
}

int Conn::native_handle() {
  return on_lowest(s_, [](auto& low) { return static_cast<int>(low.socket().native_handle()); });
}

std::string Conn::alpn() const {
  if (const auto* t = std::get_if<TlsStream>(&s_)) {
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(const_cast<TlsStream*>(t)->native_handle(), &p, &len);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), len);
  }
  return {};
}

net::Task<std::unique_ptr<Conn>> connect(net::Executor ex, const Target& target,
                                         const ConnectOptions& opts, std::string& error) {
  // The PROXY header goes first, on the raw connection (before any TLS).
  auto send_proxy = [&](auto& raw) -> net::Task<bool> {
    if (opts.proxy_protocol == 0 || opts.proxy_header.empty())
      co_return true;
    auto [ec, n] =
        co_await asio::async_write(raw, asio::buffer(opts.proxy_header), net::use_task_nothrow);
    if (ec)
      error = "sending the PROXY header: " + ec.message();
    co_return !ec;
  };
  std::unique_ptr<Conn> conn;
  if (!target.unix_path.empty()) {
    if (opts.tls != nullptr) {
      error = "TLS over a Unix socket is not supported";
      co_return nullptr;
    }
    UnixStream s(ex);
    s.expires_after(opts.connect_timeout);
    auto [ec] = co_await s.async_connect(asio::local::stream_protocol::endpoint(target.unix_path),
                                         net::use_task_nothrow);
    if (ec) {
      error = ec == beast::error::timeout ? "timed out" : ec.message();
      co_return nullptr;
    }
    if (!co_await send_proxy(s))
      co_return nullptr;
    conn = std::make_unique<Conn>(std::in_place_type<UnixStream>, std::move(s));
  } else {
    TcpStream tcp(ex);
    tcp.expires_after(opts.connect_timeout);
    auto [ec] = co_await tcp.async_connect(target.endpoint, net::use_task_nothrow);
    if (ec) {
      error = ec == beast::error::timeout ? "timed out" : ec.message();
      co_return nullptr;
    }
    if (connected_to_itself(tcp.socket(), target.endpoint)) {
      // Closed with a reset: a normal close would keep the port in TIME_WAIT, and the next
      // connect there would fail with "Cannot assign requested address" instead.
      error_code ignored;
      tcp.socket().set_option(asio::socket_base::linger(true, 0), ignored);
      error = asio::error::make_error_code(asio::error::connection_refused).message() +
              " (the connection reached itself: nothing listens there)";
      co_return nullptr;
    }
    error_code ignored;
    tcp.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
    if (!co_await send_proxy(tcp))
      co_return nullptr;
    if (opts.tls != nullptr)
      conn = std::make_unique<Conn>(std::in_place_type<TlsStream>, std::move(tcp), *opts.tls,
                                    opts.pool != nullptr ? *opts.pool : thread_pool());
    else
      conn = std::make_unique<Conn>(std::in_place_type<TcpStream>, std::move(tcp));
  }
  if (auto* tls = std::get_if<TlsStream>(&conn->variant())) {
    SSL* ssl = tls->native_handle();
    if (opts.h1_only) {
      SSL_set_alpn_protos(ssl, kAlpnH1, sizeof kAlpnH1);
    }
    // SNI and the name to verify: the configured server name, else the published host name.
    // An IP literal gets no SNI (RFC 6066) and is checked against the certificate's IP SANs.
    std::string name = opts.server_name.empty() ? target.host : opts.server_name;
    if (!name.empty()) {
      // SSL_set_tlsext_host_name without its C cast.
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(name.c_str()));
      if (opts.verify)
        SSL_set1_host(ssl, name.c_str());
    } else if (opts.verify) {
      auto ip = target.endpoint.address().to_string();
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip.c_str());
    }
    beast::get_lowest_layer(*tls).expires_after(opts.connect_timeout);
    auto [ec] =
        co_await tls->async_handshake(asio::ssl::stream_base::client, net::use_task_nothrow);
    if (ec) {
      error =
          ec == beast::error::timeout ? "timed out" : "TLS handshake: " + ssl_error_text(ssl, ec);
      co_return nullptr;
    }
  }
  co_return conn;
}

std::shared_ptr<asio::ssl::context> make_client_tls(bool verify, const std::string& ca_file,
                                                    const std::string& cert, const std::string& key,
                                                    const std::string& min_version,
                                                    const std::string& protocol,
                                                    std::string& error) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // No SSL_MODE_RELEASE_BUFFERS: a quiet connection gives OpenSSL's record buffers back, a busy
  // one keeps them (net::TlsQuietList).
  auto fail = [&](const std::string& what) {
    unsigned long e = ERR_get_error();
    char buf[256] = {};
    if (e != 0)
      ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    error = what + (e != 0 ? std::string(": ") + buf : std::string());
    return nullptr;
  };
  if (verify) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    if (!ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) != 1)
        return fail("cannot load CA file " + ca_file);
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
      return fail("cannot load the system's trusted roots");
    }
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  }
  if (!cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(c, cert.c_str()) != 1)
      return fail("cannot load client certificate " + cert);
    if (SSL_CTX_use_PrivateKey_file(c, key.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail("cannot load client key " + key);
    if (SSL_CTX_check_private_key(c) != 1)
      return fail("client key " + key + " does not match certificate " + cert);
  }
  // ALPN: what we can speak to this group.
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  static constexpr unsigned char kBoth[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (protocol == "h2")
    SSL_CTX_set_alpn_protos(c, kH2, sizeof kH2);
  else if (protocol == "auto")
    SSL_CTX_set_alpn_protos(c, kBoth, sizeof kBoth);
  else
    SSL_CTX_set_alpn_protos(c, kAlpnH1, sizeof kAlpnH1);
  return ctx;
}

} // namespace weir::core::upstream
