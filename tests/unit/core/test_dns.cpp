// The DNS answer parser behind dns_query: records of the asked type, compressed names, TXT
// strings, the SOA negative TTL, and malformed messages; host lookups through c-ares.
#include "core/net/dns.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using weir::core::net::DnsAnswer;
using weir::core::net::parse_dns_response;

namespace {

// A DNS message under construction (no compression unless a pointer is written by hand).
struct Msg {
  std::vector<unsigned char> b;
  void u16(unsigned v) {
    b.push_back(static_cast<unsigned char>(v >> 8));
    b.push_back(static_cast<unsigned char>(v));
  }
  void u32(uint32_t v) {
    u16(v >> 16);
    u16(v & 0xffff);
  }
  void name(const std::string& n) {
    size_t start = 0;
    while (start < n.size()) {
      size_t dot = n.find('.', start);
      if (dot == std::string::npos)
        dot = n.size();
      b.push_back(static_cast<unsigned char>(dot - start));
      b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    b.push_back(0);
  }
  void pointer(unsigned offset) { u16(0xc000 | offset); }
  // A record header; returns the position of rdlength to patch.
  size_t rr(const std::string& owner, unsigned type, uint32_t ttl) {
    name(owner);
    u16(type);
    u16(1);
    u32(ttl);
    size_t at = b.size();
    u16(0);
    return at;
  }
  void patch(size_t at) {
    size_t len = b.size() - at - 2;
    b[at] = static_cast<unsigned char>(len >> 8);
    b[at + 1] = static_cast<unsigned char>(len);
  }
};

Msg header(unsigned qd, unsigned an, unsigned ns) {
  Msg m;
  m.u16(0x1234);
  m.u16(0x8180);
  m.u16(qd);
  m.u16(an);
  m.u16(ns);
  m.u16(0);
  return m;
}

} // namespace

TEST_CASE("dns: SRV answers with compressed names, other types skipped") {
  Msg m = header(1, 3, 0);
  m.name("_http._tcp.Example.test");
  m.u16(33);
  m.u16(1);
  // SRV 10 60 8081 web1.example.test (the owner is a pointer to the question's name at 12)
  m.pointer(12);
  m.u16(33);
  m.u16(1);
  m.u32(30);
  size_t at = m.b.size();
  m.u16(0);
  m.u16(10);
  m.u16(60);
  m.u16(8081);
  m.name("WEB1.example.test");
  m.patch(at);
  // An A record (another type) is skipped.
  at = m.rr("web1.example.test", 1, 5);
  m.b.insert(m.b.end(), {127, 0, 0, 11});
  m.patch(at);
  // SRV 20 0 8082 with a target that points into the first record's target.
  m.pointer(12);
  m.u16(33);
  m.u16(1);
  m.u32(40);
  at = m.b.size();
  m.u16(0);
  m.u16(20);
  m.u16(0);
  m.u16(8082);
  m.name("web2.example.test");
  m.patch(at);

  DnsAnswer a;
  std::string error;
  REQUIRE(parse_dns_response(m.b.data(), m.b.size(), 33, a, error));
  REQUIRE(a.records.size() == 2);
  CHECK(a.records[0].name == "_http._tcp.example.test");
  CHECK(a.records[0].ttl == 30);
  CHECK(a.records[0].priority == 10);
  CHECK(a.records[0].weight == 60);
  CHECK(a.records[0].port == 8081);
  CHECK(a.records[0].target == "web1.example.test");
  CHECK(a.records[1].priority == 20);
  CHECK(a.records[1].port == 8082);
  CHECK(a.records[1].ttl == 40);
}

TEST_CASE("dns: A, AAAA and TXT") {
  Msg m = header(0, 3, 0);
  size_t at = m.rr("a.test", 1, 7);
  m.b.insert(m.b.end(), {10, 0, 0, 1});
  m.patch(at);
  at = m.rr("a.test", 28, 8);
  std::vector<unsigned char> v6(16, 0);
  v6[0] = 0x20;
  v6[1] = 0x01;
  v6[2] = 0x0d;
  v6[3] = 0xb8;
  v6[15] = 1;
  m.b.insert(m.b.end(), v6.begin(), v6.end());
  m.patch(at);
  at = m.rr("a.test", 16, 9);
  for (std::string s : {"weight=3", "", "path=/x"}) {
    m.b.push_back(static_cast<unsigned char>(s.size()));
    m.b.insert(m.b.end(), s.begin(), s.end());
  }
  m.patch(at);
  std::string error;
  DnsAnswer a4;
  REQUIRE(parse_dns_response(m.b.data(), m.b.size(), 1, a4, error));
  REQUIRE(a4.records.size() == 1);
  CHECK(a4.records[0].address == "10.0.0.1");
  DnsAnswer a6;
  REQUIRE(parse_dns_response(m.b.data(), m.b.size(), 28, a6, error));
  REQUIRE(a6.records.size() == 1);
  CHECK(a6.records[0].address == "2001:db8::1");
  DnsAnswer txt;
  REQUIRE(parse_dns_response(m.b.data(), m.b.size(), 16, txt, error));
  REQUIRE(txt.records.size() == 1);
  CHECK(txt.records[0].txt == std::vector<std::string>{"weight=3", "", "path=/x"});
}

TEST_CASE("dns: negative TTL from the authority SOA") {
  Msg m = header(0, 0, 1);
  size_t at = m.rr("example.test", 6, 300);
  m.name("ns1.example.test");
  m.name("hostmaster.example.test");
  m.u32(1);
  m.u32(3600);
  m.u32(600);
  m.u32(86400);
  m.u32(5); // minimum
  m.patch(at);
  DnsAnswer a;
  std::string error;
  REQUIRE(parse_dns_response(m.b.data(), m.b.size(), 1, a, error));
  CHECK(a.records.empty());
  CHECK(a.negative_ttl == 5);
}

TEST_CASE("dns: malformed messages are refused, never read past the end") {
  DnsAnswer a;
  std::string error;
  unsigned char tiny[5] = {1, 2, 3, 4, 5};
  CHECK_FALSE(parse_dns_response(tiny, sizeof tiny, 1, a, error));
  Msg m = header(0, 1, 0);
  size_t at = m.rr("a.test", 1, 7);
  m.b.insert(m.b.end(), {10, 0, 0, 1});
  m.patch(at);
  for (size_t cut = 12; cut < m.b.size(); ++cut) {
    DnsAnswer part;
    CHECK_FALSE(parse_dns_response(m.b.data(), cut, 1, part, error));
  }
  // A name pointer looping onto itself.
  Msg loop = header(0, 1, 0);
  loop.pointer(12);
  loop.u16(1);
  loop.u16(1);
  loop.u32(1);
  loop.u16(4);
  loop.b.insert(loop.b.end(), {1, 2, 3, 4});
  DnsAnswer l;
  CHECK_FALSE(parse_dns_response(loop.b.data(), loop.b.size(), 1, l, error));
  // A TXT string longer than its record is dropped, the message still parses.
  Msg t = header(0, 1, 0);
  at = t.rr("t.test", 16, 1);
  t.b.push_back(50);
  t.b.insert(t.b.end(), {'a', 'b'});
  t.patch(at);
  DnsAnswer bad_txt;
  REQUIRE(parse_dns_response(t.b.data(), t.b.size(), 16, bad_txt, error));
  CHECK(bad_txt.records.empty());
}

// --- DnsResolver::lookup_host (c-ares' getaddrinfo) ---------------------------------------------

namespace {

using weir::core::net::DnsResolver;
using weir::core::net::DnsSettings;

// Runs `ioc` until `done` or 5 s.
void run_until(boost::asio::io_context& ioc, const bool& done) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done && std::chrono::steady_clock::now() < until) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(20));
  }
}

