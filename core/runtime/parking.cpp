#include "core/runtime/parking.hpp"

#include "core/runtime/logging.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace weir::core {

namespace asio = boost::asio;

namespace {

// At most this many readiness batches per wake-up of the watcher before the rest waits for the
// next turn of the event loop (the other connections of the worker come first).
constexpr int kMaxRounds = 8;
constexpr int kBatch = 64;

uint64_t event_key(uint32_t index, uint32_t generation) {
  return (static_cast<uint64_t>(generation) << 32) | index;
}

} // namespace

ParkingLot::ParkingLot(asio::io_context& ioc, Wake wake) : wake_(std::move(wake)), watcher_(ioc) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    logger("core")->warn("idle connections cannot be parked: epoll_create1: {}",
                         std::strerror(errno));
    closed_ = true;
    return;
  }
  boost::system::error_code ec;
  watcher_.assign(epoll_fd_, ec); // the watcher owns (and closes) the descriptor
  if (ec) {
    ::close(epoll_fd_);
    epoll_fd_ = -1;
    closed_ = true;
    logger("core")->warn("idle connections cannot be parked: {}", ec.message());
  }
}

ParkingLot::~ParkingLot() {
  close_all();
}

bool ParkingLot::park(ParkedConn&& c) {
  if (closed_) {
    ::close(c.fd);
    return false;
  }
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  epoll_event ev{};
  // Level-triggered: a request (or the client's close) that is already there wakes it at once.
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = event_key(index, slot.generation);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
    logger("core")->debug("parking a connection failed: epoll_ctl: {}", std::strerror(errno));
    ::close(c.fd);
    free_.push_back(index);
    return false;
  }
  slot.conn = std::move(c);
  ++count_;
  arm();
  return true;
}

void ParkingLot::release(uint32_t index) {
  Slot& slot = slots_[index];
  slot.conn.fd = -1;
  ++slot.generation; // an event already fetched for the old occupant is recognised as stale
  free_.push_back(index);
  --count_;
}

size_t ParkingLot::expire(std::chrono::steady_clock::time_point now) {
  size_t closed = 0;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.conn.fd >= 0 && slot.conn.deadline <= now) {
      ::close(slot.conn.fd); // also leaves the epoll set: the lot held its only descriptor
      release(i);
      ++closed;
    }
  }
  return closed;
}

void ParkingLot::close_all() {
  for (uint32_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].conn.fd >= 0) {
      ::close(slots_[i].conn.fd);
      release(i);
    }
  closed_ = true;
  boost::system::error_code ec;
  watcher_.close(ec); // cancels the wait
  epoll_fd_ = -1;
}

void ParkingLot::arm() {
  if (armed_ || closed_ || count_ == 0)
    return;
  armed_ = true;
  watcher_.async_wait(asio::posix::stream_descriptor::wait_read,
                      [this](boost::system::error_code ec) {
                        armed_ = false;
                        if (!ec)
                          on_ready();
                      });
}

void ParkingLot::on_ready() {
  std::array<epoll_event, kBatch> events;
  for (int round = 0; round < kMaxRounds && !closed_; ++round) {
    int n = ::epoll_wait(epoll_fd_, events.data(), kBatch, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (size_t k = 0; k < static_cast<size_t>(n) && !closed_; ++k) {
      auto index = static_cast<uint32_t>(events[k].data.u64 & 0xffffffffu);
      auto generation = static_cast<uint32_t>(events[k].data.u64 >> 32);
      if (index >= slots_.size() || slots_[index].generation != generation ||
          slots_[index].conn.fd < 0)
        continue; // closed (expired) since the event was fetched
      ParkedConn conn = slots_[index].conn;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, conn.fd, nullptr);
      release(index);
      wake_(std::move(conn)); // may park it again
    }
    if (n < kBatch)
      break;
  }
  // Waiting again re-arms the watcher's registration, so readiness left over (more than
  // kMaxRounds batches) is reported at once.
  arm();
}

} // namespace weir::core
