// TLS on weir's connections (clients', and upstreams' over TLS): OpenSSL reads and writes the
// socket through a BIO of ours, with buffers that exist only while bytes are in them.
//
// Asio's ssl::stream keeps, per connection and for its whole life, two 17 KiB buffers of its
// own and a BIO pair with two more (about 68 KiB), and copies every byte through them: an idle
// keep-alive TLS connection cost 77 KiB in weir against nginx's 14. Here:
// - a receive takes a 64 KiB block from the worker's BufferPool only once bytes are there
//   (PooledRead, below: the block is taken inside the reactor's receive, and given back when it
//   would block), and OpenSSL reads its records out of that block; the block goes back to the
//   pool as soon as OpenSSL has taken the last byte of it;
// - what OpenSSL writes during one call (a response's records, a handshake flight) is gathered
//   in a block and sent with one send() when the call returns; the block goes back once it is
//   sent. Only a socket that is full keeps it (the write waits for the rest, under the stream's
//   write deadline);
// - OpenSSL's own record buffers (about 17 KiB each way) are freed once the connection has made
//   no call into OpenSSL for a while (TlsQuietList, swept by the worker: 10 to 50 ms), whatever
//   it waits for (the next request, a slow upstream, a tunnel's next bytes), not between records
//   as SSL_MODE_RELEASE_BUFFERS would (about 1,000 instructions and two allocations per
//   request). On a thread without a list (the control thread) that mode is used instead.
// An idle connection then holds its SSL object and nothing else here.
//
// Per call into OpenSSL: its error queue is emptied only when it holds something (ERR_clear_error
// frees all 16 slots every time); a read with nothing buffered anywhere waits for the socket
// before it calls OpenSSL (TlsCore::must_receive).
//
// The operations are those weir's sessions use: a handshake, read_some, write_some and shutdown,
// as Asio asynchronous operations (any completion token). One read and one write may run at the
// same time (HTTP/2's reader and writer), as with Asio's stream. Errors are Asio's: eof after
// the peer's close_notify, ssl::error::stream_truncated when the connection ended without it,
// and OpenSSL's errors in Asio's ssl category.
//
// Output that OpenSSL produces while reading (a TLS 1.3 KeyUpdate answer) is sent at once; in
// the rare case that the socket is full then, it stays in a block until the next write or read
// sends it (a read cannot wait for it: a write may be sending at the same time).
#pragma once

