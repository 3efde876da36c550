// HTTP/2 client sessions towards upstream targets. nghttp2 is the protocol engine (mem_recv /
// mem_send); per connection one reader and one writer coroutine move bytes, and each request's
// coroutine (the Forwarder) works on its H2Call. Response bodies are flow-controlled end to end:
// weir tells nghttp2 that bytes are consumed only when the Forwarder took them, so a slow client
// slows the upstream's stream down instead of filling weir's memory.
#include "core/upstream/h2_client.hpp"

#include "core/net/h2_common.hpp"
#include "core/runtime/logging.hpp"
#include "core/upstream/conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

namespace weir::core::upstream {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using net::Notifier;

namespace {
constexpr size_t kReadSize = 32 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;
constexpr size_t kMaxQueuedBody = 64 * 1024;           // request bytes queued per stream
constexpr int32_t kStreamWindow = 256 * 1024;          // response bytes in flight per stream
constexpr int32_t kConnectionWindow = 8 * 1024 * 1024; // and per connection
constexpr size_t kMaxResponseHead = 64 * 1024;         // decoded response header bytes
constexpr std::chrono::seconds kPingTimeout{5};

// Drop the consumed front of a queue once it is most of the buffer, so that a queue that never
// quite empties (a steady stream) does not keep every byte that passed through it.
void compact(std::string& buf, size_t& off) {
  if (off == buf.size()) {
    buf.clear();
    off = 0;
  } else if (off >= 16 * 1024 && off * 2 >= buf.size()) {
    buf.erase(0, off);
    off = 0;
  }
}
} // namespace

// What one call knows; owned by H2Call, reachable from nghttp2's callbacks through the
// connection's stream map while the stream is open.
struct H2CallState {
  explicit H2CallState(const net::Executor& ex) : wake(ex) {}
  int32_t id = -1;
  // Request body, queued until nghttp2 asks for it.
  std::string body;
  size_t body_off = 0;
  bool body_end = false;
  bool deferred = false;
  bool has_trailers = false;
  http::Fields req_trailers;
  // Response.
  unsigned status = 0;
  http::Fields head;
  bool head_done = false;
  size_t head_bytes = 0;
  http::Fields trailers;
  bool has_trailers_in = false;
  std::string data;
  size_t data_off = 0;
  bool end_stream = false; // the response is complete
  bool closed = false;     // nghttp2 closed the stream
  uint32_t error = 0;      // the RST_STREAM / GOAWAY code it closed with
  bool refused = false;    // closed before the upstream processed it
  Notifier wake;
};

class H2Conn : public std::enable_shared_from_this<H2Conn> {
public:
  enum class State { connecting, ready, dead };

  H2Conn(net::Executor ex, H2Settings settings, std::chrono::milliseconds idle_timeout)
      : ex_(std::move(ex)), settings_(std::move(settings)), idle_timeout_(idle_timeout),
        write_wait_(ex_), idle_since_(Clock::now()) {}
  ~H2Conn() {
    if (session_ != nullptr)
      nghttp2_session_del(session_);
  }

  State state() const { return state_; }
  const std::string& error() const { return error_; }

  bool has_room() const {
    if (state_ == State::dead || goaway_ || retiring_)
      return false;
    uint32_t cap = settings_.max_concurrent_streams;
    if (session_ != nullptr) {
      if (nghttp2_session_check_request_allowed(session_) == 0)
        return false; // stream ids used up, or GOAWAY sent
      cap = std::min(cap, nghttp2_session_get_remote_settings(
                              session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
    }
    return calls_ + reserved_ < cap;
  }
  // A request that found this connection while it connects holds a place until it opens its call.
  void reserve() { ++reserved_; }
  void unreserve() {
    if (reserved_ > 0)
      --reserved_;
    if (retiring_ && state_ == State::ready)
      write_wait_.notify(); // the writer closes a retired connection nobody uses
  }

  // For the pool's sweep: whether to drop the connection (dead, idle too long, or silent after a
  // PING sent because a request timed out on it).
  bool expired(Clock::time_point now) {
    if (state_ == State::ready && ping_outstanding_ && now >= ping_deadline_)
      fail("no answer to a PING within " + std::to_string(kPingTimeout.count()) +
           "s after a request timed out");
    return state_ == State::dead ||
           (state_ == State::ready && calls_ == 0 && now - idle_since_ >= idle_timeout_);
  }

  // A request timed out on this connection: check that the upstream still answers at all.
  void suspect() {
    if (state_ != State::ready || ping_outstanding_ || session_ == nullptr)
      return;
    if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr) == 0) {
      ping_outstanding_ = true;
      ping_deadline_ = Clock::now() + kPingTimeout;
      write_wait_.notify();
    }
  }

