// Unit tests of weir::config::CidrRange: parsing, host bits, containment, IPv4-mapped addresses.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "weir/config/cidr.hpp"

#include <arpa/inet.h>

#include <array>
#include <string>
#include <vector>

using weir::config::CidrRange;
using weir::config::in_any;

namespace {

CidrRange parse_ok(std::string_view text) {
  std::string error;
  auto r = CidrRange::parse(text, error);
  INFO(text << ": " << error);
  REQUIRE(r.has_value());
  CHECK(error.empty());
  return *r;
}

std::string parse_error(std::string_view text) {
  std::string error;
  auto r = CidrRange::parse(text, error);
  INFO(text);
  CHECK_FALSE(r.has_value());
  CHECK_FALSE(error.empty());
  return error;
}

// Whether `range` contains the textual address `addr`.
bool contains(std::string_view range, const std::string& addr) {
  CidrRange r = parse_ok(range);
  std::array<uint8_t, 16> bytes{};
  if (inet_pton(AF_INET, addr.c_str(), bytes.data()) == 1)
    return r.contains(bytes.data(), true);
  REQUIRE(inet_pton(AF_INET6, addr.c_str(), bytes.data()) == 1);
  return r.contains(bytes.data(), false);
}

} // namespace

TEST_CASE("parse: addresses and prefixes") {
  CidrRange a = parse_ok("10.0.0.0/8");
  CHECK(a.v4);
  CHECK(a.prefix == 8);
  CHECK(a.bytes[0] == 10);
  CHECK(a.to_string() == "10.0.0.0/8");

  CidrRange host = parse_ok("192.168.1.7");
  CHECK(host.v4);
  CHECK(host.prefix == 32);
  CHECK(host.to_string() == "192.168.1.7/32");
  CHECK(parse_ok("192.168.1.7/32").to_string() == "192.168.1.7/32");

  CidrRange v6 = parse_ok("2001:db8::/32");
  CHECK_FALSE(v6.v4);
  CHECK(v6.prefix == 32);
  CHECK(v6.to_string() == "2001:db8::/32");
  CHECK(parse_ok("::1").to_string() == "::1/128");
  CHECK(parse_ok("::1").prefix == 128);
  CHECK(parse_ok("2001:DB8:0:0::/64").to_string() == "2001:db8::/64");

  // Leading zeros in the prefix length are harmless.
  CHECK(parse_ok("10.0.0.0/08").prefix == 8);
}

TEST_CASE("parse: /0 and full-length prefixes") {
  CidrRange all4 = parse_ok("0.0.0.0/0");
  CHECK(all4.v4);
  CHECK(all4.prefix == 0);
  CHECK(all4.to_string() == "0.0.0.0/0");
  CidrRange all6 = parse_ok("::/0");
  CHECK_FALSE(all6.v4);
  CHECK(all6.prefix == 0);
  CHECK(all6.to_string() == "::/0");
  CHECK(parse_ok("255.255.255.255/32").prefix == 32);
  CHECK(parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128").prefix == 128);
  // Anything but the zero address has host bits under /0.
  CHECK(parse_error("1.0.0.0/0") == "\"1.0.0.0/0\" has host bits set; did you mean \"0.0.0.0/0\"?");
}

TEST_CASE("parse: host bits are refused with the range meant") {
  CHECK(parse_error("10.0.0.1/8") ==
        "\"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?");
  CHECK(parse_error("192.168.1.7/24") ==
        "\"192.168.1.7/24\" has host bits set; did you mean \"192.168.1.0/24\"?");
  CHECK(parse_ok("10.0.0.128/25").to_string() == "10.0.0.128/25");
  CHECK(parse_error("10.0.0.129/25") ==
        "\"10.0.0.129/25\" has host bits set; did you mean \"10.0.0.128/25\"?");
  CHECK(parse_error("2001:db8::1/32") ==
        "\"2001:db8::1/32\" has host bits set; did you mean \"2001:db8::/32\"?");
  CHECK(parse_ok("2001:db8:8000::/33").to_string() == "2001:db8:8000::/33");
  CHECK(parse_error("2001:db8:4000::/33") ==
        "\"2001:db8:4000::/33\" has host bits set; did you mean \"2001:db8::/33\"?");
  CHECK(parse_ok("2001:db8:8000::/34").to_string() == "2001:db8:8000::/34");
}

TEST_CASE("parse: prefix length out of range or malformed") {
  CHECK(parse_error("10.0.0.0/33") == "invalid prefix length in \"10.0.0.0/33\": expected 0 to 32");
  CHECK(parse_error("::/129") == "invalid prefix length in \"::/129\": expected 0 to 128");
  CHECK(parse_error("::/1000") == "invalid prefix length in \"::/1000\": expected 0 to 128");
  for (const char* bad : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/ 8",
                          "10.0.0.0/8 ", "10.0.0.0/x", "10.0.0.0/0x8"})
    CHECK_MESSAGE(parse_error(bad).rfind("invalid prefix length in \"", 0) == 0, bad);
}

TEST_CASE("parse: not an address") {
  const std::string expected_tail =
      "is not an address range: expected an IPv4 or IPv6 address, optionally with a prefix "
      "length, like \"10.0.0.0/8\" or \"2001:db8::/32\"";
  CHECK(parse_error("nope") == "\"nope\" " + expected_tail);
  for (const char* bad : {"", "/8", "10.0.0/8", "10.0.0.0.0", "256.0.0.0/8", "010.0.0.0/8",
                          " 10.0.0.0/8", "[::1]", "[::1]/128", "::1%lo", "fe80::1%eth0/64",
                          "10.0.0.0:80", "example.com", "::g", "1.2.3.4/32x"}) {
    std::string e = parse_error(bad);
    CHECK_MESSAGE(
        (e.find(expected_tail) != std::string::npos || e.rfind("invalid prefix length", 0) == 0),
        bad);
  }
  // A NUL ends the C string inet_pton sees; what follows it must not be ignored.
  CHECK(parse_error(std::string_view("10.0.0.1\0junk", 13)).find("is not an address range") !=
        std::string::npos);
  CHECK(parse_error(std::string_view("::1\0", 4)).find("is not an address range") !=
        std::string::npos);
}