#include "core/net/drained_read.hpp" // raw_recv, send_now
#include "core/runtime/buffer_pool.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp> // (the errors its operations end with)
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace weir::core::net {

class TlsCore;

// The TLS connections of one thread (a worker's) whose OpenSSL record buffers go back once they
// are quiet: sweep() frees the buffers of each connection that made no call into OpenSSL since
// the sweep before, so a busy connection keeps them and one that waits for anything gives them
// back after one to two periods of the sweep. A TlsCore joins the list of the thread it is made
// on (install()), and must be destroyed on that thread, before the list.
class TlsQuietList {
public:
  TlsQuietList() = default;
  TlsQuietList(const TlsQuietList&) = delete;
  TlsQuietList& operator=(const TlsQuietList&) = delete;
  ~TlsQuietList();

  // This list takes the TlsCores made on the calling thread from now on.
  void install() noexcept;
  static TlsQuietList* current() noexcept;
  void add(TlsCore* c);
  void remove(TlsCore* c) noexcept;
  struct Swept {
    std::size_t released = 0; // connections whose buffers went back
    std::size_t kept = 0;     // quiet, but OpenSSL refused: inside a record, or output waits
  };
  Swept sweep() noexcept;
  std::size_t size() const noexcept { return cores_.size(); }

private:
  std::vector<TlsCore*> cores_;
};

// What TlsStream keeps of a connection, without its transport and its operations (which are
// templates): the SSL object, the BIO's input and output, and the steps every operation takes.
class TlsCore {
public:
  TlsCore(SSL_CTX* ctx, BufferPool& pool);
  ~TlsCore();
  TlsCore(const TlsCore&) = delete;
  TlsCore& operator=(const TlsCore&) = delete;

  SSL* ssl() const noexcept { return ssl_; }
  // The socket's descriptor, given before each call into OpenSSL (-1 once the socket is closed,
  // as a deadline closes it: a descriptor number kept from before could belong to another
  // connection by then).
  void set_fd(int fd) noexcept { fd_ = fd; }
  BufferPool& pool() noexcept { return pool_; }

  // One call into OpenSSL: what the operation does next. With `flush`, the output OpenSSL
  // wrote is not all sent yet (the socket is full): it is sent first (flush_buffer(), flushed()).
  enum class Next {
    done, // finished: `ec` and `n` are its result
    read, // OpenSSL needs more bytes from the peer (read_into(), then the same call again)
  };
  struct Step {
    Next next = Next::done;
    bool flush = false;
    boost::system::error_code ec;
    std::size_t n = 0;
  };
  Step handshake(boost::asio::ssl::stream_base::handshake_type type);
  Step read(boost::asio::mutable_buffer b);
  // A read into a block from the pool, taken for the call into OpenSSL and kept only when it
  // brought bytes (they are at the start of *p.slot).
  Step read_pooled(const PooledRead& p);
  Step write(const boost::asio::const_buffer* bufs, std::size_t count);
  Step shutdown();

  // The receive for Next::read, and what it gave: `n` bytes in the input block, or an error
  // (end of file included). Returns the error an operation ends with, or {} to go on.
  PooledRead read_into() noexcept { return PooledRead(pool_, in_); }
  boost::system::error_code received(const boost::system::error_code& ec, std::size_t n);
  // The output still to be sent (Step::flush), and what the write of it sent.
  boost::asio::const_buffer flush_buffer() const noexcept {
    return {out_.get() + out_pos_, out_len_ - out_pos_};
  }
  void flushed(std::size_t n) noexcept;
  bool flushing() const noexcept { return flushing_; }
  void set_flushing(bool on) noexcept { flushing_ = on; }

  // Whether a read would only learn that it needs bytes from the peer: nothing received waits in
  // the input block, no output waits to be sent (a read would send it; not while a write is
  // sending it, which a read leaves alone), OpenSSL holds no record data,
  // no handshake is under way (a read could have output of its own then) and the peer's
  // close_notify has not come (a read ends at once then). A read operation then waits for the
  // socket first, without the call into OpenSSL that would fail (about 1,500 instructions).
  bool must_receive() const noexcept;

  // OpenSSL's record buffers (about 17 KiB each way) go back to the heap; OpenSSL takes new ones
  // at the next record (TlsQuietList calls it for a quiet connection). False, and nothing freed,
  // while OpenSSL is inside a record (part of one received, its header alone included, or record
  // data not yet read out) or output waits in its write buffer.
  bool release_buffers() noexcept;

  // The BIO's side (tls_stream.cpp).
  bool input_ended() const noexcept { return in_eof_ && in_pos_ == in_len_; }
  int bio_read(char* out, int len);
  int bio_write(const char* data, int len);

private:
  // A write gathers up to kGather bytes of small buffers into one record, and writes at most
  // kMaxWrite bytes (three records: they fit one block with their overhead).
  static constexpr std::size_t kGather = 16 * 1024;
  static constexpr std::size_t kMaxWrite = 48 * 1024;

  // After an OpenSSL call that returned `ret` (and `n` bytes): its output is sent, and the
  // Step says what next. `may_flush`: the operation may wait for output the socket did not take.
  Step finish(int ret, std::size_t n, bool may_flush);
  // Sends the output gathered so far; false when some of it is still there (the socket is full)
  // and no error occurred.
  bool send_out();
  // Makes sure out_ holds a block (false, with send_error_, when none can be had).
  bool have_out_block();
  void release_in() noexcept;
  void release_out() noexcept;
  // Every step calls into OpenSSL: the connection is busy (see TlsQuietList).
  void note_call() noexcept {
    called_ = true;
    released_ = false;
  }
  boost::system::error_code error_of(int ret);

  SSL* ssl_ = nullptr;
  int fd_ = -1;
  BufferPool& pool_;
  BufferPool::Block in_{nullptr, BufferPool::Deleter{nullptr}};
  std::size_t in_pos_ = 0, in_len_ = 0;
  bool in_eof_ = false;
  BufferPool::Block out_{nullptr, BufferPool::Deleter{nullptr}};
  std::size_t out_pos_ = 0, out_len_ = 0;
  bool flushing_ = false; // a write operation is sending out_ (nobody else sends meanwhile)
  boost::system::error_code send_error_;
  bool role_set_ = false; // SSL_set_accept_state or _connect_state was called
  // TlsQuietList's bookkeeping: a call into OpenSSL since its last sweep; the sweep asked OpenSSL
  // to release the buffers since the last call; the list (null: SSL_MODE_RELEASE_BUFFERS instead)
  // and the place in it.
  friend class TlsQuietList;
  bool called_ = false;
  bool released_ = true;
  TlsQuietList* quiet_ = nullptr;
  std::size_t quiet_slot_ = 0;
};

namespace detail {

// The operations: a Step, then a receive or a flush as it asks, until done. An operation that
// ends without waiting completes through a post, as Asio's own do (never inside its initiation).
// kCount: the operation completes with (error, bytes), else with the error only.
template <class Next, class Attempt, bool kCount> struct TlsOp {
  Next& next;
  TlsCore& core;
  Attempt attempt;
  bool reads = false; // a read: it may start with the receive (TlsCore::must_receive)
  enum class State { start, reading, flushing, posted } state = State::start;
  bool waited = false;
  TlsCore::Step result{};

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
    switch (state) {
    case State::start:
      if (reads && core.must_receive()) {
        result.next = TlsCore::Next::read;
        after_output(self);
        return;
      }
      break;
    case State::reading:
      if (auto e = core.received(ec, n)) {
        end(self, e, 0);
        return;
      }
      break;
    case State::flushing:
      core.flushed(n);
      if (!ec && core.flush_buffer().size() > 0) {
        flush(self);
        return;
      }
      core.set_flushing(false);
      if (ec) {
        end(self, ec, 0);
        return;
      }
      after_output(self);
      return;
    case State::posted:
      end(self, result.ec, result.n);
      return;
    }
    core.set_fd(next.socket().native_handle());
    result = attempt(core);
    if (result.flush) {
      core.set_flushing(true);
      flush(self);
      return;
    }
    after_output(self);
  }

  // The step's output is out: read, or end.
  template <class Self> void after_output(Self& self) {
    if (result.next == TlsCore::Next::read) {
      state = State::reading;
      waited = true;
      next.async_read_some(core.read_into(), std::move(self));
      return;
    }
    if (waited) {
      end(self, result.ec, result.n);
      return;
    }
    state = State::posted;
    boost::asio::post(std::move(self));
  }

  template <class Self>
  static void end(Self& self, const boost::system::error_code& ec, std::size_t n) {
    if constexpr (kCount)
      self.complete(ec, n);
    else
      self.complete(ec);
  }

  template <class Self> void flush(Self& self) {
    state = State::flushing;
    waited = true;
    boost::asio::async_write(next, core.flush_buffer(), std::move(self));
  }
};

} // namespace detail

