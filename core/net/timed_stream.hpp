// A stream socket with deadlines, for the request path: what beast::basic_stream offers
// (expires_after / expires_at / expires_never; an operation still pending at its deadline ends
// with beast::error::timeout and the socket is closed), at a fraction of its cost per operation.
//
// beast::basic_stream arms and cancels a timer around every read and write (two timer-queue
// operations, a handler allocation and executor work tracking each time). Here one timer per
// stream is armed lazily: moving a deadline later (the usual case: each request pushes its send
// or response timeout forward) changes a number, and the timer, when it fires before the
// deadline, simply waits again until it. Only an operation whose deadline is earlier than the
// timer's re-arms it. A keep-alive connection thus touches the timer queue about once per
// timeout period instead of several times per request.
//
// The rules are basic_stream's, which the callers were written against:
// - reads (and connect) and writes have a deadline each; expires_* sets the deadline of each
//   direction that has no operation pending, so a deadline set for a write while a read waits
//   (HTTP/2 reads and writes at once) does not limit that read;
// - a deadline counts against operations: when it passes while none is pending, the next
//   operation in that direction ends with beast::error::timeout at once.
//
// Unlike basic_stream, an armed timer outlives the operations: it keeps the io_context busy until
// it fires (at most the latest deadline set). A stream set aside for long must be destroyed,
// close()d or disarm()ed, or it holds up a worker's shutdown (see Conn::close, Session::park_out).
#pragma once

#include "core/net/executor.hpp"

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/beast/core/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>

namespace weir::core::net {

namespace detail {
// The completion handler of a TimedStream operation: counts it done and turns the error of an
// operation the deadline ended into beast::error::timeout.
template <class State, class Handler> struct TimedOp {
  std::shared_ptr<State> s;
  Handler handler;
  int dir; // State::kRead or State::kWrite
  template <class... Args> void operator()(boost::system::error_code ec, Args... args) {
    --s->pending[dir];
    if (s->timed_out && ec)
      ec = boost::beast::error::timeout;
    s.reset();
    std::move(handler)(ec, std::move(args)...);
  }
};
} // namespace detail

template <class Protocol> class TimedStream {
public:
  using Clock = std::chrono::steady_clock;
  using protocol_type = Protocol;
  using endpoint_type = typename Protocol::endpoint;
  using executor_type = Executor;
  using socket_type = boost::asio::basic_stream_socket<Protocol, executor_type>;
  using lowest_layer_type = socket_type; // for asio::ssl::stream

  explicit TimedStream(const executor_type& ex) : s_(std::make_shared<State>(socket_type(ex))) {}
  explicit TimedStream(socket_type&& sock) : s_(std::make_shared<State>(std::move(sock))) {}
  TimedStream(TimedStream&&) noexcept = default;
  TimedStream& operator=(TimedStream&& other) noexcept {
    if (this != &other) {
      shut();
      s_ = std::move(other.s_);
    }
    return *this;
  }
  TimedStream(const TimedStream&) = delete;
  TimedStream& operator=(const TimedStream&) = delete;
  // Closes the socket: pending operations end with operation_aborted (they keep the state
  // alive until then).
  ~TimedStream() { shut(); }

  executor_type get_executor() noexcept { return s_->socket.get_executor(); }
  socket_type& socket() noexcept { return s_->socket; }
  const socket_type& socket() const noexcept { return s_->socket; }
  lowest_layer_type& lowest_layer() noexcept { return s_->socket; }
  const lowest_layer_type& lowest_layer() const noexcept { return s_->socket; }

  // The deadline of the next read (connect) and the next write, and of each direction with no
  // operation pending now.
  void expires_at(Clock::time_point t) {
    State& s = *s_;
    if (s.pending[State::kRead] == 0)
      s.deadline[State::kRead] = t;
    if (s.pending[State::kWrite] == 0)
      s.deadline[State::kWrite] = t;
  }
  void expires_after(Clock::duration d) { expires_at(Clock::now() + d); }
  void expires_never() { expires_at(Clock::time_point::max()); }
  // The deadline of the next write only (when none is pending): for a writer whose connection
  // also has a reader that may be between two reads at this moment (HTTP/2 towards upstreams).
  void write_expires_after(Clock::duration d) { write_expires_at(Clock::now() + d); }
  void write_expires_never() { write_expires_at(Clock::time_point::max()); }
  void write_expires_at(Clock::time_point t) {
    State& s = *s_;
    if (s.pending[State::kWrite] == 0)
      s.deadline[State::kWrite] = t;
  }

  // No deadline, and the timer stops waiting (its queued wait is freed): for a stream about to
  // sit idle for long with no operation pending.
  void disarm() {
    State& s = *s_;
    s.deadline[State::kRead] = s.deadline[State::kWrite] = Clock::time_point::max();
    if (s.armed_at != Clock::time_point::max()) {
      s.armed_at = Clock::time_point::max();
      s.timer.cancel();
    }
  }

  // Whether a deadline closed the socket.
  bool timed_out() const noexcept { return s_->timed_out; }

  void cancel() {
    boost::system::error_code ec;
    s_->socket.cancel(ec);
  }
  void close() {
    boost::system::error_code ec;
    s_->socket.close(ec);
    s_->timer.cancel();
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          started(State::kRead);
          s_->socket.async_read_some(b, detail::TimedOp<State, std::decay_t<decltype(handler)>>{
                                            s_, std::move(handler), State::kRead});
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          started(State::kWrite);
          s_->socket.async_write_some(b, detail::TimedOp<State, std::decay_t<decltype(handler)>>{
                                             s_, std::move(handler), State::kWrite});
        },
        token, buffers);
  }

  template <class Token> auto async_connect(const endpoint_type& ep, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [this](auto handler, const endpoint_type& e) {
          started(State::kRead);
          s_->socket.async_connect(e, detail::TimedOp<State, std::decay_t<decltype(handler)>>{
                                          s_, std::move(handler), State::kRead});
        },
        token, ep);
  }

