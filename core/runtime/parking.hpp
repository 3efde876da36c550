// Parked idle client connections: a keep-alive connection that has been quiet for a while is
// reduced to its file descriptor and a 20-byte record, watched by an epoll set of the worker's
// own. Its session object, socket object, Asio reactor entry, timer and read
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
// The addresses are kept only when a PROXY protocol header replaced the socket's own; otherwise
// the woken session asks the socket again (one getpeername and one getsockname per wake, which
// comes after at least the parking delay of idle time).
struct ParkedConn {
  int fd = -1;
  bool unix_socket = false;   // an AF_UNIX stream socket, else TCP
  bool v6_socket = false;     // TCP: the socket's own family is AF_INET6
  bool has_addresses = false; // peer and local below hold the addresses the session used
  const WorkerListener* listener = nullptr;
  // keepalive-timeout: closed after it. The lot keeps it to the millisecond (rounded up) and at
  // most kMaxParkedFor ahead.
  std::chrono::steady_clock::time_point deadline;
  PackedAddress peer; // (has_addresses) as the session saw them, PROXY protocol applied
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

  // The longest a deadline can be ahead of the moment of parking (a longer one is cut to it).
  static constexpr std::chrono::hours kMaxParkedFor{24 * 40};

  // The bytes each parked connection costs in the lot's table (without PROXY addresses).
  static constexpr size_t kSlotBytes = 20;

private:
  static constexpr uint32_t kNone = ~uint32_t{0};
  // A parked connection as the table holds it: thousands of these are the whole cost of idle
  // keep-alive clients, so they are packed (see kSlotBytes).
  struct Slot {
    int fd = -1;                // -1: free
    uint32_t generation = 0;    // bumped when the slot is freed: stale epoll events are ignored
    uint32_t deadline_ms = 0;   // milliseconds after epoch_
    uint32_t addresses = kNone; // index in addresses_, or kNone
    uint16_t listener = 0;      // index in listeners_
    uint8_t flags = 0;          // kUnix, kV6
  };
  static constexpr uint8_t kUnix = 1, kV6 = 2;
  struct Addresses {
    PackedAddress peer, local;
  };
  void arm();
  void on_ready();
  // Forget the slot (its descriptor is closed or handed on) and its addresses.
  void release(uint32_t index);
  ParkedConn unpack(const Slot& slot) const;
  bool watch(int fd, uint64_t key); // add to the epoll set or re-arm; errno set when false
  void forget(int fd);              // fd is about to close

  std::chrono::steady_clock::time_point deadline_of(const Slot& slot) const {
    return epoch_ + std::chrono::milliseconds(slot.deadline_ms);
  }

  Wake wake_;
  std::chrono::steady_clock::time_point epoch_;
  std::vector<const WorkerListener*> listeners_; // the few listeners of the worker, by first use
  std::vector<Addresses> addresses_;             // PROXY protocol addresses, for the slots' use
  std::vector<uint32_t> free_addresses_;
  std::vector<bool> registered_; // by descriptor: (probably) in the epoll set, maybe disabled
  int epoll_fd_ = -1;
  boost::asio::posix::stream_descriptor watcher_;
  bool armed_ = false;
  bool closed_ = false;
  std::vector<Slot> slots_;
  static_assert(sizeof(Slot) == kSlotBytes);
  std::vector<uint32_t> free_;
  size_t count_ = 0;
};

} // namespace weir::core