template <class NextLayer> class TlsStream {
public:
  using next_layer_type = NextLayer;
  using lowest_layer_type = typename NextLayer::lowest_layer_type;
  using executor_type = typename NextLayer::executor_type;
  using native_handle_type = SSL*;

  template <class Arg>
  TlsStream(Arg&& arg, boost::asio::ssl::context& ctx, BufferPool& pool)
      : next_(std::forward<Arg>(arg)), core_(ctx.native_handle(), pool) {}
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  executor_type get_executor() noexcept { return next_.get_executor(); }
  next_layer_type& next_layer() noexcept { return next_; }
  const next_layer_type& next_layer() const noexcept { return next_; }
  native_handle_type native_handle() noexcept { return core_.ssl(); }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    return run<void(boost::system::error_code)>([type](TlsCore& c) { return c.handshake(type); },
                                                std::forward<Token>(token));
  }

  // With a PooledRead, the connection holds no buffer while it waits (see read_pooled).
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if constexpr (std::is_same_v<MutableBuffers, PooledRead>) {
      return run<void(boost::system::error_code, std::size_t)>(
          [p = buffers](TlsCore& c) { return c.read_pooled(p); }, std::forward<Token>(token), true);
    } else {
      return read_first(buffers, std::forward<Token>(token));
    }
  }

  // Up to 8 buffers are written in one call (OpenSSL makes records of them; they leave with
  // one send()).
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    struct Parts {
      boost::asio::const_buffer b[8];
      std::size_t count = 0;
    } parts;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && parts.count < 8; ++it)
      parts.b[parts.count++] = boost::asio::const_buffer(*it);
    return run<void(boost::system::error_code, std::size_t)>(
        [parts](TlsCore& c) { return c.write(parts.b, parts.count); }, std::forward<Token>(token));
  }

  // Sends close_notify (without waiting for the peer's).
  template <class Token> auto async_shutdown(Token&& token) {
    return run<void(boost::system::error_code)>([](TlsCore& c) { return c.shutdown(); },
                                                std::forward<Token>(token));
  }

private:
  // A read into the first buffer (as Asio's stream reads).
  template <class MutableBuffers, class Token>
  auto read_first(const MutableBuffers& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    if (boost::asio::buffer_sequence_begin(buffers) != boost::asio::buffer_sequence_end(buffers))
      first = *boost::asio::buffer_sequence_begin(buffers);
    return run<void(boost::system::error_code, std::size_t)>(
        [first](TlsCore& c) { return c.read(first); }, std::forward<Token>(token),
        first.size() > 0); // (an empty read completes at once)
  }

  template <class Signature, class Attempt, class Token>
  auto run(Attempt attempt, Token&& token, bool reads = false) {
    constexpr bool kCount = std::is_same_v<Signature, void(boost::system::error_code, std::size_t)>;
    return boost::asio::async_compose<Token, Signature>(
        detail::TlsOp<NextLayer, Attempt, kCount>{next_, core_, std::move(attempt), reads}, token,
        next_.get_executor());
  }

  NextLayer next_;
  TlsCore core_;
};

} // namespace weir::core::net
