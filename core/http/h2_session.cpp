// The downstream HTTP/2 session: nghttp2 as a pure protocol engine (mem_recv / mem_send), one
// reader and one writer coroutine per connection, one coroutine per stream running
// handle_request(). Everything runs on the worker's thread; nothing here takes a lock.
//
// Lifetimes: the connection object (Core) lives in serve_h2's frame and outlives every coroutine
// it starts: run() returns only when the reader, the writer, the ticker and every stream
// coroutine have finished. A stream (H2Stream) is shared by nghttp2's bookkeeping (the `streams_`
// map, until nghttp2 closes the stream) and by its coroutine; its destructor never touches the
// connection.
#include "core/http/h2_session.hpp"

#include "core/http/proxy.hpp"
#include "core/net/h2_common.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/small_alloc.hpp"
#include "core/runtime/worker.hpp"

#include "core/net/timed_stream.hpp"
#include "core/net/tls_stream.hpp"
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace weir::core::http {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// --- sizes and thresholds (docs/http2.md explains each) -----------------------------------------
constexpr size_t kWriteBatch = 64 * 1024;          // frames gathered before one socket write
constexpr size_t kIdleWriteBuffer = 16 * 1024;     // write buffer an idle connection may keep
constexpr size_t kStreamSendBuffer = 64 * 1024;    // per-stream response bytes queued in weir
constexpr uint32_t kMaxWindow = 0x7fffffff;        // RFC 9113 6.9.1
constexpr uint32_t kMinConnectionWindow = 1 << 20; // connection receive window (at least)
constexpr size_t kDeflateTableSize = 4096; // our HPACK encoder's table, whatever the client asks
constexpr size_t kMaxOutboundAck = 1000;   // queued SETTINGS/PING ACKs before "flooded"
constexpr size_t kMaxSettingsEntries = 32; // entries in one SETTINGS frame
constexpr uint64_t kResetBurst = 1000;     // nghttp2's RST_STREAM token bucket
constexpr uint64_t kResetRate = 33;        // tokens per second
constexpr std::chrono::seconds kFloodWindow{1};
constexpr uint32_t kMaxSettingsPerWindow = 100; // SETTINGS frames received per kFloodWindow
constexpr uint32_t kMaxPingsPerWindow = 100;    // PING frames received per kFloodWindow
constexpr std::chrono::seconds kAbuseWindow{10};
constexpr uint32_t kMaxEarlyResets = 200;   // streams reset by the client before a response began
constexpr uint32_t kMaxEmptyFrames = 200;   // zero-length DATA/HEADERS/CONTINUATION, no END_STREAM
constexpr uint32_t kMaxOversizedBlocks = 4; // header blocks over max-header-bytes per connection
constexpr std::chrono::seconds kGoawayFlushTimeout{5}; // writing the last frames after abuse

constexpr uint8_t kNone = NGHTTP2_FLAG_NONE;

// Counts events in fixed windows: add() says whether more than `limit` happened in this one.
class RateCounter {
public:
  bool add(Clock::time_point now, Clock::duration window, uint32_t limit) {
    if (now - start_ >= window) {
      start_ = now;
      count_ = 0;
    }
    return ++count_ > limit;
  }

private:
  Clock::time_point start_{};
  uint32_t count_ = 0;
};

using net::as_view;
using net::HeaderList;
using net::make_nv;
using net::Notifier;

class Core;

// Request and response bodies of a stream: small ones (the usual) from the worker's lists.
using SmallFlatBuffer = beast::basic_flat_buffer<SmallAllocator<char>>;

// One stream: the request as it arrives, its body queue, its response queue. It is the
// BodySource and the ResponseSink handle_request() uses.
class H2Stream final : public BodySource, public ResponseSink {
public:
  H2Stream(Core& core, int32_t id, const net::Executor& ex)
      : core_(core), id_(id), read_wait_(ex), write_wait_(ex) {}
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;
  ~H2Stream() = default;

  // BodySource
  net::Task<size_t> read(asio::mutable_buffer buf, error_code& ec, unsigned& status) override;
  size_t take_body(asio::mutable_buffer buf); // from in_, which holds some
  // Complete only when every byte was delivered: once body bytes were dropped (too large,
  // reset, not wanted), the body is never "done", so a reader learns of the failure instead of
  // forwarding a truncated body as a whole one.
  bool done() const override { return in_eof_ && in_.size() == 0 && !too_large_ && !discard_; }
  size_t read_now(asio::mutable_buffer buf, error_code& ec, unsigned& status) override;
  net::Task<bool> send_continue() override;
  const Fields* trailers() const override { return has_trailers_ ? &trailers_in_ : nullptr; }

  // ResponseSink
  bool head(ResponseMessage& res, bool body) override;
  net::Task<bool> data(asio::const_buffer chunk, bool more) override;
  std::optional<bool> data_now(asio::const_buffer chunk) override;
  net::Task<bool> finish(const Fields* trailers) override;
  bool finish_now() override;

  // Whether the stream can no longer carry anything (reset, closed, or the connection ended).
  bool gone() const;
  // Ends the response (with `trailers`, if any); true when that is all: the writer can send the
  // rest without waiting for the client, so END_STREAM leaves with its next batch (or the stream
  // is reset, as with bytes already written). False when the stream is gone, or when the
  // client's flow-control windows hold the rest back (finish() then waits, under send-timeout).
  bool end_response(const Fields* trailers);
  // Append response bytes to the queue the writer sends from.
  void queue(asio::const_buffer chunk);
  // Wait until the response queue is below its bound (or, with `to_end`, until END_STREAM
  // went out). False when the stream is gone, or when nothing moved for send-timeout (the
  // stream is then reset).
  net::Task<bool> wait_sent(bool to_end);

  Core& core_;
  const int32_t id_;
  Notifier read_wait_;  // the handler waiting for request body
  Notifier write_wait_; // the handler waiting for its response to drain

  // The request head as it arrives.
  std::string method_, scheme_, authority_, path_, cookie_;
  size_t header_bytes_ = 0;
  uint32_t header_count_ = 0;
  bool oversized_ = false; // the header block went over the limits (431 or a reset)
  // Fields start_stream must act on, noted as they arrive (most requests have none of them).
  bool has_host_ = false;   // a Host field (:authority replaces it)
  bool has_expect_ = false; // Expect (never forwarded: 100-continue is answered here)
  bool hop_by_hop_ = false; // TE, Trailer or Proxy-*: dropped by strip_hop_by_hop
  RequestMessage msg_;
  ProxyRequest req_;
  const WorkerService* service_ = nullptr;
  unsigned preset_status_ = 0; // answer this instead of handling the request (405, 413, 431)

  // Request body: DATA not yet taken by the handler (never more than the stream window).
  SmallFlatBuffer in_;
  uint64_t in_total_ = 0;
  uint64_t max_body_ = 0;
  bool in_eof_ = false;
  bool too_large_ = false;
  bool discard_ = false; // nobody will read the body: DATA is consumed as it arrives
  Fields trailers_in_;
  bool has_trailers_ = false;

  // Response.
  bool response_submitted_ = false;
  bool has_body_ = false;
  bool continue_sent_ = false;
  SmallFlatBuffer out_;
  bool out_eof_ = false;
  bool deferred_ = false; // nghttp2 parked our DATA until resume_data
  HeaderList trailers_out_;
  uint64_t sent_total_ = 0;
  bool end_sent_ = false;   // END_STREAM left (serialized into the write buffer)
  bool end_queued_ = false; // finish() returned: END_STREAM leaves with the writer's next batch
  bool reset_after_end_ = false;   // RST_STREAM(NO_ERROR) once END_STREAM left (request not read)
  Clock::time_point held_since_{}; // an end_queued_ stream found held back, since (the ticker)
  uint64_t held_seen_ = 0;         // sent_total_ then
  bool rst_sent_ = false;

  // Lifecycle.
  bool closed_ = false; // nghttp2 closed the stream
  bool handler_running_ = false;
};

// The connection without its transport: nghttp2, the streams, limits and defences.
class Core : public Drainable {
public:
  Core(Worker& worker, const std::vector<const WorkerService*>& services, const ConnInfo& conn)
      : worker_(worker), services_(services), conn_(conn),
        limits_(services.front()->plan->cfg->limits), ex_(worker.context().get_executor()),
        wake_(ex_), tick_(ex_), done_(ex_) {
    worker_.add_session(this);
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  void on_drain() override {
    if (session_ == nullptr || drain_goaway_ || terminating_ || dead_)
      return;
    drain_goaway_ = true;
    // Streams up to the last one we processed complete; later ones the client must retry.
    nghttp2_submit_goaway(session_, kNone, nghttp2_session_get_last_proc_stream_id(session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
    wake_writer();
  }

  // --- used by H2Stream ----------------------------------------------------------------------
  bool dead() const { return dead_; }
  std::chrono::milliseconds body_timeout() const { return limits_.header_timeout; }
  std::chrono::milliseconds send_timeout() const { return limits_.send_timeout; }
  void wake_writer() { wake_.notify(); }

  void consume(int32_t id, size_t n) {
    if (session_ != nullptr && n > 0) {
      nghttp2_session_consume(session_, id, n);
      wake_writer();
    }
  }

  void reset_stream(H2Stream& st, uint32_t code) {
    if (st.rst_sent_ || st.closed_ || session_ == nullptr)
      return;
    st.rst_sent_ = true;
    nghttp2_submit_rst_stream(session_, kNone, st.id_, code);
    discard(st);
    wake_writer();
  }

  void resume(H2Stream& st) {
    if (st.deferred_ && !st.closed_) {
      st.deferred_ = false;
      nghttp2_session_resume_data(session_, st.id_);
    }
    wake_writer();
  }

  bool submit_continue(H2Stream& st) {
    HeaderList& h = head_scratch_;
    h.clear();
    h.add(":status", "100");
    const nghttp2_nv* nva = h.build();
    int rv = nghttp2_submit_headers(session_, kNone, st.id_, nullptr, nva, h.size(), nullptr);
    wake_writer();
    return rv == 0;
  }

  bool submit_response(H2Stream& st, const ResponseMessage& res, bool body) {
    HeaderList& h = head_scratch_;
    h.clear();
    std::array<char, 8> status{};
    auto end = std::to_chars(status.data(), status.data() + status.size(), res.result_int()).ptr;
    h.add(":status", std::string_view(status.data(), static_cast<size_t>(end - status.data())));
    h.add_all(res, true); // (submitted right away)
    const nghttp2_nv* nva = h.build();
    nghttp2_data_provider provider{};
    provider.source.ptr = &st;
    provider.read_callback = &Core::cb_data_read;
    int rv = nghttp2_submit_response(session_, st.id_, nva, h.size(), body ? &provider : nullptr);
    wake_writer();
    if (rv != 0) {
      logger("http2")->debug("{}:{}: stream {}: response not submitted: {}", conn_.peer_ip,
                             conn_.peer_port, st.id_, nghttp2_strerror(rv));
      return false;
    }
    return true;
  }

  // Whether the rest of `st`'s response goes out in the writer's next batch. HEADERS are not
  // flow-controlled. The last DATA frame (the queue's rest with END_STREAM, or an empty one when
  // the queue is empty) is: it needs room in the stream's window for the queue, and in the
  // connection's for everything every stream queued; an empty frame needs a window above zero
  // even so (nghttp2 sends no DATA at all into a window of 0).
  bool sendable_now(const H2Stream& st) const {
    if (st.gone())
      return false;
    if (!st.has_body_)
      return true;
    int64_t stream_window = nghttp2_session_get_stream_remote_window_size(session_, st.id_);
    int64_t conn_window = nghttp2_session_get_remote_window_size(session_);
    auto mine = static_cast<int64_t>(st.out_.size());
    auto all = static_cast<int64_t>(queued_);
    if (mine == 0)
      return stream_window > 0 && conn_window > all;
    return mine <= stream_window && all <= conn_window;
  }

  // Response bytes queued in streams and not yet sent, all streams together.
  void queued(size_t n) { queued_ += n; }

  // finish() returned before END_STREAM left (see H2Stream::finish): it normally leaves with the
  // writer's next batch. Should the client shrink its windows meanwhile (SETTINGS), the writer
  // finds it held back and the ticker gives it send-timeout, as a waiting handler would.
  void end_queued(H2Stream& st) {
    if (st.end_queued_)
      return;
    st.end_queued_ = true;
    ++queued_ends_;
  }

  void log_timeout(const H2Stream& st) const {
    logger("http2")->info("{}:{}: stream {}: the client took nothing of the response for {}ms",
                          conn_.peer_ip, conn_.peer_port, st.id_, limits_.send_timeout.count());
  }

protected:
  ~Core() {
    if (session_ != nullptr)
      nghttp2_session_del(session_);
    streams_.clear();
    worker_.remove_session(this);
  }

  // Create the nghttp2 session and queue our SETTINGS. False (logged) on failure.
  bool init() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
      return false;
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, &Core::cb_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Core::cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Core::cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Core::cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Core::cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Core::cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Core::cb_frame_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, &Core::cb_send_data);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, &Core::cb_invalid_frame);

    nghttp2_option* opt = nullptr;
    if (nghttp2_option_new(&opt) != 0) {
      nghttp2_session_callbacks_del(cbs);
      return false;
    }
    // Window updates only for bytes handle_request took (see H2Stream::read).
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, kMaxOutboundAck);
    nghttp2_option_set_max_settings(opt, kMaxSettingsEntries);
    nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRate);
    nghttp2_option_set_max_continuations(opt, max_continuations());
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, kDeflateTableSize);
    int rv = nghttp2_session_server_new3(&session_, cbs, this, opt, net::h2_memory());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
      session_ = nullptr;
      return false;
    }

    auto window = static_cast<uint32_t>(std::min<uint64_t>(limits_.h2_initial_window, kMaxWindow));
    std::array<nghttp2_settings_entry, 4> iv{{
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.h2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         static_cast<uint32_t>(std::min<uint64_t>(limits_.max_header_bytes, UINT32_MAX))},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    }};
    if (nghttp2_submit_settings(session_, kNone, iv.data(), iv.size()) != 0)
      return false;
    // The connection window bounds what all streams together may have buffered in weir.
    auto conn_window = static_cast<int32_t>(std::max(window, kMinConnectionWindow));
    nghttp2_session_set_local_window_size(session_, kNone, 0, conn_window);
    last_active_ = Clock::now();
    return true;
  }

  size_t max_continuations() const {
    // A header block of max-header-bytes needs about that many 16 KiB frames (HPACK rarely
    // grows a field); a little slack, and never below nghttp2's default.
    return std::max<size_t>(8, static_cast<size_t>(limits_.max_header_bytes / 16384) + 2);
  }

  // Bytes from the client into nghttp2; then the handlers of the requests they completed start.
  // A header block the bytes left open starts the header-timeout deadline; one that began and
  // ended in them (the usual) neither reads the clock nor wakes the ticker.
  void feed(const uint8_t* data, size_t len) {
    receive(data, len);
    if (header_stream_ != 0 && header_start_ == Clock::time_point{}) {
      header_start_ = Clock::now();
      tick_.notify();
    }
    start_handlers();
  }

  // The handlers wait until nghttp2 has processed everything that was read (a RST_STREAM right
  // behind the HEADERS, say), so that no work starts for a stream already reset and
  // handle_request never runs inside mem_recv. co_spawn runs each until it first waits.
  void start_handlers() {
    if (ready_.empty())
      return;
    auto ready = std::move(ready_);
    ready_.clear();
    for (auto& sp : ready)
      asio::co_spawn(ex_, run_handler(std::move(sp)), asio::detached);
    if (ready_.empty()) {
      ready.clear();
      ready_ = std::move(ready); // keep the capacity
    }
  }

  void receive(const uint8_t* data, size_t len) {
    if (session_ == nullptr || dead_ || terminating_)
      return;
    ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
    if (rv >= 0)
      return;
    auto code = static_cast<int>(rv);
    switch (code) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
      log_once(spdlog::level::info, "not an HTTP/2 client preface");
      dead_ = true;
      break;
    case NGHTTP2_ERR_FLOODED:
      log_once(spdlog::level::warn,
               "control frame flood (more than {} SETTINGS/PING acknowledgements queued); "
               "connection closed",
               kMaxOutboundAck);
      dead_ = true;
      break;
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
      terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                fmt::format("CONTINUATION flood (more than {} in one header block)",
                            max_continuations()));
      break;
    default:
      terminate(NGHTTP2_INTERNAL_ERROR, fmt::format("HTTP/2 error: {}", nghttp2_strerror(code)));
      break;
    }
    wake_writer();
  }

  // Move queued frames into out_; false after a fatal error.
  bool fill() {
    while (out_.size() < kWriteBatch) {
      const uint8_t* p = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &p);
      if (n < 0) {
        log_once(spdlog::level::warn, "HTTP/2 send error: {}; connection closed",
                 nghttp2_strerror(static_cast<int>(n)));
        dead_ = true;
        return false;
      }
      if (n == 0)
        break;
      out_.insert(out_.end(), p, p + n);
    }
    return true;
  }

  bool want_io() const {
    return nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
  }

  // Close the connection for a misbehaving client: one log line, GOAWAY with `code`, no further
  // reading.
  void terminate(uint32_t code, const std::string& why) {
    if (terminating_ || dead_)
      return;
    terminating_ = true;
    log_once(spdlog::level::warn, "{}; GOAWAY {}", why, nghttp2_http2_strerror(code));
    nghttp2_session_terminate_session(session_, code);
    wake_writer();
    tick_.notify();
  }

  template <class... Args>
  void log_once(spdlog::level::level_enum level, fmt::format_string<Args...> f, Args&&... args) {
    if (logged_)
      return;
    logged_ = true;
    logger("http2")->log(level, "{}:{}: {}", conn_.peer_ip, conn_.peer_port,
                         fmt::format(f, std::forward<Args>(args)...));
  }

  // No stream and no stream coroutine: the keep-alive clock runs.
  bool idle() const { return streams_.empty() && live_handlers_ == 0; }

  void note_activity() {
    if (idle()) {
      last_active_ = Clock::now();
      tick_.notify();
    }
  }

  // Keep-alive and header deadlines.
  net::Task<void> ticker() {
    try {
      co_await tick_loop();
    } catch (const std::exception& e) {
      log_once(spdlog::level::err, "internal error: {}; connection closed", e.what());
      dead_ = true;
      wake_writer();
    }
  }

  net::Task<void> tick_loop() {
    while (!io_done_ && !dead_) {
      auto now = Clock::now();
      auto deadline = Clock::time_point::max();
      if (header_stream_ != 0 && !terminating_) {
        auto d = header_start_ + limits_.header_timeout;
        if (now >= d) {
          header_stream_ = 0;
          terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                    fmt::format("request header block not complete within {}ms",
                                limits_.header_timeout.count()));
        } else {
          deadline = d;
        }
      }
      if (queued_ends_ > 0)
        deadline = std::min(deadline, expire_held_ends(now));
      if (idle() && !idle_goaway_ && !terminating_) {
        auto d = last_active_ + limits_.keepalive_timeout;
        if (now >= d) {
          idle_goaway_ = true;
          logger("http2")->debug("{}:{}: idle for {}ms, GOAWAY", conn_.peer_ip, conn_.peer_port,
                                 limits_.keepalive_timeout.count());
          nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
          wake_writer();
        } else {
          deadline = std::min(deadline, d);
        }
      }
      co_await tick_.wait(deadline);
    }
  }

  // Streams whose END_STREAM was promised (end_queued) but is held back by the client's windows:
  // reset after send-timeout without progress. Returns the next deadline.
  Clock::time_point expire_held_ends(Clock::time_point now) {
    auto next = Clock::time_point::max();
    for (auto& [id, st] : streams_) {
      if (!st->end_queued_ || st->end_sent_ || st->rst_sent_)
        continue;
      if (st->held_since_ == Clock::time_point{} || st->sent_total_ != st->held_seen_) {
        st->held_since_ = now;
        st->held_seen_ = st->sent_total_;
      }
      auto d = st->held_since_ + limits_.send_timeout;
      if (now >= d) {
        log_timeout(*st);
        reset_stream(*st, NGHTTP2_CANCEL);
      } else {
        next = std::min(next, d);
      }
    }
    return next;
  }

  // The connection ended: every stream learns it (its handler's next read or write fails).
  void end_streams() {
    dead_ = true;
    for (auto& [id, st] : streams_) {
      st->discard_ = true;
      st->read_wait_.notify();
      st->write_wait_.notify();
    }
  }

  net::Task<void> wait_handlers() {
    while (live_handlers_ > 0)
      co_await done_.wait();
  }