// A UDP port on 127.0.0.1 that reads nothing and answers nothing (a DNS server that hangs).
struct SilentServer {
  boost::asio::io_context io;
  boost::asio::ip::udp::socket sock{
      io, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)};
  std::string address() const {
    return "127.0.0.1:" + std::to_string(sock.local_endpoint().port());
  }
};

} // namespace

namespace {

// Whether /etc/hosts names localhost (c-ares 1.18 has no built-in answer for it).
bool hosts_has_localhost() {
  std::ifstream in("/etc/hosts");
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string word;
    words >> word; // the address
    while (words >> word)
      if (word == "localhost")
        return true;
  }
  return false;
}

} // namespace

TEST_CASE("dns: lookup_host answers from /etc/hosts, never inside the call") {
  if (!hosts_has_localhost()) {
    MESSAGE("skipped: /etc/hosts does not name localhost");
    return;
  }
  boost::asio::io_context ioc;
  DnsResolver resolver(ioc, DnsSettings{});
  bool called = false;
  DnsAnswer answer;
  resolver.lookup_host("localhost", [&](DnsAnswer a) {
    called = true;
    answer = std::move(a);
  });
  CHECK_FALSE(called); // (c-ares answers from the hosts file at once; the callback is posted)
  run_until(ioc, called);
  REQUIRE(called);
  CHECK(answer.status == DnsAnswer::Status::ok);
  bool loopback = false;
  for (const auto& r : answer.records)
    loopback = loopback || r.address == "127.0.0.1" || r.address == "::1";
  CHECK(loopback);
}

