// A receive that takes a short read as "the socket is drained", as nginx and HAProxy do.
//
// Asio's reactor (epoll, edge-triggered) keeps one flag per socket and direction: whether the
// next operation should try the system call at once ("speculatively") or wait for the next
// readiness event. For reads, Asio clears that flag only when a read returns end of file. So
// after any successful read the next one is tried at once, even when the previous read took
// less than it asked for, which on a stream socket means the receive queue was empty. On a proxy
// that next read is nearly always the one that cannot succeed yet: the next request right after
// a response went out, or the upstream's response right after its request went out. Each such
// read is a recv() that returns EAGAIN: two per proxied HTTP/1.1 request when the peers take
// any time at all to answer (one client connection on loopback; any peer across a network),
// and 0.8 (tiny responses) to 1.2 (1 KiB bodies) under the benchmark's 64 busy connections.
//
// A read through a DrainedRead buffer reports a short read as "exhausted", which clears the
// flag; the next read then waits for the next edge. Data that arrives after the short read
// raises a new edge (the kernel wakes epoll for every arrival), and the reactor sets the flag
// again when it sees it, so no data is missed. A read that fills the whole buffer keeps the
// flag set: more may be waiting. Datagram sockets keep Asio's behaviour.
//
// What can be missed is an end of file that came with the data: a TCP receive that reaches the
// peer's FIN returns the data before it and consumes the FIN, only the next receive returns 0,
// and no further edge comes. (nginx learns of it from EPOLLRDHUP, which Asio neither registers
// nor passes to operations.) So the rule for a socket read through a DrainedRead:
// - the next read that waits for the start of the next message (a request, a response) may use
//   a DrainedRead too: an end of file missed there is caught elsewhere (a client's idle
//   connection parks after Worker::kParkAfter and the parking lot's registration reports it; an
//   upstream connection is checked when the pool hands it out again, or its next request is
//   answered with a reset);
// - any other read (the rest of a message, a tunnel) first calls recv_now(), which sees the end
//   of file, and waits only when recv_now() found the socket empty. One exception, for a
//   client's request: its reads after the first keep Asio's behaviour, so a request that a
//   half-close cut short ends at its header or body timeout rather than at once.
//
// The hook is an explicit specialization of Asio's receive operation for the DrainedRead buffer
// type only, so no other read in the program changes. PooledRead (below) hooks in the same way.
#pragma once

#include "core/runtime/buffer_pool.hpp"

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/reactive_socket_recv_op.hpp>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <new>