TEST_CASE("contains: IPv4") {
  CHECK(contains("10.0.0.0/8", "10.0.0.0"));
  CHECK(contains("10.0.0.0/8", "10.255.255.255"));
  CHECK_FALSE(contains("10.0.0.0/8", "11.0.0.0"));
  CHECK_FALSE(contains("10.0.0.0/8", "9.255.255.255"));
  CHECK(contains("192.168.1.7", "192.168.1.7"));
  CHECK_FALSE(contains("192.168.1.7", "192.168.1.6"));
  CHECK(contains("10.0.0.128/25", "10.0.0.200"));
  CHECK_FALSE(contains("10.0.0.128/25", "10.0.0.127"));
  CHECK(contains("172.16.0.0/12", "172.31.255.1"));
  CHECK_FALSE(contains("172.16.0.0/12", "172.32.0.1"));
  CHECK(contains("0.0.0.0/0", "1.2.3.4"));
  CHECK(contains("0.0.0.0/0", "255.255.255.255"));
  // An IPv4 range never holds a (non-mapped) IPv6 address, and the other way round.
  CHECK_FALSE(contains("0.0.0.0/0", "::1"));
  CHECK_FALSE(contains("0.0.0.0/0", "2001:db8::1"));
  CHECK_FALSE(contains("::/0", "1.2.3.4"));
}

TEST_CASE("contains: IPv6") {
  CHECK(contains("2001:db8::/32", "2001:db8::1"));
  CHECK(contains("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  CHECK_FALSE(contains("2001:db8::/32", "2001:db9::1"));
  CHECK(contains("::1", "::1"));
  CHECK_FALSE(contains("::1", "::2"));
  CHECK(contains("2001:db8:8000::/33", "2001:db8:8000::5"));
  CHECK_FALSE(contains("2001:db8:8000::/33", "2001:db8:7fff::5"));
  CHECK(contains("::/0", "2001:db8::1"));
  CHECK(contains("::/0", "::"));
}

TEST_CASE("IPv4-mapped IPv6") {
  // A mapped address (a dual-stack socket's IPv4 peer) is compared as the IPv4 address it carries.
  CHECK(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  CHECK_FALSE(contains("10.0.0.0/8", "::ffff:11.1.2.3"));
  CHECK(contains("127.0.0.1", "::ffff:127.0.0.1"));
  CHECK(contains("0.0.0.0/0", "::ffff:1.2.3.4"));
  // It is an IPv4 client, so "all of IPv6" does not hold it.
  CHECK_FALSE(contains("::/0", "::ffff:1.2.3.4"));
  // A range written in the mapped form stands for the IPv4 range.
  CidrRange mapped = parse_ok("::ffff:10.0.0.0/104");
  CHECK(mapped.v4);
  CHECK(mapped.prefix == 8);
  CHECK(mapped.to_string() == "10.0.0.0/8");
  CHECK(contains("::ffff:10.0.0.0/104", "10.9.8.7"));
  CHECK(contains("::ffff:10.0.0.0/104", "::ffff:10.9.8.7"));
  CHECK_FALSE(contains("::ffff:10.0.0.0/104", "11.0.0.1"));
  CHECK(parse_ok("::ffff:192.168.1.7").to_string() == "192.168.1.7/32");
  CHECK(parse_ok("::ffff:0.0.0.0/96").to_string() == "0.0.0.0/0");
  CHECK(contains("::ffff:0.0.0.0/96", "8.8.8.8"));
  // Shorter than /96 the mapping prefix itself is host bits.
  CHECK(parse_error("::ffff:0.0.0.0/95").find("has host bits set") != std::string::npos);
  CHECK(parse_error("::ffff:10.0.0.1/104") ==
        "\"::ffff:10.0.0.1/104\" has host bits set; did you mean \"::ffff:10.0.0.0/104\"?");
  // Not mapped: the IPv4-compatible form and NAT64 stay IPv6.
  CHECK_FALSE(parse_ok("64:ff9b::/96").v4);
  CHECK_FALSE(contains("64:ff9b::/96", "10.0.0.1"));
}

TEST_CASE("in_any") {
  std::vector<CidrRange> ranges{parse_ok("10.0.0.0/8"), parse_ok("2001:db8::/32"),
                                parse_ok("127.0.0.1")};
  CHECK(in_any(ranges, "10.1.2.3"));
  CHECK(in_any(ranges, "::ffff:10.1.2.3"));
  CHECK(in_any(ranges, "2001:db8::42"));
  CHECK(in_any(ranges, "127.0.0.1"));
  CHECK_FALSE(in_any(ranges, "127.0.0.2"));
  CHECK_FALSE(in_any(ranges, "::1"));
  // Not an address: never in a range.
  CHECK_FALSE(in_any(ranges, ""));
  CHECK_FALSE(in_any(ranges, "unix:/run/weir.sock"));
  CHECK_FALSE(in_any(ranges, "[2001:db8::42]"));
  CHECK_FALSE(in_any(ranges, "10.1.2.3:80"));
  CHECK_FALSE(in_any(ranges, std::string_view("10.1.2.3\0x", 10)));
  CHECK_FALSE(in_any({}, "10.1.2.3"));
}