TEST_CASE(
    "dns: lookup_host reports a refused server, and drops a pending lookup with the resolver") {
  boost::asio::io_context ioc;
  SUBCASE("refused") {
    // A port nobody listens on: an error (refused, or timed out when no ICMP error comes back).
    std::string closed;
    {
      SilentServer s;
      closed = s.address();
    }
    DnsSettings settings;
    settings.servers = {closed};
    settings.timeout = std::chrono::milliseconds(500);
    settings.tries = 1;
    DnsResolver resolver(ioc, settings);
    bool called = false;
    DnsAnswer answer;
    resolver.lookup_host("nothing.weir.test", [&](DnsAnswer a) {
      called = true;
      answer = std::move(a);
    });
    run_until(ioc, called);
    REQUIRE(called);
    CHECK(answer.status == DnsAnswer::Status::error);
    CHECK(answer.records.empty());
    CHECK_FALSE(answer.error.empty()); // ("timed out" here: no ICMP error reaches c-ares)
  }
  SUBCASE("pending when the resolver goes away") {
    SilentServer silent;
    DnsSettings settings;
    settings.servers = {silent.address()};
    settings.timeout = std::chrono::milliseconds(2000);
    bool called = false;
    {
      DnsResolver resolver(ioc, settings);
      resolver.lookup_host("nothing.weir.test", [&](DnsAnswer) { called = true; });
      ioc.run_for(std::chrono::milliseconds(100)); // the query is out, unanswered
    }
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(200));
    CHECK_FALSE(called);
  }
}

TEST_CASE("dns: first_address takes the best address, or says why there is none") {
  using weir::core::net::DnsRecord;
  using weir::core::net::first_address;
  std::string error;
  DnsAnswer ok;
  ok.status = DnsAnswer::Status::ok;
  DnsRecord six;
  six.address = "::1";
  DnsRecord four;
  four.address = "127.0.0.1";
  ok.records = {six, four};
  auto ip = first_address(ok, "app.test", error);
  REQUIRE(ip.has_value());
  CHECK(ip->to_string() == "::1");
  CHECK(error.empty());

  DnsAnswer empty;
  empty.status = DnsAnswer::Status::ok;
  CHECK_FALSE(first_address(empty, "app.test", error).has_value());
  CHECK(error == "cannot resolve \"app.test\": no address");

  DnsAnswer missing;
  missing.status = DnsAnswer::Status::not_found;
  missing.error = "no such name (NXDOMAIN)";
  CHECK_FALSE(first_address(missing, "gone.test", error).has_value());
  CHECK(error == "cannot resolve \"gone.test\": no such name (NXDOMAIN)");

  DnsAnswer garbled = ok;
  garbled.records.front().address = "not-an-ip";
  CHECK_FALSE(first_address(garbled, "app.test", error).has_value());
  CHECK(error == "cannot resolve \"app.test\": bad address \"not-an-ip\"");
}