private:
  struct State {
    static constexpr int kRead = 0;
    static constexpr int kWrite = 1;
    explicit State(socket_type&& s) : socket(std::move(s)), timer(socket.get_executor()) {}
    socket_type socket;
    SteadyTimer timer;
    Clock::time_point deadline[2] = {Clock::time_point::max(), Clock::time_point::max()};
    Clock::time_point armed_at = Clock::time_point::max(); // the timer's wait ends; max: none
    unsigned pending[2] = {0, 0}; // operations started, not completed, per direction
    bool timed_out = false;
  };

  void started(int dir) {
    State& s = *s_;
    ++s.pending[dir];
    if (s.deadline[dir] < s.armed_at)
      arm(s_, s.deadline[dir]);
  }

  static void arm(const std::shared_ptr<State>& sp, Clock::time_point at) {
    State& s = *sp;
    s.armed_at = at;
    s.timer.expires_at(at); // an earlier wait ends with operation_aborted
    s.timer.async_wait(
        [w = std::weak_ptr<State>(sp)](boost::system::error_code ec) { fired(w, ec); });
  }

  static void fired(const std::weak_ptr<State>& w, boost::system::error_code ec) {
    if (ec == boost::asio::error::operation_aborted)
      return; // re-armed, or the stream is gone
    auto sp = w.lock();
    if (!sp)
      return;
    State& s = *sp;
    s.armed_at = Clock::time_point::max();
    // The earliest deadline of a pending operation; a direction with nothing pending re-arms
    // when its next operation starts.
    auto next = Clock::time_point::max();
    for (int dir : {State::kRead, State::kWrite})
      if (s.pending[dir] > 0)
        next = std::min(next, s.deadline[dir]);
    if (next == Clock::time_point::max())
      return;
    if (Clock::now() < next) {
      arm(sp, next); // the deadline moved later meanwhile
      return;
    }
    s.timed_out = true;
    boost::system::error_code ignored;
    s.socket.close(ignored);
  }

  void shut() {
    if (s_) {
      boost::system::error_code ec;
      s_->socket.close(ec);
      s_->timer.cancel();
    }
  }

  std::shared_ptr<State> s_;
};

} // namespace weir::core::net

// The wrapped handlers keep the caller's executor, allocator and cancellation slot.
template <template <typename, typename> class Associator, class State, class Handler,
          class DefaultCandidate>
struct boost::asio::associator<Associator, weir::core::net::detail::TimedOp<State, Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type
  get(const weir::core::net::detail::TimedOp<State, Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const weir::core::net::detail::TimedOp<State, Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