  void start(std::unique_ptr<Conn> conn) {
    if (state_ == State::dead) { // failed while connecting
      conn->close();
      return;
    }
    conn_ = std::move(conn);
    conn_->expires_never();
    if (!init_session()) {
      fail("cannot set up the HTTP/2 session");
      return;
    }
    state_ = State::ready;
    notify_ready();
    auto self = shared_from_this();
    asio::co_spawn(
        ex_, [self]() { return self->reader(); }, asio::detached);
    asio::co_spawn(
        ex_, [self]() { return self->writer(); }, asio::detached);
  }

  void fail(const std::string& why) {
    if (state_ == State::dead)
      return;
    bool was_ready = state_ == State::ready;
    state_ = State::dead;
    error_ = why;
    if (was_ready && !why.empty())
      logger("upstream")
          ->warn("{} (upstream {}): HTTP/2 connection failed: {}", settings_.target,
                 settings_.upstream_name, why);
    for (auto& [id, st] : streams_) {
      st->closed = true;
      st->wake.notify();
    }
    streams_.clear();
    notify_ready();
    write_wait_.notify();
    if (conn_)
      conn_->close();
  }

  // Close when no call uses the connection any more (pool sweep, worker stop).
  void shutdown() {
    if (state_ == State::ready && session_ != nullptr) {
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
      closing_ = true;
      write_wait_.notify();
    } else {
      fail("");
    }
  }

  // No new streams; close once the ones in flight are done (a connection still connecting
  // closes once the requests waiting for it are done).
  void retire() {
    retiring_ = true;
    if (state_ == State::ready && calls_ == 0 && reserved_ == 0)
      shutdown();
  }

  net::Task<bool> wait_ready(Clock::time_point deadline, std::string& error) {
    // Several requests may wait for the same connection: each with its own timer, which a
    // change of state cancels. Each holds a place among the connection's streams meanwhile.
    reserve();
    struct Unreserve {
      H2Conn* c;
      ~Unreserve() { c->unreserve(); }
    } unreserve_at_exit{this};
    while (state_ == State::connecting) {
      net::SteadyTimer timer(ex_, deadline);
      ready_waiters_.push_back(&timer);
      auto [ec] = co_await timer.async_wait(net::use_task_nothrow);
      std::erase(ready_waiters_, &timer);
      if (!ec && state_ == State::connecting) {
        error = "timed out waiting for the HTTP/2 connection";
        co_return false;
      }
    }
    if (state_ == State::dead) {
      error = error_.empty() ? "connection closed" : error_;
      co_return false;
    }
    co_return true;
  }

  // --- used by H2Call -----------------------------------------------------------------------
  bool submit(H2CallState& st, std::string_view method, std::string_view path,
              std::string_view scheme, std::string_view authority, const http::Fields& fields,
              bool has_body, bool te_trailers) {
    if (state_ != State::ready || goaway_)
      return false;
    net::HeaderList h;
    h.add(":method", method);
    h.add(":scheme", scheme);
    h.add(":authority", authority);
    h.add(":path", path);
    h.add_all(fields, true, "host"); // (submitted below, while `fields` lives)
    if (te_trailers)
      h.add("te", "trailers");
    const nghttp2_nv* nva = h.build();
    nghttp2_data_provider prd{};
    prd.source.ptr = &st;
    prd.read_callback = &H2Conn::on_read_body;
    int32_t id =
        nghttp2_submit_request(session_, nullptr, nva, h.size(), has_body ? &prd : nullptr, &st);
    if (id < 0) {
      logger("upstream")
          ->warn("{} (upstream {}): cannot submit an HTTP/2 request: {}", settings_.target,
                 settings_.upstream_name, nghttp2_strerror(id));
      retire(); // stream ids used up or the session is going away: open a new connection
      return false;
    }
    st.id = id;
    if (!has_body)
      st.body_end = true;
    streams_[id] = &st;
    ++calls_;
    write_wait_.notify();
    return true;
  }

