// What every downstream protocol (HTTP/1.x, HTTP/2) shares once it has parsed a request head:
// client address, vhost and route choice, request filters, forwarding to an upstream with retries,
// response filters, local and error responses, the access log. A downstream protocol supplies the
// request body (BodySource) and sends the response (ResponseSink).
#pragma once

#include "core/http/fields.hpp"
#include "core/net/executor.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weir::core {
class Worker;
struct WorkerService;
} // namespace weir::core
namespace weir::core::upstream {
class Conn;
}

namespace weir::core::http {

using RequestMessage = boost::beast::http::request<boost::beast::http::buffer_body, Fields>;
using ResponseMessage = boost::beast::http::response<boost::beast::http::buffer_body, Fields>;

// The downstream connection, as far as the request path cares.
struct ConnInfo {
  std::string peer_ip; // the TCP peer (or the PROXY protocol source), textual, no brackets;
                       // "unix" for a Unix socket peer
  uint16_t peer_port = 0;
  std::string local_ip; // the address the client connected to (for PROXY headers upstream)
  uint16_t local_port = 0;
  bool tls = false;
  std::string sni; // the server name the client sent in its TLS handshake, lowercase, or ""
};

// The request body as the downstream protocol delivers it.
class BodySource {
public:
  // Read the next part of the body into `buf`. Returns the number of bytes; 0 with no error means
  // the body is complete. On an error, `status` says what to answer if no response began yet
  // (400 malformed, 413 too large), or 0 when the client is gone and nothing can be answered.
  virtual net::Task<size_t> read(boost::asio::mutable_buffer buf, boost::system::error_code& ec,
                                 unsigned& status) = 0;
  // Whether the body was read to its end (true at once when there is no body).
  virtual bool done() const = 0;
  // read() without waiting: the body bytes that are already here (read with the head, say) go
  // into `buf`. Returns how many; 0 when none are here yet or the body is complete (done()
  // tells). Errors as read(). (Such bytes go upstream in the same write as the head.)
  virtual size_t read_now(boost::asio::mutable_buffer buf, boost::system::error_code& ec,
                          unsigned& status) {
    (void)buf;
    ec = {};
    status = 0;
    return 0;
  }
  // Called once, before the first read, when the client expects "100 Continue" (HTTP/1.1).
  // Returns false when the client is gone.
  virtual net::Task<bool> send_continue() { co_return true; }
  // Trailer fields that followed the body (HTTP/2), or null. Valid once done().
  virtual const Fields* trailers() const { return nullptr; }

protected:
  ~BodySource() = default;
};

// The response as the downstream protocol sends it. Calls come in order: head, data*, finish.
class ResponseSink {
public:
  // The response head, after the response filters. Hop-by-hop fields are gone, Transfer-Encoding
  // too; Content-Length is present when the body length is known. `body` says whether body data
  // follows (false for HEAD, 204, 304). The sink may keep a pointer to `res` until finish(); it
  // must not touch res.body(), which the caller uses. Returns false when the client is gone.
  // (A plain call, not a coroutine: no sink waits here, and a coroutine frame costs an
  // allocation and more per response.)
  virtual bool head(ResponseMessage& res, bool body) = 0;
  // A piece of the body. `more` says that more of it follows at once (the caller holds or can
  // read it without waiting): a sink may then let the connection gather this piece with the
  // next into full packets (MSG_MORE), as long as it sends everything before the caller waits
  // (flush()) and at the end (finish(), finish_now()).
  virtual net::Task<bool> data(boost::asio::const_buffer chunk, bool more) = 0;
  // data() without a coroutine, when the connection takes the whole chunk at once: true (sent)
  // or false (the client is gone). nullopt when it did not take it all: then data() must be
  // called with the same chunk, and sends what is left. (The default always says nullopt.)
  virtual std::optional<bool> data_now(boost::asio::const_buffer chunk) {
    (void)chunk;
    return std::nullopt;
  }
  // The end of the response, with trailer fields (may be null or empty).
  virtual net::Task<bool> finish(const Fields* trailers) = 0;
  // The end of a response without trailers, when it completes without waiting (nothing held
  // back, or a queue the connection's writer sends as it is): then true is returned and finish()
  // need not be called. (Saves a coroutine.)
  virtual bool finish_now() { return false; }
  // A sink may hold the head back to send it with the first body bytes, and body bytes given
  // with `more`; the caller flushes before it waits for body bytes that are not there yet, so a
  // slow body never delays what came before it.
  virtual net::Task<bool> flush() { co_return true; }
  // The upstream answered an Upgrade request with 101: relay `res` and tunnel bytes both ways
  // until either side ends. `pending` holds bytes the upstream sent after its head. Only HTTP/1.1
  // supports this; the default refuses, and the caller answers 502.
  virtual net::Task<bool> tunnel(ResponseMessage& res, upstream::Conn& conn,
                                 boost::asio::const_buffer pending) {
    (void)res;
    (void)conn;
    (void)pending;
    co_return false;
  }
  // Whether any byte of a response was sent (then no error response can replace it).
  bool started() const { return started_; }

protected:
  ~ResponseSink() = default;
  bool started_ = false;
};

// One request, as parsed by the downstream protocol.
struct ProxyRequest {
  // The message that goes upstream: method, origin-form target, and the headers as received minus
  // hop-by-hop fields (handle_request adds X-Forwarded-* and Forwarded-trust handling). Its body
  // member is the relay buffer handle used by BodySource/forwarding.
  RequestMessage* msg = nullptr;
  // The request line's parts are views into text that outlives the request: the head held in
  // *msg (HTTP/1.x), or the stream's pseudo-header fields (HTTP/2). No copy per request.
  unsigned version = 11;    // 10, 11 or 20: the downstream protocol version, for the log
  std::string_view method;  // as received
  std::string_view target;  // as received, for the log
  std::string_view path;    // without the query
  std::string_view query;   // without '?'
  std::string_view host;    // Host or :authority, as received (may carry a port)
  std::string_view upgrade; // the protocol an HTTP/1.1 Upgrade request asks for, else ""
  bool head = false;        // a HEAD request: the response has no body
  bool has_body = false;    // a body follows the head
  std::optional<uint64_t> content_length; // the body's length, when the head states it
  bool expect_continue = false;
  bool te_trailers = false; // the client accepts trailers (TE: trailers): passed to h2 upstreams
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  // Results, for the caller and the log.
  std::string client_ip; // the effective client address (trusted proxies applied)
  uint16_t client_port = 0;
  std::string upstream; // the target used
  unsigned status = 0;
  uint64_t bytes_out = 0; // response body bytes sent
  bool logged = false;
};

// The service for a request on a listener shared by several services (virtual hosts): by Host /
// :authority without port, else by TLS SNI, else the first. `services` is never empty.
const WorkerService& choose_service(const std::vector<const WorkerService*>& services,
                                    std::string_view host, std::string_view sni);

// Route, run filters, forward, answer (through `sink`, errors and local answers included) and log
// one request. Returns false when the downstream connection must not carry another request: the
// exchange was aborted, or the response could not be completed.
net::Task<bool> handle_request(Worker& worker, const WorkerService& service, const ConnInfo& conn,
                               ProxyRequest& req, BodySource& body, ResponseSink& sink);

// Answer from weir itself (an error raised before routing, say) and log the access line. Response
// filters do not run.
net::Task<void> respond_error(const WorkerService& service, const ConnInfo& conn, ProxyRequest& req,
                              ResponseSink& sink, unsigned status);

// Write the access-log line for `req` (once).
void log_request(const WorkerService& service, const ConnInfo& conn, ProxyRequest& req);

// Remove the hop-by-hop fields of RFC 9110 7.6.1 (those named by Connection, and the fixed set).
// Transfer-Encoding stays: it is framing.
void strip_hop_by_hop(Fields& f);

// Whether a comma-separated header (all its lines) lists `token`, case-insensitively.
bool has_token(const Fields& f, boost::beast::http::field name, std::string_view token);

// The standard reason phrase of `status` ("Not Found"); Beast's "<unknown-status>" for a code
// without one.
std::string_view reason_text(unsigned status);

} // namespace weir::core::http
