// HTTP/2 towards upstream targets (nghttp2 client sessions): many requests multiplexed over few
// connections. One worker owns its H2Pool and every connection in it; nothing here is shared
// between threads.
#pragma once

#include "core/http/fields.hpp"
#include "core/net/executor.hpp"
#include <boost/asio/buffer.hpp>

#include <boost/beast/http/fields.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weir::core::upstream {

class Conn;
class H2Conn;
struct H2CallState;

struct H2Settings {
  uint32_t max_concurrent_streams = 100; // our own cap per connection (the peer's applies too)
  std::string upstream_name;             // for log lines
  std::string target;                    // the target address, for log lines
  // The longest the upstream may take to accept each write (the upstream's response-timeout):
  // a peer that stops reading fails the connection instead of holding its writer, and every
  // request queued behind it, forever.
  std::chrono::milliseconds write_timeout{60000};
};

// The result of waiting for a response head.
enum class H2Head {
  ok,
  refused, // the upstream did not process the request (REFUSED_STREAM, GOAWAY before it): retry
  timeout, // no response head before the deadline
  failed,  // stream or connection error after the request may have been processed
};

// One request/response exchange on an HTTP/2 upstream connection.
class H2Call {
public:
  using Clock = std::chrono::steady_clock;
  ~H2Call(); // resets the stream when it is still open

  // Send the request head. `fields` are HTTP/1-style header fields without hop-by-hop ones;
  // Host becomes :authority. Returns false when the connection cannot take a stream any more.
  bool submit(std::string_view method, std::string_view path, std::string_view scheme,
              std::string_view authority, const http::Fields& fields, bool has_body,
              bool te_trailers);
  // Queue request body bytes; waits while too much is queued (the upstream's flow control).
  // False when the stream failed or the deadline passed.
  net::Task<bool> write(boost::asio::const_buffer data, Clock::time_point deadline);
  // The request body is complete; `trailers` (may be null) are sent after it.
  void end_body(const http::Fields* trailers);

  // Wait for the final response head (interim 1xx responses are skipped).
  net::Task<H2Head> read_head(Clock::time_point deadline);
  unsigned status() const;
  http::Fields& head();
  // Whether read() would return at once (body bytes are buffered, or the stream has ended).
  bool readable() const;
  // Whether body bytes are buffered (read() returns some at once).
  bool buffered() const;
  // Read response body bytes; 0 with no error at the end. `error` is set on failure or timeout.
  net::Task<size_t> read(boost::asio::mutable_buffer buf, Clock::time_point deadline,
                         std::string& error);
  // Trailer fields after the response body, or null.
  const http::Fields* trailers() const;
  // A deadline passed on this call: have the connection prove it is alive (PING), else drop it.
  void suspect();
  // Whether the request body was accepted completely (the stream may still fail).
  bool request_sent() const;

private:
  friend class H2Conn;
  friend class H2Pool;
  H2Call(std::shared_ptr<H2Conn> conn);
  std::shared_ptr<H2Conn> conn_;
  std::unique_ptr<H2CallState> st_;
};

// Per-worker HTTP/2 upstream connections, keyed like the HTTP/1 pool.
class H2Pool {
public:
  explicit H2Pool(net::Executor ex);
  ~H2Pool();
  H2Pool(const H2Pool&) = delete;
  H2Pool& operator=(const H2Pool&) = delete;

  // A connection to `key` that can take another stream (connecting ones included), or null.
  std::shared_ptr<H2Conn> find(const std::string& key);
  // A new connection for `key`, registered at once so that concurrent requests share it while it
  // connects. Call H2Pool::start or H2Pool::failed on it when the connect attempt ends.
  std::shared_ptr<H2Conn> add(const std::string& key, const H2Settings& settings,
                              std::chrono::milliseconds idle_timeout);
  // Register an already connected one (ALPN chose h2 on a connection made for "auto").
  std::shared_ptr<H2Conn> adopt(const std::string& key, std::unique_ptr<Conn> conn,
                                const H2Settings& settings, std::chrono::milliseconds idle_timeout);
  // Close connections that are dead or idle past their timeout.
  void sweep();
  // The worker drains or stops: connections close once their requests are done, and any made
  // from now on close after the request they were made for.
  void clear();
  // Retire the connections whose key `pred` accepts (targets that left their group): they take
  // no new stream and close once their streams are done.
  void retire_if(const std::function<bool(const std::string&)>& pred);
  size_t connection_count() const;

  static void start(const std::shared_ptr<H2Conn>& c, std::unique_ptr<Conn> conn);
  static void failed(const std::shared_ptr<H2Conn>& c, const std::string& error);
  // Wait until `c` is connected (true) or failed (false, with the reason in `error`).
  static net::Task<bool> wait_ready(const std::shared_ptr<H2Conn>& c,
                                    std::chrono::steady_clock::time_point deadline,
                                    std::string& error);
  static bool connecting(const std::shared_ptr<H2Conn>& c);
  // A call on a ready connection (null if it can no longer take one).
  static std::unique_ptr<H2Call> open(const std::shared_ptr<H2Conn>& c);

private:
  net::Executor ex_;
  bool draining_ = false;
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2Conn>>> conns_;
};

} // namespace weir::core::upstream
