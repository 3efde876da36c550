#include "core/http/forwarded.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

using weir::config::CidrRange;
using weir::core::http::effective_client;

namespace {

std::vector<CidrRange> ranges(std::initializer_list<const char*> texts) {
  std::vector<CidrRange> out;
  for (const char* t : texts) {
    std::string error;
    auto r = CidrRange::parse(t, error);
    REQUIRE_MESSAGE(r.has_value(), error);
    out.push_back(*r);
  }
  return out;
}

const std::vector<CidrRange>& trusted() {
  static const auto r = ranges({"10.0.0.0/8", "192.168.0.0/16", "2001:db8:ffff::/48"});
  return r;
}

using Lines = std::vector<std::string_view>;

std::string xff(std::string_view peer, const Lines& lines) {
  return effective_client(peer, lines, {}, trusted());
}

std::string fwd(std::string_view peer, const Lines& lines, const Lines& x = {}) {
  return effective_client(peer, x, lines, trusted());
}

} // namespace

TEST_CASE("an untrusted peer is the client, whatever the headers say") {
  CHECK(xff("203.0.113.9", {"198.51.100.1"}) == "203.0.113.9");
  CHECK(fwd("203.0.113.9", {"for=198.51.100.1"}) == "203.0.113.9");
  CHECK(xff("2001:db8::9", {"198.51.100.1"}) == "2001:db8::9");
  // A peer that is not an address (a Unix socket) is not trusted either.
  CHECK(xff("/run/weir.sock", {"198.51.100.1"}) == "/run/weir.sock");
  CHECK(effective_client("10.0.0.1", {"198.51.100.1"}, {}, {}) == "10.0.0.1");
}

TEST_CASE("a trusted peer without headers is the client") {
  CHECK(xff("10.0.0.1", {}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {}) == "10.0.0.1");
  CHECK(xff("10.0.0.1", {""}) == "10.0.0.1");
  CHECK(xff("10.0.0.1", {" , ,"}) == "10.0.0.1");
}

TEST_CASE("X-Forwarded-For is walked from the right, skipping trusted hops") {
  CHECK(xff("10.0.0.1", {"198.51.100.7"}) == "198.51.100.7");
  CHECK(xff("10.0.0.1", {"198.51.100.7, 10.0.0.2"}) == "198.51.100.7");
  // What the client wrote itself (the left part) is not believed.
  CHECK(xff("10.0.0.1", {"6.6.6.6, 198.51.100.7, 192.168.1.1, 10.0.0.2"}) == "198.51.100.7");
  CHECK(xff("10.0.0.1", {"6.6.6.6,198.51.100.7"}) == "198.51.100.7");
  CHECK(xff("10.0.0.1", {"\t198.51.100.7 \t"}) == "198.51.100.7");
  // Empty list elements are skipped.
  CHECK(xff("10.0.0.1", {"198.51.100.7, , 10.0.0.2,"}) == "198.51.100.7");
}

TEST_CASE("several X-Forwarded-For lines are one list, in order") {
  CHECK(xff("10.0.0.1", {"198.51.100.1, 198.51.100.2", "10.0.0.2"}) == "198.51.100.2");
  CHECK(xff("10.0.0.1", {"203.0.113.5", "198.51.100.2, 10.0.0.3"}) == "198.51.100.2");
  CHECK(xff("10.0.0.1", {"203.0.113.5", "10.0.0.3", "10.0.0.4"}) == "203.0.113.5");
  CHECK(xff("10.0.0.1", {"203.0.113.5", "", "10.0.0.4"}) == "203.0.113.5");
}

TEST_CASE("when every hop is trusted the leftmost is the client") {
  CHECK(xff("10.0.0.1", {"10.0.0.5, 10.0.0.4"}) == "10.0.0.5");
  CHECK(xff("10.0.0.1", {"192.168.3.3", "10.0.0.4"}) == "192.168.3.3");
  CHECK(fwd("10.0.0.1", {"for=10.0.0.5, for=10.0.0.4"}) == "10.0.0.5");
}

TEST_CASE("ports and brackets are removed") {
  CHECK(xff("10.0.0.1", {"198.51.100.1:5678"}) == "198.51.100.1");
  CHECK(xff("10.0.0.1", {"[2001:db8::1]:443"}) == "2001:db8::1");
  CHECK(xff("10.0.0.1", {"[2001:db8::1]"}) == "2001:db8::1");
  CHECK(xff("10.0.0.1", {"2001:db8::1"}) == "2001:db8::1");
  CHECK(xff("10.0.0.1", {"198.51.100.1:0"}) == "198.51.100.1");
  CHECK(xff("10.0.0.1", {"198.51.100.1:65535"}) == "198.51.100.1");
  // Trusted hops with ports are still trusted.
  CHECK(xff("10.0.0.1", {"198.51.100.1, 10.0.0.2:1234, [2001:db8:ffff::1]:80"}) == "198.51.100.1");
  // Textual form is kept as written.
  CHECK(xff("10.0.0.1", {"2001:DB8::1"}) == "2001:DB8::1");
}