private:
  H2Stream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  void discard(H2Stream& st) {
    st.discard_ = true;
    if (st.in_.size() > 0) {
      consume(st.id_, st.in_.size());
      st.in_.consume(st.in_.size());
    }
  }

  // --- nghttp2 callbacks ----------------------------------------------------------------------
  // Each converts exceptions (allocation failures) into a session failure: nothing may unwind
  // through C code.
  template <class Fn> static int guarded(void* user_data, Fn&& fn) {
    auto& self = *static_cast<Core*>(user_data);
    try {
      return fn(self);
    } catch (const std::exception& e) {
      self.log_once(spdlog::level::err, "internal error in an HTTP/2 callback: {}", e.what());
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }

  static int cb_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_begin_frame(*hd); });
  }
  static int cb_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_begin_headers(*f); });
  }
  static int cb_header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    return guarded(ud, [&](Core& c) {
      return c.on_header(*f, as_view(name, namelen), as_view(value, valuelen));
    });
  }
  static int cb_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_frame_recv(*f); });
  }
  static int cb_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_data_chunk(id, data, len); });
  }
  static int cb_stream_close(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_stream_close(id, code); });
  }
  static int cb_frame_send(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    return guarded(ud, [&](Core& c) { return c.on_frame_send(*f); });
  }
  static int cb_invalid_frame(nghttp2_session*, const nghttp2_frame* f, int error, void* ud) {
    auto& c = *static_cast<Core*>(ud);
    logger("http2")->debug("{}:{}: invalid frame (type {}, stream {}): {}", c.conn_.peer_ip,
                           c.conn_.peer_port, static_cast<unsigned>(f->hd.type), f->hd.stream_id,
                           nghttp2_strerror(error));
    return 0;
  }

  // Response DATA: hand nghttp2 a length only (NO_COPY); cb_send_data copies the bytes once,
  // straight from the stream's queue into the write buffer.
  static ssize_t cb_data_read(nghttp2_session* session, int32_t id, uint8_t*, size_t length,
                              uint32_t* flags, nghttp2_data_source* source, void*) {
    auto& st = *static_cast<H2Stream*>(source->ptr);
    size_t avail = st.out_.size();
    if (avail == 0 && !st.out_eof_) {
      st.deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = std::min(length, avail);
    *flags |= static_cast<uint32_t>(NGHTTP2_DATA_FLAG_NO_COPY);
    if (st.out_eof_ && n == avail) {
      *flags |= static_cast<uint32_t>(NGHTTP2_DATA_FLAG_EOF);
      if (!st.trailers_out_.empty()) {
        const nghttp2_nv* nva = st.trailers_out_.build();
        if (nghttp2_submit_trailer(session, id, nva, st.trailers_out_.size()) == 0)
          *flags |= static_cast<uint32_t>(NGHTTP2_DATA_FLAG_NO_END_STREAM);
      }
    }
    return static_cast<ssize_t>(n);
  }

  static int cb_send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                          size_t length, nghttp2_data_source* source, void* ud) {
    auto& c = *static_cast<Core*>(ud);
    auto& st = *static_cast<H2Stream*>(source->ptr);
    auto in = st.out_.data();
    if (length > in.size())
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    try {
      c.out_.insert(c.out_.end(), framehd, framehd + 9);
      size_t pad = frame->data.padlen;
      if (pad > 0)
        c.out_.push_back(static_cast<uint8_t>(pad - 1));
      const auto* p = static_cast<const uint8_t*>(in.data());
      c.out_.insert(c.out_.end(), p, p + length);
      if (pad > 1)
        c.out_.insert(c.out_.end(), pad - 1, uint8_t{0});
    } catch (const std::exception&) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    st.out_.consume(length);
    c.queued_ -= length;
    st.sent_total_ += length;
    st.write_wait_.notify();
    return 0;
  }

  // (The clock is read only for the frames counted: not for each HEADERS with a request.)
  int on_begin_frame(const nghttp2_frame_hd& hd) {
    bool ack = (hd.flags & NGHTTP2_FLAG_ACK) != 0;
    switch (hd.type) {
    case NGHTTP2_SETTINGS:
      if (!ack && settings_.add(Clock::now(), kFloodWindow, kMaxSettingsPerWindow))
        terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                  fmt::format("SETTINGS flood (more than {} per second)", kMaxSettingsPerWindow));
      break;
    case NGHTTP2_PING:
      if (!ack && pings_.add(Clock::now(), kFloodWindow, kMaxPingsPerWindow))
        terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                  fmt::format("PING flood (more than {} per second)", kMaxPingsPerWindow));
      break;
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
    case NGHTTP2_CONTINUATION:
      if (hd.length == 0 && (hd.flags & NGHTTP2_FLAG_END_STREAM) == 0 &&
          empty_frames_.add(Clock::now(), kAbuseWindow, kMaxEmptyFrames))
        terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                  fmt::format("empty frame flood (more than {} zero-length DATA/HEADERS/"
                              "CONTINUATION frames within {}s)",
                              kMaxEmptyFrames, kAbuseWindow.count()));
      break;
    default:
      break;
    }
    return 0;
  }

  int on_begin_headers(const nghttp2_frame& f) {
    if (f.hd.type != NGHTTP2_HEADERS)
      return 0;
    int32_t id = f.hd.stream_id;
    H2Stream* st = nullptr;
    if (f.headers.cat == NGHTTP2_HCAT_REQUEST) {
      auto sp = std::allocate_shared<H2Stream>(SmallAllocator<H2Stream>(), *this, id, ex_);
      st = sp.get();
      streams_[id] = std::move(sp);
    } else if ((st = find(id)) != nullptr) {
      st->header_bytes_ = 0; // trailer fields get their own budget
      st->header_count_ = 0;
    } else {
      return 0;
    }
    header_stream_ = id;
    header_st_ = st;
    header_start_ = {}; // feed() starts the clock if the block is still open after the read
    return 0;
  }

  int on_header(const nghttp2_frame& f, std::string_view name, std::string_view value) {
    if (f.hd.type != NGHTTP2_HEADERS)
      return 0;
    H2Stream* st = f.hd.stream_id == header_stream_ ? header_st_ : find(f.hd.stream_id);
    if (st == nullptr || st->oversized_)
      return 0; // an oversized block is still decoded (HPACK state), but not stored
    bool trailer = f.headers.cat != NGHTTP2_HCAT_REQUEST;
    // RFC 9113 6.5.2: the size of a field is its name, its value and 32.
    st->header_bytes_ += name.size() + value.size() + 32;
    bool crumb = name == "cookie" && !st->cookie_.empty();
    if (!name.starts_with(':') && !crumb)
      ++st->header_count_;
    if (st->header_bytes_ > limits_.max_header_bytes || st->header_count_ > limits_.max_headers) {
      st->oversized_ = true;
      if (++oversized_blocks_ > kMaxOversizedBlocks) {
        terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                  fmt::format("{} header blocks over limits.max-header-bytes ({}) or "
                              "limits.max-headers ({})",
                              oversized_blocks_, limits_.max_header_bytes, limits_.max_headers));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
      if (trailer) {
        reset_stream(*st, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
      return 0; // answered 431 once the block ends
    }
    if (trailer) {
      st->trailers_in_.insert(name, value);
      st->has_trailers_ = true;
      return 0;
    }
    if (name.starts_with(':')) {
      // (nghttp2 let through only the pseudo-header fields a request may have, once each.)
      if (name == ":method")
        st->method_ = value;
      else if (name == ":path")
        st->path_ = value;
      else if (name == ":scheme")
        st->scheme_ = value;
      else if (name == ":authority")
        st->authority_ = value;
      return 0;
    }
    if (name == "cookie") {
      // RFC 9113 8.2.3: crumbs are joined with "; " for HTTP/1.1.
      if (!st->cookie_.empty())
        st->cookie_ += "; ";
      st->cookie_ += value;
      return 0;
    }
    auto id = field_code(name);
    switch (id) {
    case bhttp::field::host:
      st->has_host_ = true;
      break;
    case bhttp::field::expect:
      st->has_expect_ = true;
      break;
    case bhttp::field::te: // (nghttp2 refused the other connection-specific fields)
    case bhttp::field::trailer:
      st->hop_by_hop_ = true;
      break;
    default:
      if (name.starts_with("proxy-")) // (names arrive in lower case: nghttp2 checked)
        st->hop_by_hop_ = true;
      break;
    }
    st->msg_.insert(id, name, value);
    return 0;
  }

  int on_frame_recv(const nghttp2_frame& f) {
    int32_t id = f.hd.stream_id;
    bool end_stream = (f.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (f.hd.type) {
    case NGHTTP2_DATA:
      if (auto* st = find(id); st != nullptr && end_stream) {
        st->in_eof_ = true;
        st->read_wait_.notify();
      }
      break;
    case NGHTTP2_HEADERS: {
      if (header_stream_ == id)
        header_stream_ = 0;
      auto it = streams_.find(id);
      if (it == streams_.end())
        break;
      if (f.headers.cat == NGHTTP2_HCAT_REQUEST) {
        start_stream(it->second, end_stream);
      } else {
        it->second->in_eof_ = it->second->in_eof_ || end_stream;
        it->second->read_wait_.notify();
      }
      break;
    }
    case NGHTTP2_RST_STREAM:
      if (auto* st = find(id); st != nullptr && !st->response_submitted_ &&
                               early_resets_.add(Clock::now(), kAbuseWindow, kMaxEarlyResets))
        terminate(NGHTTP2_ENHANCE_YOUR_CALM,
                  fmt::format("rapid reset (more than {} streams reset before their response "
                              "within {}s)",
                              kMaxEarlyResets, kAbuseWindow.count()));
      break;
    default:
      break;
    }
    return 0;
  }

  // The request head is complete: check it, build the HTTP/1.1-shaped message, start the
  // stream's coroutine.
  void start_stream(const std::shared_ptr<H2Stream>& sp, bool end_stream) {
    H2Stream& st = *sp;
    st.in_eof_ = end_stream;
    if (terminating_ || dead_) {
      reset_stream(st, NGHTTP2_REFUSED_STREAM);
      return;
    }
    // A stream's coroutine may outlive the stream (it winds down after a reset); never more of
    // them than twice the stream limit.
    if (live_handlers_ >= 2 * static_cast<size_t>(limits_.h2_max_concurrent_streams)) {
      reset_stream(st, NGHTTP2_REFUSED_STREAM);
      return;
    }
    const std::string_view method = st.method_, scheme = st.scheme_, path = st.path_;
    const std::string_view authority = st.authority_;
    bool connect = method == "CONNECT";
    // nghttp2 (HTTP messaging on) already refused missing, repeated or misplaced pseudo-header
    // fields and connection-specific fields; these are ours.
    bool malformed = method.empty() || (!connect && (scheme.empty() || path.empty()));
    if (!connect && !malformed) {
      malformed = (scheme != "http" && scheme != "https") ||
                  !(path.front() == '/' || (path == "*" && method == "OPTIONS")) ||
                  authority.find('@') != std::string_view::npos;
    }
    std::string_view host = authority;
    if (host.empty() && st.has_host_)
      host = st.msg_[bhttp::field::host];
    if (!connect && host.empty())
      malformed = true;
    if (malformed) {
      reset_stream(st, NGHTTP2_PROTOCOL_ERROR);
      return;
    }

    st.service_ = &choose_service(services_, host, conn_.sni);
    st.max_body_ = st.service_->plan->cfg->limits.max_body;
    auto& msg = st.msg_;
    auto& req = st.req_;
    req.msg = &msg;
    req.version = 20;
    req.method = method;
    req.target = connect ? authority : path;
    auto qmark = path.find('?');
    req.path = path.substr(0, qmark);
    if (qmark != std::string_view::npos)
      req.query = path.substr(qmark + 1);
    req.host = host;
    req.head = method == "HEAD";
    // (req.start was set when the stream's HEADERS began: H2Stream is made then.)

    std::optional<uint64_t> length;
    if (auto cl = msg.find(bhttp::field::content_length); cl != msg.end()) {
      uint64_t v = 0;
      for (char c : cl->value())
        v = v * 10 + static_cast<uint64_t>(c - '0'); // digits only: nghttp2 checked it
      length = v;
    }
    req.has_body = !end_stream && length.value_or(1) > 0;
    req.content_length = length;
    req.expect_continue =
        req.has_body && st.has_expect_ && beast::iequals(msg[bhttp::field::expect], "100-continue");

    // The method, the target, the Cookie and the Host the message gets are views into the
    // stream's pseudo-header fields and cookie (which live as long as the message): no copies.
    msg.method_string(method);
    msg.adopt_target(req.target);
    msg.version(11);
    if (!st.cookie_.empty())
      msg.adopt(bhttp::field::cookie, bhttp::to_string(bhttp::field::cookie), st.cookie_);
    if (!authority.empty()) {
      if (st.has_host_)
        msg.erase(bhttp::field::host);
      msg.adopt(bhttp::field::host, bhttp::to_string(bhttp::field::host), authority);
    }
    if (st.hop_by_hop_) {
      req.te_trailers = beast::iequals(msg[bhttp::field::te], "trailers"); // gRPC sends it
      strip_hop_by_hop(msg);
    }
    if (st.has_expect_)
      msg.erase(bhttp::field::expect);
    // An HTTP/2 body without Content-Length goes upstream chunked.
    if (req.has_body && !length)
      msg.chunked(true);

    if (connect)
      st.preset_status_ = 405;
    else if (st.oversized_)
      st.preset_status_ = 431;
    else if (st.max_body_ > 0 && length && *length > st.max_body_)
      st.preset_status_ = 413;
    if (st.preset_status_ != 0)
      discard(st); // the body is not wanted

    ++live_handlers_;
    st.handler_running_ = true;
    ready_.push_back(sp); // started when feed() is done
  }

  // The stream's coroutine. It never throws, and it accounts for itself (handler_finished)
  // whatever happens, so that run() can wait for it.
  net::Task<void> run_handler(std::shared_ptr<H2Stream> sp) {
    H2Stream& st = *sp;
    bool invoked = false;
    try {
      if (!st.gone()) {
        invoked = true;
        if (st.preset_status_ != 0)
          co_await respond_error(*st.service_, conn_, st.req_, st, st.preset_status_);
        else
          co_await handle_request(worker_, *st.service_, conn_, st.req_, st, st);
      }
    } catch (const std::exception& e) {
      logger("http2")->error("{}:{}: stream {}: internal error: {}", conn_.peer_ip, conn_.peer_port,
                             st.id_, e.what());
    }
    // A stream reset before it reached handle_request leaves no access-log line (a rapid-reset
    // client gets no log amplification); one that ended without an answer is logged as 499,
    // nginx's "client closed request".
    if (invoked && !st.req_.logged) {
      if (st.req_.status == 0)
        st.req_.status = 499;
      log_request(*st.service_, conn_, st.req_);
    }
    handler_finished(st);
    // Nothing after this line may touch the connection: it may be gone once we return.
  }

  void handler_finished(H2Stream& st) {
    st.handler_running_ = false;
    if (!st.closed_ && !dead_) {
      if (!st.end_sent_ && !st.end_queued_)
        reset_stream(st, NGHTTP2_INTERNAL_ERROR); // the response did not complete
      else if (!st.in_eof_ && st.end_sent_)
        reset_stream(st, NGHTTP2_NO_ERROR); // RFC 9113 8.1: answered before the whole request
      else if (!st.in_eof_)
        st.reset_after_end_ = true; // (a reset now would overtake the response's last DATA)
    }
    discard(st);
    --live_handlers_;
    note_activity();
    wake_writer();
    if (live_handlers_ == 0)
      done_.notify();
  }

  int on_data_chunk(int32_t id, const uint8_t* data, size_t len) {
    H2Stream* st = find(id);
    if (st == nullptr || st->discard_) {
      consume(id, len);
      return 0;
    }
    st->in_total_ += len;
    if (st->max_body_ > 0 && st->in_total_ > st->max_body_) {
      st->too_large_ = true;
      consume(id, len);
      discard(*st);
      st->read_wait_.notify();
      return 0;
    }
    auto dst = st->in_.prepare(len);
    asio::buffer_copy(dst, asio::buffer(data, len));
    st->in_.commit(len);
    st->read_wait_.notify();
    return 0;
  }

  int on_stream_close(int32_t id, uint32_t code) {
    auto it = streams_.find(id);
    if (it == streams_.end())
      return 0;
    std::shared_ptr<H2Stream> st = std::move(it->second);
    streams_.erase(it);
    if (header_stream_ == id)
      header_stream_ = 0;
    st->closed_ = true;
    st->discard_ = true;
    queued_ -= st->out_.size();
    if (st->end_queued_ && !st->end_sent_)
      --queued_ends_;
    // What the handler never took still counts against the connection window.
    if (st->in_.size() > 0) {
      nghttp2_session_consume_connection(session_, st->in_.size());
      st->in_.consume(st->in_.size());
    }
    st->read_wait_.notify();
    st->write_wait_.notify();
    if (st->handler_running_ && !st->end_sent_)
      logger("http2")->debug("{}:{}: stream {} closed ({}) while in progress", conn_.peer_ip,
                             conn_.peer_port, id, nghttp2_http2_strerror(code));
    note_activity();
    return 0;
  }

  int on_frame_send(const nghttp2_frame& f) {
    switch (f.hd.type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
      if ((f.hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        if (auto* st = find(f.hd.stream_id)) {
          st->end_sent_ = true;
          if (st->end_queued_)
            --queued_ends_;
          if (st->reset_after_end_ && !st->in_eof_) // (else the stream closes now)
            reset_stream(*st, NGHTTP2_NO_ERROR);
          st->write_wait_.notify();
        }
      }
      break;
    case NGHTTP2_GOAWAY:
      if (f.goaway.error_code != NGHTTP2_NO_ERROR) {
        // nghttp2's own verdicts (protocol errors, the reset rate limit); ours logged already.
        log_once(spdlog::level::info, "GOAWAY {}{}{}", nghttp2_http2_strerror(f.goaway.error_code),
                 f.goaway.opaque_data_len > 0 ? ": " : "",
                 as_view(f.goaway.opaque_data, f.goaway.opaque_data_len));
      }
      break;
    default:
      break;
    }
    return 0;
  }

protected:
  Worker& worker_;
  const std::vector<const WorkerService*>& services_;
  const ConnInfo& conn_;
  const config::LimitsConfig& limits_;
  net::Executor ex_;
  nghttp2_session* session_ = nullptr;
  size_t queued_ = 0;      // response bytes in the streams' queues (see sendable_now)
  size_t queued_ends_ = 0; // streams whose END_STREAM was promised and has not left
  std::unordered_map<int32_t, std::shared_ptr<H2Stream>, std::hash<int32_t>, std::equal_to<>,
                     SmallAllocator<std::pair<const int32_t, std::shared_ptr<H2Stream>>>>
      streams_;
  std::vector<std::shared_ptr<H2Stream>> ready_; // complete requests: see start_handlers()
  HeaderList head_scratch_; // response heads, built and submitted at once (no allocation)

  Notifier wake_;            // the writer
  Notifier tick_;            // the ticker
  Notifier done_;            // run(), waiting for the stream coroutines
  std::vector<uint8_t> out_; // frames on their way to the socket
  size_t live_handlers_ = 0;
  Clock::time_point last_active_ = Clock::now();
  int32_t header_stream_ = 0;     // the stream whose header block is arriving, or 0
  H2Stream* header_st_ = nullptr; // that stream (valid while header_stream_ names it: a closing
                                  // stream clears header_stream_)
  Clock::time_point header_start_{};

  bool dead_ = false;        // the transport is gone (or must not be used any more)
  bool terminating_ = false; // GOAWAY with an error queued; no more reading
  bool io_done_ = false;     // the writer finished
  bool drain_goaway_ = false;
  bool idle_goaway_ = false;
  bool logged_ = false;

  RateCounter settings_, pings_, early_resets_, empty_frames_;
  uint32_t oversized_blocks_ = 0;
};

// --- H2Stream ---------------------------------------------------------------------------------

bool H2Stream::gone() const {
  return closed_ || rst_sent_ || core_.dead();
}

size_t H2Stream::take_body(asio::mutable_buffer buf) {
  size_t n = asio::buffer_copy(buf, in_.data());
  in_.consume(n);
  // Only now may the client send more: the window never lets it buffer more in weir.
  core_.consume(id_, n);
  return n;
}

size_t H2Stream::read_now(asio::mutable_buffer buf, error_code& ec, unsigned& status) {
  ec = {};
  status = 0;
  if (too_large_ || gone() || discard_ || in_.size() == 0)
    return 0; // read() reports what is wrong
  return take_body(buf);
}

net::Task<size_t> H2Stream::read(asio::mutable_buffer buf, error_code& ec, unsigned& status) {
  ec = {};
  status = 0;
  for (;;) {
    if (too_large_) {
      ec = bhttp::error::body_limit;
      status = 413;
      co_return 0;
    }
    if (gone() || discard_) {
      ec = asio::error::connection_reset;
      co_return 0;
    }
    if (in_.size() > 0)
      co_return take_body(buf);
    if (in_eof_)
      co_return 0;
    auto deadline = Clock::now() + core_.body_timeout();
    co_await read_wait_.wait(deadline);
    if (Clock::now() >= deadline && in_.size() == 0 && !in_eof_ && !gone() && !discard_ &&
        !too_large_) {
      ec = asio::error::timed_out;
      status = 408;
      co_return 0;
    }
  }
}

net::Task<bool> H2Stream::send_continue() {
  if (gone())
    co_return false;
  if (!continue_sent_ && !response_submitted_) {
    continue_sent_ = true;
    co_return core_.submit_continue(*this);
  }
  co_return true;
}

bool H2Stream::head(ResponseMessage& res, bool body) {
  started_ = true;
  if (gone() || response_submitted_)
    return false;
  response_submitted_ = true;
  has_body_ = body;
  if (!body)
    out_eof_ = true;
  return core_.submit_response(*this, res, body);
}

void H2Stream::queue(asio::const_buffer chunk) {
  auto dst = out_.prepare(chunk.size());
  asio::buffer_copy(dst, chunk);
  out_.commit(chunk.size());
  core_.queued(chunk.size());
  core_.resume(*this);
}

net::Task<bool> H2Stream::data(asio::const_buffer chunk, bool /*more*/) {
  if (gone() || !has_body_ || out_eof_)
    co_return false;
  if (chunk.size() == 0)
    co_return true;
  queue(chunk);
  if (out_.size() < kStreamSendBuffer)
    co_return true; // (without wait_sent's frame)
  co_return co_await wait_sent(false);
}

// data() when the chunk leaves the queue under its bound, so nothing waits (the usual).
std::optional<bool> H2Stream::data_now(asio::const_buffer chunk) {
  if (gone() || !has_body_ || out_eof_)
    return false;
  if (out_.size() + chunk.size() >= kStreamSendBuffer)
    return std::nullopt;
  if (chunk.size() > 0)
    queue(chunk);
  return true;
}

bool H2Stream::end_response(const Fields* trailers) {
  if (gone() || !response_submitted_)
    return false;
  if (has_body_ && !out_eof_) {
    if (trailers != nullptr)
      trailers_out_.add_all(*trailers);
    out_eof_ = true;
    core_.resume(*this);
  }
  if (end_sent_)
    return true;
  if (core_.sendable_now(*this)) {
    core_.end_queued(*this);
    return true;
  }
  return false;
}

bool H2Stream::finish_now() {
  return end_response(nullptr);
}

net::Task<bool> H2Stream::finish(const Fields* trailers) {
  if (end_response(trailers))
    co_return true;
  if (gone() || !response_submitted_)
    co_return false;
  co_return co_await wait_sent(true);
}

net::Task<bool> H2Stream::wait_sent(bool to_end) {
  // send-timeout runs from the first wait, and again from each progress of the sending.
  Clock::time_point deadline = Clock::time_point::min();
  uint64_t seen = sent_total_;
  for (;;) {
    if (to_end ? end_sent_ : out_.size() < kStreamSendBuffer)
      co_return true;
    if (gone())
      co_return false;
    auto now = Clock::now();
    if (deadline == Clock::time_point::min() || sent_total_ != seen) {
      seen = sent_total_;
      deadline = now + core_.send_timeout();
    }
    if (now >= deadline) {
      core_.log_timeout(*this);
      core_.reset_stream(*this, NGHTTP2_CANCEL);
      co_return false;
    }
    co_await write_wait_.wait(deadline);
  }
}

// --- the transport ----------------------------------------------------------------------------

template <class Stream> class Connection final : public Core {
public:
  Connection(Worker& worker, const std::vector<const WorkerService*>& services,
             const ConnInfo& conn, Stream& stream)
      : Core(worker, services, conn), stream_(stream) {}
  ~Connection() = default;

  net::Task<void> run(beast::flat_buffer& initial) {
    if (!init()) {
      logger("http2")->error("{}:{}: cannot set up an HTTP/2 session", conn_.peer_ip,
                             conn_.peer_port);
      co_return;
    }
    if (initial.size() > 0) {
      auto d = initial.data();
      feed(static_cast<const uint8_t*>(d.data()), d.size());
      initial.consume(initial.size());
    }
    if (worker_.draining())
      on_drain();
    {
      using namespace boost::asio::experimental::awaitable_operators;
      co_await (reader() && writer() && ticker());
    }
    end_streams();
    co_await wait_handlers();
  }

private:
  auto& lowest() { return beast::get_lowest_layer(stream_); }

  // Any exception (allocation failure) in the reader, the writer or the ticker ends the
  // connection; none may escape, or run() would not wait for the stream coroutines.
  void fail_io(const std::exception& e) {
    log_once(spdlog::level::err, "internal error: {}; connection closed", e.what());
    dead_ = true;
    lowest().cancel();
    wake_writer();
    tick_.notify();
  }

  // Reads take their buffer from the worker's pool once bytes are there (net::PooledRead), and
  // give it back when nghttp2 has taken them: a connection waiting for its client holds none.
  net::Task<void> reader() {
    try {
      BufferPool& pool = worker_.buffers();
      BufferPool::Block block(nullptr, BufferPool::Deleter{&pool});
      while (!dead_ && !terminating_ && !io_done_ && nghttp2_session_want_read(session_) != 0) {
        lowest().expires_never();
        auto [ec, n] =
            co_await stream_.async_read_some(net::PooledRead(pool, block), net::use_task_nothrow);
        if (ec) {
          if (!io_done_ && !terminating_)
            logger("http2")->debug("{}:{}: connection closed: {}", conn_.peer_ip, conn_.peer_port,
                                   ec.message());
          dead_ = true;
          break;
        }
        feed(reinterpret_cast<const uint8_t*>(block.get()), n);
        block.reset();
        // The writer wakes for frames nghttp2 queued (a SETTINGS or PING acknowledgement, a
        // window update, DATA a WINDOW_UPDATE let go); the handlers wake it for their responses,
        // terminate() for GOAWAY. (Not after every read: that cost a turn of the writer per read.)
        if (nghttp2_session_want_write(session_) != 0)
          wake_writer();
      }
    } catch (const std::exception& e) {
      fail_io(e);
    }
    wake_writer();
    tick_.notify();
  }

  net::Task<void> writer() {
    try {
      co_await write_loop();
    } catch (const std::exception& e) {
      fail_io(e);
    }
    io_done_ = true;
    lowest().cancel(); // a pending read ends now
    tick_.notify();
  }

  net::Task<void> write_loop() {
    for (;;) {
      if (dead_ || !fill())
        break;
      if (out_.empty()) {
        if (!want_io())
          break; // GOAWAY went out and no stream is left
        if (queued_ends_ > 0)
          tick_.notify(); // held back by the client's windows (see end_queued)
        // A connection with nothing in progress keeps a small write buffer (tiny responses
        // reuse it without an allocation), not one that large responses grew.
        if (out_.capacity() > kIdleWriteBuffer && idle())
          std::vector<uint8_t>().swap(out_);
        co_await wake_.wait();
        continue;
      }
      std::chrono::milliseconds timeout = limits_.send_timeout;
      if (terminating_)
        timeout = std::min<std::chrono::milliseconds>(timeout, kGoawayFlushTimeout);
      lowest().expires_after(timeout);
      auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(out_), net::use_task_nothrow);
      out_.clear();
      if (ec) {
        if (ec == beast::error::timeout && !terminating_)
          log_once(spdlog::level::info, "the client read nothing for {}ms; connection closed",
                   timeout.count());
        dead_ = true;
        break;
      }
      if (out_.capacity() > 4 * kWriteBatch)
        std::vector<uint8_t>().swap(out_);
    }
  }

  Stream& stream_;
};

} // namespace

template <class Stream>
net::Task<void> serve_h2(Worker& worker, const std::vector<const WorkerService*>& services,
                         const ConnInfo& conn, Stream& stream, beast::flat_buffer& initial) {
  Connection<Stream> c(worker, services, conn, stream);
  co_await c.run(initial);
}

template net::Task<void>
serve_h2<net::TimedStream<asio::ip::tcp>>(Worker&, const std::vector<const WorkerService*>&,
                                          const ConnInfo&, net::TimedStream<asio::ip::tcp>&,
                                          beast::flat_buffer&);
template net::Task<void> serve_h2<net::TlsStream<net::TimedStream<asio::ip::tcp>>>(
    Worker&, const std::vector<const WorkerService*>&, const ConnInfo&,
    net::TlsStream<net::TimedStream<asio::ip::tcp>>&, beast::flat_buffer&);
template net::Task<void> serve_h2<net::TimedStream<asio::local::stream_protocol>>(
    Worker&, const std::vector<const WorkerService*>&, const ConnInfo&,
    net::TimedStream<asio::local::stream_protocol>&, beast::flat_buffer&);

} // namespace weir::core::http
