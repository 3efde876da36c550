// ParkingLot: a parked connection is handed back when its client sends something or closes,
// closed at its deadline or when the lot closes, and many at once are all woken.
#include "core/runtime/parking.hpp"

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <utility>
#include <vector>

using weir::core::ParkedConn;
using weir::core::ParkingLot;
using Clock = std::chrono::steady_clock;

namespace {

// A connected pair: [0] is parked (weir's end), [1] is the client.
std::array<int, 2> stream_pair() {
  std::array<int, 2> fds{-1, -1};
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds.data()) == 0);
  return fds;
}

ParkedConn record(int fd, Clock::duration left = std::chrono::seconds(60)) {
  ParkedConn c;
  c.fd = fd;
  c.unix_socket = true;
  c.deadline = Clock::now() + left;
  c.peer.port = 4242;
  return c;
}

// Whether the client sees its connection closed (EOF) within a short time.
bool closed_by_peer(int fd) {
  for (int i = 0; i < 200; ++i) {
    char b;
    ssize_t n = ::recv(fd, &b, 1, 0);
    if (n == 0)
      return true;
    ::usleep(1000);
  }
  return false;
}

} // namespace

TEST_CASE("parking: a client's bytes wake its connection with the record it was parked with") {
  boost::asio::io_context ioc;
  std::vector<ParkedConn> woken;
  ParkingLot lot(ioc, [&](ParkedConn&& c) { woken.push_back(std::move(c)); });
  auto fds = stream_pair();
  REQUIRE(lot.park(record(fds[0])));
  CHECK(lot.size() == 1);
  ioc.run_for(std::chrono::milliseconds(20));
  CHECK(woken.empty()); // nothing sent yet

  REQUIRE(::send(fds[1], "GET", 3, 0) == 3);
  ioc.run_for(std::chrono::milliseconds(50));
  REQUIRE(woken.size() == 1);
  CHECK(woken[0].fd == fds[0]);
  CHECK(woken[0].peer.port == 4242);
  CHECK(lot.size() == 0);
  char buf[8];
  CHECK(::recv(fds[0], buf, sizeof buf, 0) == 3); // still open: the callee owns it now
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("parking: a client that closes wakes its connection too") {
  boost::asio::io_context ioc;
  int woken_fd = -1;
  ParkingLot lot(ioc, [&](ParkedConn&& c) { woken_fd = c.fd; });
  auto fds = stream_pair();
  REQUIRE(lot.park(record(fds[0])));
  ::close(fds[1]);
  ioc.run_for(std::chrono::milliseconds(50));
  CHECK(woken_fd == fds[0]);
  ::close(fds[0]);
}

TEST_CASE("parking: expire closes what is past its deadline, and only that") {
  boost::asio::io_context ioc;
  int wakes = 0;
  ParkingLot lot(ioc, [&](ParkedConn&& c) {
    ++wakes;
    ::close(c.fd);
  });
  auto old_pair = stream_pair();
  auto new_pair = stream_pair();
  REQUIRE(lot.park(record(old_pair[0], std::chrono::milliseconds(-1))));
  REQUIRE(lot.park(record(new_pair[0])));
  CHECK(lot.expire(Clock::now()) == 1);
  CHECK(lot.size() == 1);
  CHECK(closed_by_peer(old_pair[1]));
  // The slot is reused; the kept connection still wakes.
  auto third = stream_pair();
  REQUIRE(lot.park(record(third[0])));
  REQUIRE(::send(new_pair[1], "x", 1, 0) == 1);
  ioc.run_for(std::chrono::milliseconds(50));
  CHECK(wakes == 1);
  CHECK(lot.size() == 1);
  ::close(old_pair[1]);
  ::close(new_pair[1]);
  ::close(third[1]);
}

TEST_CASE("parking: close_all closes every parked connection and refuses new ones") {
  boost::asio::io_context ioc;
  ParkingLot lot(ioc, [](ParkedConn&& c) { ::close(c.fd); });
  std::vector<std::array<int, 2>> pairs;
  for (int i = 0; i < 5; ++i) {
    pairs.push_back(stream_pair());
    REQUIRE(lot.park(record(pairs.back()[0])));
  }
  lot.close_all();
  CHECK(lot.size() == 0);
  for (auto& p : pairs) {
    CHECK(closed_by_peer(p[1]));
    ::close(p[1]);
  }
  auto late = stream_pair();
  CHECK_FALSE(lot.park(record(late[0])));
  CHECK(closed_by_peer(late[1]));
  ::close(late[1]);
  // Nothing is left waiting: the io_context runs out of work (and stops) at once.
  ioc.run_for(std::chrono::seconds(5));
  CHECK(ioc.stopped());
}

TEST_CASE("parking: more clients at once than one readiness batch are all woken") {
  boost::asio::io_context ioc;
  std::vector<int> woken;
  ParkingLot lot(ioc, [&](ParkedConn&& c) { woken.push_back(c.fd); });
  std::vector<std::array<int, 2>> pairs;
  for (int i = 0; i < 300; ++i) {
    pairs.push_back(stream_pair());
    REQUIRE(lot.park(record(pairs.back()[0])));
  }
  for (auto& p : pairs)
    REQUIRE(::send(p[1], "x", 1, 0) == 1);
  for (int i = 0; i < 20 && woken.size() < pairs.size(); ++i)
    ioc.run_for(std::chrono::milliseconds(20));
  CHECK(woken.size() == pairs.size());
  CHECK(lot.size() == 0);
  for (auto& p : pairs) {
    ::close(p[0]);
    ::close(p[1]);
  }
}

TEST_CASE("parking: a connection woken for nothing can be parked again from the callback") {
  boost::asio::io_context ioc;
  ParkingLot* self = nullptr;
  int wakes = 0;
  ParkingLot lot(ioc, [&](ParkedConn&& c) {
    ++wakes;
    char b[4];
    ssize_t n = ::recv(c.fd, b, sizeof b, 0); // consume: then nothing is left to read
    CHECK(n == 1);
    self->park(std::move(c));
  });
  self = &lot;
  auto fds = stream_pair();
  REQUIRE(lot.park(record(fds[0])));
  REQUIRE(::send(fds[1], "a", 1, 0) == 1);
  ioc.run_for(std::chrono::milliseconds(50));
  CHECK(wakes == 1);
  CHECK(lot.size() == 1);
  REQUIRE(::send(fds[1], "b", 1, 0) == 1);
  ioc.run_for(std::chrono::milliseconds(50));
  CHECK(wakes == 2);
  lot.close_all();
  CHECK(closed_by_peer(fds[1]));
  ::close(fds[1]);
}