TEST_CASE("an element that is not an address stops the walk at the last trusted one") {
  CHECK(xff("10.0.0.1", {"198.51.100.1, unknown, 10.0.0.2"}) == "10.0.0.2");
  CHECK(xff("10.0.0.1", {"198.51.100.1, unknown"}) == "10.0.0.1");
  CHECK(xff("10.0.0.1", {"198.51.100.1, _hidden"}) == "10.0.0.1");
  CHECK(xff("10.0.0.1", {"198.51.100.1, example.com"}) == "10.0.0.1");
  const char* garbage[] = {
      "1.2.3.4:99999",    // port out of range
      "1.2.3.4:",         // empty port
      "1.2.3.4:80:80",    // two ports
      "1.2.3.4:+80",      // sign
      "[1.2.3.4]",        // brackets around IPv4
      "[1.2.3.4]:80",     // brackets around IPv4
      "[2001:db8::1",     // unclosed
      "[2001:db8::1]x",   // junk after the bracket
      "[2001:db8::1]:",   // empty port
      "1.2.3.4 5.6.7.8",  // a space inside
      "1.2.3",            // not an address
      "::ffff:1.2.3.4.5", // not an address
      "fe80::1%eth0",     // zone
      "\"198.51.100.9\"", // quotes mean nothing in X-Forwarded-For
      "198.51.100.9\x01", // control byte
  };
  for (const char* g : garbage) {
    INFO(g);
    CHECK(xff("10.0.0.1", {std::string("198.51.100.1, ") + g + ", 10.0.0.2"}) == "10.0.0.2");
  }
  // A stray quote from the client does not swallow what trusted proxies appended.
  CHECK(xff("10.0.0.1", {"\"6.6.6.6, 198.51.100.7, 10.0.0.2"}) == "198.51.100.7");
}

TEST_CASE("Forwarded wins over X-Forwarded-For when present") {
  CHECK(fwd("10.0.0.1", {"for=198.51.100.9"}, {"203.0.113.1"}) == "198.51.100.9");
  CHECK(effective_client("10.0.0.1", {"203.0.113.1"}, {}, trusted()) == "203.0.113.1");
  // Even when it has nothing usable: its element without for= stops the walk.
  CHECK(fwd("10.0.0.1", {"proto=https;by=10.0.0.1"}, {"203.0.113.1"}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {"for=unknown"}, {"203.0.113.1"}) == "10.0.0.1");
}

TEST_CASE("Forwarded syntax") {
  // RFC 7239 examples.
  CHECK(fwd("10.0.0.1", {"for=\"_gazonk\""}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {"For=\"[2001:db8:cafe::17]:4711\""}) == "2001:db8:cafe::17");
  CHECK(fwd("10.0.0.1", {"for=192.0.2.60;proto=http;by=203.0.113.43"}) == "192.0.2.60");
  CHECK(fwd("10.0.0.1", {"for=192.0.2.43, for=198.51.100.17"}) == "198.51.100.17");
  CHECK(fwd("10.0.0.1", {"for=192.0.2.43, for=10.0.0.17"}) == "192.0.2.43");
  // Parameter order, case, spacing, empty pairs.
  CHECK(fwd("10.0.0.1", {"proto=https; FOR=198.51.100.2 ;by=x"}) == "198.51.100.2");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.2;;proto=https;"}) == "198.51.100.2");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.2 ,\tfor=10.0.0.3 , "}) == "198.51.100.2");
  CHECK(fwd("10.0.0.1", {"fore=198.51.100.3;for=198.51.100.2"}) == "198.51.100.2");
  // Quoted IPv6 with and without a port; a quoted IPv4 with a port; an obfuscated port.
  CHECK(fwd("10.0.0.1", {"for=\"[2001:db8::1]\""}) == "2001:db8::1");
  CHECK(fwd("10.0.0.1", {"for=\"[2001:db8::1]:443\""}) == "2001:db8::1");
  CHECK(fwd("10.0.0.1", {"for=\"198.51.100.2:8080\""}) == "198.51.100.2");
  CHECK(fwd("10.0.0.1", {"for=\"[2001:db8::1]:_p0rt\""}) == "2001:db8::1");
  CHECK(fwd("10.0.0.1", {"for=\"198.51.100.2\""}) == "198.51.100.2");
  // Backslash escapes inside quotes.
  CHECK(fwd("10.0.0.1", {"for=\"\\[2001:db8::1\\]:44\\3\""}) == "2001:db8::1");
  // Separators inside a quoted-string are not separators.
  CHECK(fwd("10.0.0.1", {"for=198.51.100.3;note=\"a, for=10.0.0.9; by=\\\"x\""}) == "198.51.100.3");
  CHECK(fwd("10.0.0.1", {"for=\"a,b\", for=198.51.100.2"}) == "198.51.100.2");
  // Several lines make one list.
  CHECK(fwd("10.0.0.1", {"for=198.51.100.1", "for=198.51.100.2;proto=https", "for=10.0.0.2"}) ==
        "198.51.100.2");
}

