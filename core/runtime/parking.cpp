#include "core/runtime/parking.hpp"

#include "core/runtime/logging.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
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

// Deadlines are kept in 32 bits of milliseconds after the lot's epoch, which moves forward
// (rebase) once it is this old: with kMaxParkedFor ahead at most, they always fit.
constexpr std::chrono::hours kRebaseAfter{24 * 8};
static_assert(std::chrono::milliseconds(ParkingLot::kMaxParkedFor + kRebaseAfter).count() <
              std::numeric_limits<uint32_t>::max());

} // namespace

ParkingLot::ParkingLot(asio::io_context& ioc, Wake wake)
    : wake_(std::move(wake)), epoch_(std::chrono::steady_clock::now()), watcher_(ioc) {
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
  auto known = std::find(listeners_.begin(), listeners_.end(), c.listener);
  if (closed_ || (known == listeners_.end() && listeners_.size() > 0xffff)) {
    ::close(c.fd); // (a slot numbers its listener in 16 bits)
    return false;
  }
  if (known == listeners_.end())
    known = listeners_.insert(known, c.listener);
  auto listener = static_cast<uint16_t>(known - listeners_.begin());
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[index];
  if (!watch(c.fd, event_key(index, slot.generation))) {
    logger("core")->debug("parking a connection failed: epoll_ctl: {}", std::strerror(errno));
    ::close(c.fd);
    free_.push_back(index);
    return false;
  }
  slot.fd = c.fd;
  slot.flags = static_cast<uint8_t>((c.unix_socket ? kUnix : 0) | (c.v6_socket ? kV6 : 0));
  auto deadline = std::min(c.deadline, std::chrono::steady_clock::now() + kMaxParkedFor);
  slot.deadline_ms =
      deadline <= epoch_
          ? 0
          : static_cast<uint32_t>(
                std::chrono::ceil<std::chrono::milliseconds>(deadline - epoch_).count());
  slot.listener = listener;
  slot.addresses = kNone;
  if (c.has_addresses) {
    if (!free_addresses_.empty()) {
      slot.addresses = free_addresses_.back();
      free_addresses_.pop_back();
      addresses_[slot.addresses] = {c.peer, c.local};
    } else {
      slot.addresses = static_cast<uint32_t>(addresses_.size());
      addresses_.push_back({c.peer, c.local});
    }
  }
  ++count_;
  arm();
  return true;
}

// Level-triggered: a request (or the client's close) that is already there wakes it at once.
// One-shot: the wake disables the registration instead of removing it, so that parking the same
// connection again is an EPOLL_CTL_MOD. (An EPOLL_CTL_ADD into this set, which Asio's reactor
// watches in turn, makes the kernel check the nesting of epoll sets under a global lock.)
bool ParkingLot::watch(int fd, uint64_t key) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.u64 = key;
  auto at = static_cast<size_t>(fd);
  if (at >= registered_.size())
    registered_.resize(std::max<size_t>(at + 1, registered_.size() * 2));
  // registered_ is a hint: a connection closed while awake (by its session) left the set without
  // the lot's knowing, and its number may belong to another connection now.
  int op = registered_[at] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  int r = ::epoll_ctl(epoll_fd_, op, fd, &ev);
  if (r != 0 && (errno == ENOENT || errno == EEXIST)) {
    op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    r = ::epoll_ctl(epoll_fd_, op, fd, &ev);
  }
  registered_[at] = r == 0;
  return r == 0;
}

void ParkingLot::forget(int fd) {
  if (static_cast<size_t>(fd) < registered_.size())
    registered_[static_cast<size_t>(fd)] = false;
}

ParkedConn ParkingLot::unpack(const Slot& slot) const {
  ParkedConn c;
  c.fd = slot.fd;
  c.unix_socket = (slot.flags & kUnix) != 0;
  c.v6_socket = (slot.flags & kV6) != 0;
  c.listener = listeners_[slot.listener];
  c.deadline = deadline_of(slot);
  if (slot.addresses != kNone) {
    c.has_addresses = true;
    c.peer = addresses_[slot.addresses].peer;
    c.local = addresses_[slot.addresses].local;
  }
  return c;
}

void ParkingLot::release(uint32_t index) {
  Slot& slot = slots_[index];
  slot.fd = -1;
  ++slot.generation; // an event already fetched for the old occupant is recognised as stale
  if (slot.addresses != kNone) {
    free_addresses_.push_back(slot.addresses);
    slot.addresses = kNone;
  }
  free_.push_back(index);
  --count_;
}

size_t ParkingLot::expire(std::chrono::steady_clock::time_point now) {
  size_t closed = 0;
  auto now_ms = std::chrono::floor<std::chrono::milliseconds>(now - epoch_).count();
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.fd >= 0 && slot.deadline_ms <= now_ms) {
      forget(slot.fd);
      ::close(slot.fd); // also leaves the epoll set: the lot held its only descriptor
      release(i);
      ++closed;
    }
  }
  if (now - epoch_ >= kRebaseAfter) {
    // Move the epoch forward: every deadline left is after now, so none goes below zero.
    auto shift = static_cast<uint32_t>(now_ms);
    for (Slot& slot : slots_)
      slot.deadline_ms = slot.fd >= 0 ? slot.deadline_ms - shift : 0;
    epoch_ += std::chrono::milliseconds(shift);
  }
  return closed;
}

void ParkingLot::close_all() {
  for (uint32_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].fd >= 0) {
      forget(slots_[i].fd);
      ::close(slots_[i].fd);
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
      if (index >= slots_.size() || slots_[index].generation != generation || slots_[index].fd < 0)
        continue;                              // closed (expired) since the event was fetched
      ParkedConn conn = unpack(slots_[index]); // (one-shot: the registration is disabled now)
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
