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

// A lot that records the connections it wakes.
struct Recording {
  boost::asio::io_context ioc;
  std::vector<ParkedConn> woken;
  ParkingLot lot{ioc, [this](ParkedConn&& c) { woken.push_back(std::move(c)); }};
  // The client sends a byte; the lot gets the time to wake its connection.
  void poke(int client) {
    REQUIRE(::send(client, "x", 1, 0) == 1);
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(50));
  }
};

} // namespace

TEST_CASE("parking: a client's bytes wake its connection with the record it was parked with") {
  Recording r;
  auto& [ioc, woken, lot] = r;
  auto fds = stream_pair();
  auto deadline = Clock::now() + std::chrono::seconds(60);
  ParkedConn proxied = record(fds[0]);
  proxied.deadline = deadline;
  proxied.has_addresses = true; // as after a PROXY protocol header
  proxied.peer.kind = weir::core::PackedAddress::Kind::v6;
  proxied.peer.bytes[15] = 7;
  proxied.peer.scope_id = 3;
  proxied.peer.port = 4242;
  proxied.local.kind = weir::core::PackedAddress::Kind::v4;
  proxied.local.port = 80;
  REQUIRE(lot.park(std::move(proxied)));
  CHECK(lot.size() == 1);
  ioc.run_for(std::chrono::milliseconds(20));
  CHECK(woken.empty()); // nothing sent yet

  REQUIRE(::send(fds[1], "GET", 3, 0) == 3);
  ioc.run_for(std::chrono::milliseconds(50));
  REQUIRE(woken.size() == 1);
  CHECK(woken[0].fd == fds[0]);
  CHECK(woken[0].unix_socket);
  CHECK(woken[0].has_addresses);
  CHECK(woken[0].peer.kind == weir::core::PackedAddress::Kind::v6);
  CHECK(woken[0].peer.bytes[15] == 7);
  CHECK(woken[0].peer.scope_id == 3);
  CHECK(woken[0].peer.port == 4242);
  CHECK(woken[0].local.kind == weir::core::PackedAddress::Kind::v4);
  CHECK(woken[0].local.port == 80);
  // The deadline comes back to the millisecond, never earlier.
  CHECK(woken[0].deadline >= deadline);
  CHECK(woken[0].deadline - deadline < std::chrono::milliseconds(1));
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

TEST_CASE("parking: without PROXY addresses a record keeps none, and the slots stay small") {
  Recording r;
  auto& [ioc, woken, lot] = r;
  auto fds = stream_pair();
  ParkedConn c = record(fds[0]);
  c.unix_socket = false;
  c.v6_socket = true;
  REQUIRE(lot.park(std::move(c)));
  r.poke(fds[1]);
  REQUIRE(woken.size() == 1);
  CHECK_FALSE(woken[0].has_addresses);
  CHECK_FALSE(woken[0].unix_socket);
  CHECK(woken[0].v6_socket);
  CHECK(woken[0].peer.kind == weir::core::PackedAddress::Kind::none);
  CHECK(ParkingLot::kSlotBytes <= 20);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("parking: a deadline beyond kMaxParkedFor is cut to it") {
  Recording r;
  auto& [ioc, woken, lot] = r;
  auto fds = stream_pair();
  auto before = Clock::now();
  REQUIRE(lot.park(record(fds[0], std::chrono::hours(24 * 365))));
  CHECK(lot.expire(Clock::now() + std::chrono::hours(24)) == 0);
  r.poke(fds[1]);
  REQUIRE(woken.size() == 1);
  CHECK(woken[0].deadline <=
        Clock::now() + ParkingLot::kMaxParkedFor + std::chrono::milliseconds(1));
  CHECK(woken[0].deadline >= before + ParkingLot::kMaxParkedFor);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("parking: deadlines survive the move of the lot's epoch, and still expire") {
  // Slots keep deadlines in 32-bit milliseconds after an epoch that moves forward after 8 days.
  Recording r;
  auto fds = stream_pair();
  auto deadline = Clock::now() + std::chrono::hours(24 * 30);
  REQUIRE(r.lot.park(record(fds[0], deadline - Clock::now())));
  // A sweep 9 days on: nothing is due, and the epoch moves.
  CHECK(r.lot.expire(Clock::now() + std::chrono::hours(24 * 9)) == 0);
  r.poke(fds[1]);
  REQUIRE(r.woken.size() == 1);
  CHECK(r.woken[0].deadline >= deadline);
  CHECK(r.woken[0].deadline - deadline < std::chrono::milliseconds(2));
  // Parked again after the move: due at its deadline, not before.
  char b[4];
  CHECK(::recv(fds[0], b, sizeof b, 0) == 1);
  REQUIRE(r.lot.park(record(fds[0], deadline - Clock::now())));
  CHECK(r.lot.expire(deadline - std::chrono::seconds(1)) == 0);
  CHECK(r.lot.expire(deadline + std::chrono::milliseconds(2)) == 1);
  CHECK(closed_by_peer(fds[1]));
  ::close(fds[1]);
}

TEST_CASE("parking: a connection closed while awake and its number reused parks again") {
  // The lot keeps a woken connection in its epoll set (disabled) and re-arms it when it parks
  // again; when the connection was closed meanwhile, a new one may carry its number.
  boost::asio::io_context ioc;
  std::vector<int> woken;
  ParkingLot lot(ioc, [&](ParkedConn&& c) { woken.push_back(c.fd); });
  auto first = stream_pair();
  int number = first[0];
  REQUIRE(lot.park(record(first[0])));
  REQUIRE(::send(first[1], "x", 1, 0) == 1);
  ioc.run_for(std::chrono::milliseconds(50));
  REQUIRE(woken.size() == 1);
  // Awake, then parked again: woken again by the next bytes.
  char b[4];
  CHECK(::recv(first[0], b, sizeof b, 0) == 1);
  REQUIRE(lot.park(record(first[0])));
  REQUIRE(::send(first[1], "y", 1, 0) == 1);
  ioc.restart(); // it ran out of work when the lot was empty
  ioc.run_for(std::chrono::milliseconds(50));
  REQUIRE(woken.size() == 2);
  // Closed by its owner while awake; a new connection gets the same number.
  ::close(first[0]);
  ::close(first[1]);
  auto second = stream_pair();
  int renumbered = second[0] == number ? -1 : ::dup2(second[0], number);
  if (renumbered >= 0) {
    ::close(second[0]);
    second[0] = number;
  }
  REQUIRE(second[0] == number);
  REQUIRE(lot.park(record(second[0])));
  ioc.restart();
  ioc.run_for(std::chrono::milliseconds(20));
  CHECK(woken.size() == 2);
  REQUIRE(::send(second[1], "z", 1, 0) == 1);
  ioc.run_for(std::chrono::milliseconds(50));
  REQUIRE(woken.size() == 3);
  CHECK(woken[2] == number);
  ::close(second[0]);
  ::close(second[1]);
}