TEST_CASE("malformed Forwarded elements stop the walk") {
  const char* bad[] = {
      "for=\"198.51.100.9\"x",        // junk after the quote
      "for=198.51.100.9;for=1.2.3.4", // for twice
      "for",                          // no value
      "for=198.51.100.9;proto",       // pair without '='
      "for=",                         // empty value
      "for=\"\"",                     // empty quoted value
      "by=198.51.100.9",              // no for
      "for=[2001:db8::1",             // unclosed bracket
      "for=_hidden",                  // obfuscated
  };
  for (const char* b : bad) {
    INFO(b);
    CHECK(fwd("10.0.0.1", {std::string("for=198.51.100.1, ") + b + ", for=10.0.0.2"}) ==
          "10.0.0.2");
    CHECK(fwd("10.0.0.1", {std::string("for=198.51.100.1, ") + b}) == "10.0.0.1");
  }
  // An unterminated or stray quote runs to the end of its line, taking the rest of it along: the
  // walk stops at the peer (the safe side). It ends its own line only.
  CHECK(fwd("10.0.0.1", {"for=198.51.100.1, for=\"198.51.100.9, for=10.0.0.2"}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.1, for=198.51.100.9\", for=10.0.0.2"}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.1, for=\"198.51.100.9"}) == "10.0.0.1");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.1, for=\"x", "for=198.51.100.2"}) == "198.51.100.2");
}

TEST_CASE("at most 64 elements are examined") {
  auto chain = [](size_t trusted_hops) {
    std::string s = "198.51.100.1";
    for (size_t i = 0; i < trusted_hops; ++i)
      s += ", 10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    return s;
  };
  // 63 trusted hops: the 64th element is the client.
  CHECK(xff("10.0.0.1", {chain(63)}) == "198.51.100.1");
  // 64 trusted hops: the walk stops at the last of them (the leftmost trusted one, index 0).
  CHECK(xff("10.0.0.1", {chain(64)}) == "10.0.0.0");
  // 100 trusted hops: it stops at the 64th from the right.
  CHECK(xff("10.0.0.1", {chain(100)}) == "10.0.0.36");

  std::string f = "for=198.51.100.1";
  for (int i = 0; i < 64; ++i)
    f += ", for=\"10.0.1." + std::to_string(i) + ":80\"";
  CHECK(fwd("10.0.0.1", {f}) == "10.0.1.0");
  // Lines count together; empty elements do not count.
  CHECK(xff("10.0.0.1", {chain(31), ", , ,", chain(32).substr(14)}) == "198.51.100.1");
}

TEST_CASE("IPv4-mapped IPv6 addresses are matched as IPv4") {
  // A dual-stack listener reports an IPv4 peer as ::ffff:a.b.c.d.
  CHECK(xff("::ffff:10.0.0.1", {"198.51.100.7"}) == "198.51.100.7");
  CHECK(xff("::ffff:203.0.113.9", {"198.51.100.7"}) == "::ffff:203.0.113.9");
  // Mapped hops are trusted by IPv4 ranges; an untrusted mapped client is returned as written.
  CHECK(xff("10.0.0.1", {"198.51.100.7, ::ffff:10.1.2.3"}) == "198.51.100.7");
  CHECK(xff("10.0.0.1", {"::ffff:198.51.100.7, ::ffff:10.1.2.3"}) == "::ffff:198.51.100.7");
  CHECK(fwd("10.0.0.1", {"for=198.51.100.7, for=\"[::ffff:10.1.2.3]:80\""}) == "198.51.100.7");
  // An IPv6 range does not take in IPv4 hops, nor the reverse.
  CHECK(xff("10.0.0.1", {"198.51.100.7, 2001:db8:ffff::5, 2001:db8::5"}) == "2001:db8::5");
  CHECK(xff("2001:db8:ffff::1", {"198.51.100.7, 2001:db8:ffff::5"}) == "198.51.100.7");
}