  void body_changed(H2CallState& st) {
    if (st.deferred && session_ != nullptr && !st.closed) {
      st.deferred = false;
      nghttp2_session_resume_data(session_, st.id);
    }
    write_wait_.notify();
  }

  // The Forwarder took `n` response bytes: the stream's window may open again. (The
  // connection's window was credited when the bytes arrived: one slow client must not stall
  // every other stream on the connection; each stream's buffer is bounded by its own window.)
  void consumed(H2CallState& st, size_t n) {
    if (session_ == nullptr || n == 0 || state_ == State::dead || st.closed)
      return;
    nghttp2_session_consume_stream(session_, st.id, n);
    write_wait_.notify();
  }

  // The call is going away: reset its stream if it is still open, release what it held.
  void release(H2CallState& st) {
    if (st.id >= 0) {
      if (!st.closed && session_ != nullptr && state_ == State::ready) {
        streams_.erase(st.id);
        nghttp2_session_set_stream_user_data(session_, st.id, nullptr);
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, st.id, NGHTTP2_CANCEL);
        write_wait_.notify();
      }
      if (calls_ > 0 && --calls_ == 0) {
        idle_since_ = Clock::now();
        if (retiring_) {
          st.id = -1;
          shutdown();
          return;
        }
      }
      write_wait_.notify();
    }
    st.id = -1;
  }

