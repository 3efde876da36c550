// One connection to an upstream target: plain TCP, TLS over TCP, or a Unix domain socket. It is an
// AsyncReadStream/AsyncWriteStream, so Beast's HTTP functions work on it directly.
#pragma once

#include "core/net/timed_stream.hpp"
#include "core/net/tls_stream.hpp"
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <variant>

namespace boost::asio::ssl {
class context;
}

namespace weir::core::upstream {

struct Target;

using TcpStream = net::TimedStream<boost::asio::ip::tcp>;
using UnixStream = net::TimedStream<boost::asio::local::stream_protocol>;
using TlsStream = net::TlsStream<TcpStream>;

class Conn {
public:
  using executor_type = net::Executor;

  template <class... Args> explicit Conn(Args&&... args) : s_(std::forward<Args>(args)...) {}

  executor_type get_executor() {
    return std::visit([](auto& s) -> executor_type { return s.get_executor(); }, s_);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          std::visit([&](auto& s) { s.async_read_some(b, std::move(handler)); }, s_);
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          std::visit([&](auto& s) { s.async_write_some(b, std::move(handler)); }, s_);
        },
        token, buffers);
  }

  // One read that does not wait (plain TCP and Unix connections): true with the bytes there,
  // or with eof or another error; false when nothing is there yet, or on TLS (whose records
  // need the stream). Every read of a response after its first calls this first: the read
  // before it was a drained read (net/drained_read.hpp), which may have consumed the
  // upstream's end of file with its data.
  bool read_now(boost::asio::mutable_buffer b, std::size_t& n, boost::system::error_code& ec);

  // One send that does not wait (plain TCP and Unix connections): the bytes the socket took
  // now; 0 on TLS (records need the stream), with a full send buffer, or with ec on an error.
  std::size_t write_now(boost::asio::const_buffer b, boost::system::error_code& ec);

  void expires_after(std::chrono::steady_clock::duration d);
  void expires_at(std::chrono::steady_clock::time_point t);
  void write_expires_after(std::chrono::steady_clock::duration d); // (see TimedStream)
  void write_expires_never();
  void expires_never();
  void close();
  bool is_open();
  int native_handle();
  bool tls() const { return std::holds_alternative<TlsStream>(s_); }
  // The protocol ALPN chose ("h2", "http/1.1"), or "" (no TLS, or no ALPN).
  std::string alpn() const;

  std::variant<TcpStream, TlsStream, UnixStream>& variant() { return s_; }

private:
  std::variant<TcpStream, TlsStream, UnixStream> s_;
};

// How to reach an upstream group's targets: TLS settings (a client context built once per
// group) and the PROXY protocol version to send.
struct ConnectOptions {
  std::chrono::milliseconds connect_timeout{5000};
  boost::asio::ssl::context* tls = nullptr; // null: no TLS
  // The blocks a TLS connection borrows while bytes are in flight (net::TlsStream): the worker's
  // pool; null: one kept for the calling thread until the process exits (control-thread
  // plugins' probes and fetches).
  BufferPool* pool = nullptr;
  bool verify = true;
  std::string server_name;   // SNI / verified name; "" = from the target address
  int proxy_protocol = 0;    // 0 off, 1 or 2
  std::string proxy_header;  // the header to send (built by the caller), when proxy_protocol
  std::string upstream_name; // for log lines
  bool h1_only = false;      // offer only http/1.1 in ALPN (an Upgrade request on "auto")
};

// Connect to `target` (TCP or Unix socket), send the PROXY header if asked, then do the TLS
// handshake if asked. On failure returns null and `error` holds one human-readable reason (for
// a certificate that does not verify: OpenSSL's verification error, like "certificate has
// expired" or "hostname mismatch").
net::Task<std::unique_ptr<Conn>> connect(net::Executor ex, const Target& target,
                                         const ConnectOptions& opts, std::string& error);

// A TLS client context for an upstream group (verification, CA file, client certificate,
// minimum version, ALPN for `protocol`). Null with `error` when a file cannot be used.
std::shared_ptr<boost::asio::ssl::context>
make_client_tls(bool verify, const std::string& ca_file, const std::string& cert,
                const std::string& key, const std::string& min_version, const std::string& protocol,
                std::string& error);

} // namespace weir::core::upstream