namespace weir::core::net {

// recv() and sendmsg() as plain system calls. glibc's wrappers are thread-cancellation points:
// in a program with threads each call switches asynchronous cancellation on and off around the
// system call, about 130 instructions per proxied request over its four calls. weir never
// cancels a thread. Same results and errno as the wrappers.
// (AddressSanitizer builds keep the wrappers, whose buffers it checks.)
#if defined(__SANITIZE_ADDRESS__)
inline ssize_t raw_recv(int fd, void* data, std::size_t size, int flags) {
  return ::recv(fd, data, size, flags);
}

inline ssize_t raw_sendmsg(int fd, const msghdr* msg, int flags) {
  return ::sendmsg(fd, msg, flags);
}
#else
inline ssize_t raw_recv(int fd, void* data, std::size_t size, int flags) {
  return ::syscall(SYS_recvfrom, fd, data, size, flags, nullptr, nullptr);
}

inline ssize_t raw_sendmsg(int fd, const msghdr* msg, int flags) {
  return ::syscall(SYS_sendmsg, fd, msg, flags);
}
#endif

// One receive as Asio's socket_ops::non_blocking_recv1 makes it, through raw_recv (the receive of
// DrainedRead's and PooledRead's operations): false when it would block; else true with the
// bytes read in `n`, and `ec` set on an error, or to eof when a stream socket returned 0.
[[gnu::always_inline]] inline bool recv_once(int fd, void* data, std::size_t size, int flags,
                                             bool stream, std::size_t& n,
                                             boost::system::error_code& ec) {
  ssize_t got = 0;
  for (;;) {
    got = raw_recv(fd, data, size, flags);
    if (got >= 0 || errno != EINTR)
      break;
  }
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return false;
  n = got > 0 ? static_cast<std::size_t>(got) : 0;
  if (got < 0)
    ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
  else if (got == 0 && stream)
    ec = boost::asio::error::eof;
  else
    ec = {};
  return true;
}

struct DrainedRead : boost::asio::mutable_buffer {
  DrainedRead() = default;
  explicit DrainedRead(const boost::asio::mutable_buffer& b) noexcept
      : boost::asio::mutable_buffer(b) {}
};

// One receive that does not wait, on a stream socket: true with the bytes read (n > 0), or with
// ec = eof (the peer closed) or another error; false when nothing is there yet.
inline bool recv_now(int fd, boost::asio::mutable_buffer b, std::size_t& n,
                     boost::system::error_code& ec) {
  n = 0;
  ssize_t got = raw_recv(fd, b.data(), b.size(), MSG_DONTWAIT);
  if (got > 0) {
    n = static_cast<std::size_t>(got);
    return true;
  }
  if (got == 0) {
    ec = boost::asio::error::eof;
    return true;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
    return false;
  ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
  return true;
}

// One gathered send that does not wait, on a stream socket: the bytes the socket took now (all of
// them, some, or none when its send buffer is full). ec holds any error other than "would block".
// A response or request that fits the send buffer then leaves without an Asio operation, a
// deadline, or a turn of the event loop; the caller waits (async_write) only for a rest. With
// `more`, MSG_MORE: the caller sends more at once, or pushes what the socket holds back.
inline std::size_t send_now(int fd, const boost::asio::const_buffer* bufs, std::size_t count,
                            boost::system::error_code& ec, bool more = false) {
  constexpr std::size_t kMax = 8;
  iovec iov[kMax];
  std::size_t used = 0;
  for (std::size_t i = 0; i < count && used < kMax; ++i) {
    if (bufs[i].size() == 0)
      continue;
    iov[used].iov_base = const_cast<void*>(bufs[i].data());
    iov[used].iov_len = bufs[i].size();
    ++used;
  }
  if (used == 0)
    return 0;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = used;
  for (;;) {
    ssize_t sent = raw_sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    if (sent >= 0)
      return static_cast<std::size_t>(sent);
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      ec = boost::system::error_code(errno, boost::asio::error::get_system_category());
    return 0;
  }
}

// A receive into a block that a BufferPool lends only when the socket has bytes: the block is
// taken in the receive itself and given back at once when the receive would block, so a
// connection waiting for its peer holds no read buffer. The bytes read are at the start of
// *slot; on an error or end of file *slot is empty. (Unlike DrainedRead it keeps Asio's
// speculative reads.) Stream sockets only.
struct PooledRead : boost::asio::mutable_buffer {
  PooledRead(BufferPool& p, BufferPool::Block& s) noexcept
      : boost::asio::mutable_buffer(nullptr, BufferPool::kBlockSize), pool(&p), slot(&s) {}
  BufferPool* pool;
  BufferPool::Block* slot;
};

} // namespace weir::core::net

namespace boost::asio::detail {

template <> class reactive_socket_recv_op_base<weir::core::net::DrainedRead> : public reactor_op {
public:
  reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state,
                               const weir::core::net::DrainedRead& buffer,
                               socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket), state_(state), buffer_(buffer), flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
    if (!weir::core::net::recv_once(o->socket_, o->buffer_.data(), o->buffer_.size(), o->flags_,
                                    stream, o->bytes_transferred_, o->ec_))
      return not_done; // would block: wait for the next edge
    // A short read (end of file and errors included) emptied the receive queue.
    if (stream && (o->bytes_transferred_ == 0 || o->bytes_transferred_ < o->buffer_.size()))
      return done_and_exhausted;
    return done;
  }

private:
  socket_type socket_;
  socket_ops::state_type state_;
  weir::core::net::DrainedRead buffer_;
  socket_base::message_flags flags_;
};

// The receive of a PooledRead (net::recv_once), into a block taken from the pool for it.
template <> class reactive_socket_recv_op_base<weir::core::net::PooledRead> : public reactor_op {
public:
  reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                               socket_ops::state_type state,
                               const weir::core::net::PooledRead& buffer,
                               socket_base::message_flags flags, func_type complete_func)
      : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
        socket_(socket), state_(state), buffer_(buffer), flags_(flags) {}

  static status do_perform(reactor_op* base) {
    auto* o = static_cast<reactive_socket_recv_op_base*>(base);
    auto& slot = *o->buffer_.slot;
    if (!slot) {
      try {
        slot = o->buffer_.pool->block();
      } catch (const std::bad_alloc&) {
        o->ec_ = boost::asio::error::no_memory;
        o->bytes_transferred_ = 0;
        return done;
      }
    }
    bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
    if (!weir::core::net::recv_once(o->socket_, slot.get(), o->buffer_.size(), o->flags_, stream,
                                    o->bytes_transferred_, o->ec_)) {
      slot.reset(); // nothing there: the block goes back while the connection waits
      return not_done;
    }
    if (o->bytes_transferred_ == 0)
      slot.reset(); // (end of file or an error: nothing to keep)
    return done;
  }

private:
  socket_type socket_;
  socket_ops::state_type state_;
  weir::core::net::PooledRead buffer_;
  socket_base::message_flags flags_;
};

} // namespace boost::asio::detail
