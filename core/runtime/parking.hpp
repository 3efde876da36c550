// Parked idle client connections: a keep-alive connection that has been quiet for a while is
// reduced to its file descriptor and a small record (ParkedConn, 80 bytes), watched by an epoll
// set of the worker's own. Its session object, socket object, Asio reactor entry, timer and read
// buffer are all gone until the client sends its next request; then the worker builds a session
// again from the record. This is what keeps thousands of idle keep-alive connections cheap (nginx
// does the same with its small connection structure; an Asio socket with a session around it
// costs kilobytes).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace weir::core {

struct WorkerListener;

// An address as a parked record keeps it: the bytes of an IPv4 or IPv6 address, or one of two
// words (for Unix socket peers and unknown addresses).
struct PackedAddress {
  enum class Kind : uint8_t { none, unix_socket, v4, v6 };
  std::array<unsigned char, 16> bytes{};
  uint32_t scope_id = 0; // IPv6 link-local addresses
  uint16_t port = 0;
  Kind kind = Kind::none;
};

// What a parked connection keeps: enough to serve its next request as if it had never left.
struct ParkedConn {
  int fd = -1;
  bool unix_socket = false; // an AF_UNIX stream socket, else TCP
  bool v6_socket = false;   // TCP: the socket's own family is AF_INET6
  const WorkerListener* listener = nullptr;
  std::chrono::steady_clock::time_point deadline; // keepalive-timeout: closed after it
  PackedAddress peer;                             // as the session saw it (PROXY protocol applied)
  PackedAddress local;
};

// The worker's parked connections. Only the worker's thread uses it.
class ParkingLot {
public:
  // Called with a connection whose client sent something (or closed it): the callee owns the
  // descriptor from then on.
  using Wake = std::function<void(ParkedConn&&)>;

  ParkingLot(boost::asio::io_context& ioc, Wake wake);
  ~ParkingLot(); // closes every parked connection
  ParkingLot(const ParkingLot&) = delete;
  ParkingLot& operator=(const ParkingLot&) = delete;

  // Park `c` (the lot owns its descriptor from then on). False when it could not be watched:
  // the descriptor is closed then.
  bool park(ParkedConn&& c);
  // Close every parked connection whose deadline is not after `now`. Returns how many.
  size_t expire(std::chrono::steady_clock::time_point now);
  // Close every parked connection and stop watching (the worker drains or stops).
  void close_all();
  size_t size() const { return count_; }

private:
  struct Slot {
    ParkedConn conn; // conn.fd < 0: free
    uint32_t generation = 0;
  };
  void arm();
  void on_ready();
  void release(uint32_t index); // forget the slot (its descriptor is closed or handed on)

  Wake wake_;
  int epoll_fd_ = -1;
  boost::asio::posix::stream_descriptor watcher_;
  bool armed_ = false;
  bool closed_ = false;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  size_t count_ = 0;
};

} // namespace weir::core