  const H2Settings& settings() const { return settings_; }
  const net::Executor& executor() const { return ex_; }

private:
  bool init_session() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
      return false;
    nghttp2_session_callbacks_set_on_header_callback(cbs, &H2Conn::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Conn::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2Conn::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2Conn::on_stream_close);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &H2Conn::on_begin_headers);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, settings_.max_concurrent_streams);
    int rv = nghttp2_session_client_new3(&session_, cbs, this, opt, net::h2_memory());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
      return false;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxResponseHead)},
    };
    if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0)
      return false;
    return nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                                 kConnectionWindow) == 0;
  }

  net::Task<void> reader() {
    auto self = shared_from_this();
    std::vector<uint8_t> buf(kReadSize);
    while (state_ == State::ready) {
      auto [ec, n] = co_await conn_->async_read_some(asio::buffer(buf), net::use_task_nothrow);
      if (state_ != State::ready)
        break;
      if (ec == boost::beast::error::timeout) {
        fail(write_stalled()); // (only writes have a deadline; it closed the socket)
        break;
      }
      if (ec) {
        bool quiet = closing_ || (calls_ == 0 &&
                                  (ec == asio::error::eof || ec == asio::error::connection_reset));
        fail(quiet ? std::string() : "read: " + ec.message());
        break;
      }
      ssize_t rv = nghttp2_session_mem_recv(session_, buf.data(), n);
      if (rv < 0) {
        fail(std::string("protocol error: ") + nghttp2_strerror(static_cast<int>(rv)));
        break;
      }
      write_wait_.notify(); // SETTINGS/PING ACKs, WINDOW_UPDATEs
    }
  }

  net::Task<void> writer() {
    auto self = shared_from_this();
    std::string out;
    while (state_ == State::ready) {
      out.clear();
      while (out.size() < kWriteBatch) {
        const uint8_t* p = nullptr;
        ssize_t n = nghttp2_session_mem_send(session_, &p);
        if (n < 0) {
          fail(std::string("protocol error: ") + nghttp2_strerror(static_cast<int>(n)));
          co_return;
        }
        if (n == 0)
          break;
        out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      }
      if (!out.empty()) {
        conn_->write_expires_after(settings_.write_timeout);
        auto [ec, n] = co_await asio::async_write(*conn_, asio::buffer(out), net::use_task_nothrow);
        // No deadline left behind for writes TLS makes itself meanwhile (a KeyUpdate's answer).
        conn_->write_expires_never();
        if (ec) {
          if (ec == boost::beast::error::timeout)
            fail(write_stalled());
          else
            fail(closing_ ? std::string() : "write: " + ec.message());
          co_return;
        }
        continue;
      }
      if (retiring_ && calls_ == 0 && reserved_ == 0 && !closing_) {
        nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
        closing_ = true;
        continue; // send the GOAWAY, then close
      }
      if (closing_ || (goaway_ && calls_ == 0) ||
          (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))) {
        fail("");
        co_return;
      }
      co_await write_wait_.wait();
    }
  }

  std::string write_stalled() const {
    return "the upstream took nothing of what was written for " +
           std::to_string(settings_.write_timeout.count()) + "ms (response-timeout)";
  }

  void notify_ready() {
    for (auto* t : ready_waiters_)
      t->cancel();
  }

  static H2CallState* call(nghttp2_session* s, int32_t id) {
    return static_cast<H2CallState*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static ssize_t on_read_body(nghttp2_session* s, int32_t id, uint8_t* buf, size_t length,
                              uint32_t* flags, nghttp2_data_source* source, void* user) {
    (void)source;
    auto* self = static_cast<H2Conn*>(user);
    H2CallState* st = call(s, id);
    if (st == nullptr)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t have = st->body.size() - st->body_off;
    size_t n = std::min(have, length);
    if (n > 0) {
      std::memcpy(buf, st->body.data() + st->body_off, n);
      st->body_off += n;
      compact(st->body, st->body_off);
      st->wake.notify(); // room for more
    }
    if (st->body_end && st->body.size() == st->body_off) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (st->has_trailers) {
        net::HeaderList t;
        t.add_all(st->req_trailers);
        if (!t.empty()) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
          const nghttp2_nv* nva = t.build();
          if (nghttp2_submit_trailer(s, id, nva, t.size()) != 0)
            *flags &= ~static_cast<uint32_t>(NGHTTP2_DATA_FLAG_NO_END_STREAM);
        }
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      st->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    (void)self;
    return static_cast<ssize_t>(n);
  }

  static int on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame, void* user) {
    (void)user;
    H2CallState* st = call(s, frame->hd.stream_id);
    if (st != nullptr && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      st->status = 0;
      st->head.clear();
      st->head_bytes = 0;
    }
    return 0;
  }

  static int on_header(nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* user) {
    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS)
      return 0;
    H2CallState* st = call(s, frame->hd.stream_id);
    if (st == nullptr)
      return 0;
    auto n = net::as_view(name, namelen);
    auto v = net::as_view(value, valuelen);
    st->head_bytes += namelen + valuelen + 32;
    if (st->head_bytes > kMaxResponseHead)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // resets the stream
    if (st->head_done) {
      if (!n.empty() && n.front() != ':') {
        st->trailers.insert(n, v);
        st->has_trailers_in = true;
      }
      return 0;
    }
    if (n == ":status") {
      unsigned code = 0;
      for (char c : v)
        code = code * 10 + static_cast<unsigned>(c - '0');
      st->status = code; // nghttp2 checked it is three digits
    } else if (!n.empty() && n.front() != ':') {
      st->head.insert(n, v);
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<H2Conn*>(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self->goaway_ = true;
      return 0;
    }
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
      self->ping_outstanding_ = false;
      return 0;
    }
    H2CallState* st = frame->hd.stream_id != 0 ? call(s, frame->hd.stream_id) : nullptr;
    if (st == nullptr)
      return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS) &&
        !st->head_done) {
      if (st->status >= 200) {
        st->head_done = true;
      } else {
        st->head.clear(); // an interim response: wait for the final one
        st->head_bytes = 0;
      }
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
      st->end_stream = true;
    st->wake.notify();
    return 0;
  }

  static int on_data_chunk(nghttp2_session* s, uint8_t flags, int32_t id, const uint8_t* data,
                           size_t len, void* user) {
    (void)flags;
    auto* self = static_cast<H2Conn*>(user);
    H2CallState* st = call(s, id);
    if (st == nullptr) {
      nghttp2_session_consume(s, id, len); // nobody wants it: give the window back
      self->write_wait_.notify();
      return 0;
    }
    nghttp2_session_consume_connection(s, len);
    self->write_wait_.notify();
    compact(st->data, st->data_off);
    st->data.append(reinterpret_cast<const char*>(data), len);
    st->wake.notify();
    return 0;
  }

  static int on_stream_close(nghttp2_session* s, int32_t id, uint32_t error_code, void* user) {
    auto* self = static_cast<H2Conn*>(user);
    H2CallState* st = call(s, id);
    if (st != nullptr) {
      st->closed = true;
      st->error = error_code;
      // REFUSED_STREAM, or a stream above the GOAWAY's last id: the upstream did not process it.
      st->refused = st->status == 0 && error_code == NGHTTP2_REFUSED_STREAM;
      st->wake.notify();
      nghttp2_session_set_stream_user_data(s, id, nullptr);
    }
    self->streams_.erase(id);
    return 0;
  }

  net::Executor ex_;
  H2Settings settings_;
  std::chrono::milliseconds idle_timeout_;
  std::unique_ptr<Conn> conn_;
  nghttp2_session* session_ = nullptr;
  State state_ = State::connecting;
  std::string error_;
  bool goaway_ = false;
  bool closing_ = false;
  bool retiring_ = false;
  bool ping_outstanding_ = false;
  Clock::time_point ping_deadline_{};
  uint32_t reserved_ = 0;
  uint32_t calls_ = 0;
  std::map<int32_t, H2CallState*> streams_;
  std::vector<net::SteadyTimer*> ready_waiters_;
  Notifier write_wait_;
  Clock::time_point idle_since_;
};

// --- H2Call ------------------------------------------------------------------------------------

H2Call::H2Call(std::shared_ptr<H2Conn> conn)
    : conn_(std::move(conn)), st_(std::make_unique<H2CallState>(conn_->executor())) {}

H2Call::~H2Call() {
  if (conn_ && st_)
    conn_->release(*st_);
}

bool H2Call::submit(std::string_view method, std::string_view path, std::string_view scheme,
                    std::string_view authority, const http::Fields& fields, bool has_body,
                    bool te_trailers) {
  return conn_->submit(*st_, method, path, scheme, authority, fields, has_body, te_trailers);
}

net::Task<bool> H2Call::write(asio::const_buffer data, Clock::time_point deadline) {
  auto& st = *st_;
  while (!st.closed && !st.head_done && st.body.size() - st.body_off >= kMaxQueuedBody) {
    if (!co_await st.wake.wait(deadline) && Clock::now() >= deadline)
      co_return false;
  }
  // A final response before the whole body (a 413, say) ends the upload.
  if (st.closed || st.head_done || conn_->state() != H2Conn::State::ready)
    co_return false;
  st.body.append(static_cast<const char*>(data.data()), data.size());
  conn_->body_changed(st);
  co_return true;
}

void H2Call::end_body(const http::Fields* trailers) {
  auto& st = *st_;
  st.body_end = true;
  if (trailers != nullptr && trailers->begin() != trailers->end()) {
    st.req_trailers = *trailers;
    st.has_trailers = true;
  }
  conn_->body_changed(st);
}

net::Task<H2Head> H2Call::read_head(Clock::time_point deadline) {
  auto& st = *st_;
  while (!st.head_done && !st.closed) {
    if (!co_await st.wake.wait(deadline) && !st.head_done && !st.closed)
      co_return H2Head::timeout;
  }
  if (st.head_done)
    co_return H2Head::ok;
  if (st.refused)
    co_return H2Head::refused;
  co_return H2Head::failed;
}

unsigned H2Call::status() const {
  return st_->status;
}
http::Fields& H2Call::head() {
  return st_->head;
}
const http::Fields* H2Call::trailers() const {
  return st_->has_trailers_in ? &st_->trailers : nullptr;
}
void H2Call::suspect() {
  conn_->suspect();
}
bool H2Call::request_sent() const {
  return st_->body_end && st_->body.size() == st_->body_off;
}

bool H2Call::readable() const {
  const auto& st = *st_;
  return st.data.size() > st.data_off || st.end_stream || st.closed;
}

bool H2Call::buffered() const {
  const auto& st = *st_;
  return st.data.size() > st.data_off;
}

net::Task<size_t> H2Call::read(asio::mutable_buffer buf, Clock::time_point deadline,
                               std::string& error) {
  auto& st = *st_;
  for (;;) {
    size_t have = st.data.size() - st.data_off;
    if (have > 0) {
      size_t n = std::min(have, buf.size());
      std::memcpy(buf.data(), st.data.data() + st.data_off, n);
      st.data_off += n;
      compact(st.data, st.data_off);
      conn_->consumed(st, n);
      co_return n;
    }
    if (st.end_stream)
      co_return 0;
    if (st.closed) { // closed without END_STREAM: the body is cut short, whatever the code
      if (conn_->state() == H2Conn::State::dead)
        error = "connection closed: " +
                (conn_->error().empty() ? std::string("by weir") : conn_->error());
      else
        error = std::string("stream reset: ") + nghttp2_http2_strerror(st.error);
      co_return 0;
    }
    if (!co_await st.wake.wait(deadline) && st.data.size() == st.data_off && !st.closed &&
        !st.end_stream) {
      error = "timed out";
      co_return 0;
    }
  }
}

// --- H2Pool ------------------------------------------------------------------------------------

H2Pool::H2Pool(net::Executor ex) : ex_(std::move(ex)) {}
H2Pool::~H2Pool() {
  clear();
}

std::shared_ptr<H2Conn> H2Pool::find(const std::string& key) {
  auto it = conns_.find(key);
  if (it == conns_.end())
    return nullptr;
  for (auto& c : it->second)
    if (c->has_room())
      return c;
  return nullptr;
}

std::shared_ptr<H2Conn> H2Pool::add(const std::string& key, const H2Settings& settings,
                                    std::chrono::milliseconds idle_timeout) {
  auto c = std::make_shared<H2Conn>(ex_, settings, idle_timeout);
  if (draining_)
    c->retire(); // made for a request still in flight while the worker drains: close after it
  conns_[key].push_back(c);
  return c;
}

std::shared_ptr<H2Conn> H2Pool::adopt(const std::string& key, std::unique_ptr<Conn> conn,
                                      const H2Settings& settings,
                                      std::chrono::milliseconds idle_timeout) {
  auto c = add(key, settings, idle_timeout);
  c->start(std::move(conn));
  return c;
}

void H2Pool::sweep() {
  auto now = Clock::now();
  for (auto it = conns_.begin(); it != conns_.end();) {
    auto& v = it->second;
    for (auto c = v.begin(); c != v.end();) {
      if ((*c)->expired(now)) {
        (*c)->shutdown();
        c = v.erase(c);
      } else {
        ++c;
      }
    }
    it = v.empty() ? conns_.erase(it) : std::next(it);
  }
}

void H2Pool::clear() {
  draining_ = true;
  for (auto& [key, v] : conns_)
    for (auto& c : v)
      c->retire();
  conns_.clear();
}

void H2Pool::retire_if(const std::function<bool(const std::string&)>& pred) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (pred(it->first)) {
      for (auto& c : it->second)
        c->retire();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t H2Pool::connection_count() const {
  size_t n = 0;
  for (const auto& [key, v] : conns_)
    n += v.size();
  return n;
}

void H2Pool::start(const std::shared_ptr<H2Conn>& c, std::unique_ptr<Conn> conn) {
  c->start(std::move(conn));
}
void H2Pool::failed(const std::shared_ptr<H2Conn>& c, const std::string& error) {
  c->fail(error);
}
net::Task<bool> H2Pool::wait_ready(const std::shared_ptr<H2Conn>& c, Clock::time_point deadline,
                                   std::string& error) {
  co_return co_await c->wait_ready(deadline, error);
}
bool H2Pool::connecting(const std::shared_ptr<H2Conn>& c) {
  return c->state() == H2Conn::State::connecting;
}
std::unique_ptr<H2Call> H2Pool::open(const std::shared_ptr<H2Conn>& c) {
  if (c->state() != H2Conn::State::ready)
    return nullptr;
  return std::unique_ptr<H2Call>(new H2Call(c));
}

} // namespace weir::core::upstream
