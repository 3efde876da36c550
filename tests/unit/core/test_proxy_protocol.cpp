#include "core/net/proxy_protocol.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

using weir::core::net::make_proxy_v1;
using weir::core::net::make_proxy_v2;
using weir::core::net::parse_proxy_header;
using weir::core::net::ProxyHeader;
using weir::core::net::ProxyParse;

namespace {

struct Parsed {
  ProxyParse result = ProxyParse::invalid;
  ProxyHeader h;
  size_t consumed = 0;
  std::string error;
};

Parsed parse(std::string_view data) {
  Parsed p;
  p.consumed = 12345; // a marker: only `done` may change it
  p.result = parse_proxy_header(data, p.h, p.consumed, p.error);
  return p;
}

const std::string kV2Sig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list)
    s.push_back(static_cast<char>(b));
  return s;
}

// A v2 header: signature, version/command, family/protocol, length (the body's unless given).
std::string v2(int ver_cmd, int fam, const std::string& body, int length = -1) {
  const int len = length < 0 ? static_cast<int>(body.size()) : length;
  return kV2Sig + bytes({ver_cmd, fam, (len >> 8) & 0xff, len & 0xff}) + body;
}

const std::string kV4Block = bytes({192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb});
// 2001:db8::1 -> 2001:db8::2, 1 -> 65535
const std::string kV6Block =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    1,    0x20, 0x01,
           0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x00, 0x01, 0xff, 0xff});

// Every proper prefix of a valid header is a valid prefix: need_more, nothing written.
void check_prefixes(const std::string& header) {
  for (size_t n = 0; n < header.size(); ++n) {
    auto p = parse(std::string_view(header).substr(0, n));
    INFO("prefix length " << n);
    CHECK(p.result == ProxyParse::need_more);
    CHECK(p.consumed == 12345);
    CHECK(p.error.empty());
    CHECK(p.h.src_ip.empty());
  }
}

// Refused, and no prefix of it is taken as a complete header.
void check_invalid(const std::string& data) {
  INFO("data: " << data);
  auto p = parse(data);
  CHECK(p.result == ProxyParse::invalid);
  CHECK_FALSE(p.error.empty());
  for (size_t n = 0; n < data.size(); ++n)
    CHECK(parse(std::string_view(data).substr(0, n)).result != ProxyParse::done);
}

} // namespace

TEST_CASE("v1 TCP4") {
  const std::string line = "PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n";
  auto p = parse(line + "GET / HTTP/1.1\r\n");
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == line.size());
  CHECK_FALSE(p.h.local);
  CHECK(p.h.src_ip == "192.168.0.1");
  CHECK(p.h.dst_ip == "10.0.0.1");
  CHECK(p.h.src_port == 56324);
  CHECK(p.h.dst_port == 443);
  CHECK(p.error.empty());
  check_prefixes(line);

  auto q = parse("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
  REQUIRE(q.result == ProxyParse::done);
  CHECK(q.h.src_port == 65535);
  CHECK(q.h.dst_port == 0);
}

TEST_CASE("v1 TCP6") {
  const std::string line = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n";
  auto p = parse(line);
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == line.size());
  CHECK(p.h.src_ip == "2001:db8::1");
  CHECK(p.h.dst_ip == "::ffff:10.0.0.1");
  CHECK(p.h.src_port == 1);
  CHECK(p.h.dst_port == 65535);
  check_prefixes(line);

  // Addresses come out in canonical form, as from v2.
  auto c = parse("PROXY TCP6 2001:DB8:0:0::0001 0:0:0:0:0:FFFF:0A00:0001 1 2\r\n");
  REQUIRE(c.result == ProxyParse::done);
  CHECK(c.h.src_ip == "2001:db8::1");
  CHECK(c.h.dst_ip == "::ffff:10.0.0.1");

  // The longest TCP6 line.
  const std::string full = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(full.size() == 104);
  CHECK(parse(full).result == ProxyParse::done);
  check_prefixes(full);
}

TEST_CASE("v1 UNKNOWN: local, whatever follows it on the line ignored") {
  auto p = parse("PROXY UNKNOWN\r\nxyz");
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == 15);
  CHECK(p.h.local);
  CHECK(p.h.src_ip.empty());
  CHECK(p.h.dst_ip.empty());
  CHECK(p.h.src_port == 0);
  check_prefixes("PROXY UNKNOWN\r\n");

  auto q = parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
  REQUIRE(q.result == ProxyParse::done);
  CHECK(q.h.local);
  CHECK(q.h.src_ip.empty());
  CHECK(q.consumed == 35);

  CHECK(parse("PROXY UNKNOWN anything  at all\r\n").result == ProxyParse::done);

  // Exactly 107 bytes with the CRLF is the most a receiver has to take.
  const std::string max = "PROXY UNKNOWN " + std::string(91, 'x') + "\r\n";
  REQUIRE(max.size() == 107);
  auto m = parse(max);
  CHECK(m.result == ProxyParse::done);
  CHECK(m.consumed == 107);
  check_prefixes(max);
  check_invalid("PROXY UNKNOWN " + std::string(92, 'x') + "\r\n");
  // A line that never ends is refused once it cannot fit any more.
  const std::string endless = "PROXY UNKNOWN " + std::string(200, 'x');
  CHECK(parse(endless.substr(0, 105)).result == ProxyParse::need_more);
  CHECK(parse(endless.substr(0, 106)).result == ProxyParse::invalid);
}

TEST_CASE("v1 malformations are refused") {
  const char* bad[] = {
      "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",     // two spaces
      "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",     // two spaces
      "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",     // two spaces
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",     // trailing space
      "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",     // tab
      "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",     // tab
      "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",       // no space after PROXY
      "PROXY\r\n",                               // no protocol
      "PROXY \r\n",                              // empty protocol
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",      // unknown protocol
      "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",      // case matters
      "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",      // not TCP
      "PROXY UNKNOWNX\r\n",                      // not UNKNOWN
      "PROXY UNKNOWN\n",                         // LF only
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",        // LF only
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",       // CR without LF
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",    // CR CR LF
      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",        // missing port
      "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",          // missing ports
      "PROXY TCP4 1.2.3.4\r\n",                  // missing everything
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    // too many fields
      "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",          // IPv6 in TCP4
      "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",          // IPv6 in TCP4
      "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",          // IPv4 in TCP6
      "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",          // IPv4 in TCP6
      "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",    // octet out of range
      "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",        // three octets
      "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",     // leading zero in an octet
      "PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n",     // trailing dot
      "PROXY TCP4 [1.2.3.4] 5.6.7.8 1 2\r\n",    // brackets
      "PROXY TCP6 [::1] ::1 1 2\r\n",            // brackets
      "PROXY TCP6 ::1::2 ::1 1 2\r\n",           // two double colons
      "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",     // zone
      "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",     // sign
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     // sign
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",     // sign
      "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",  // out of range
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",  // out of range
      "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", // too many digits
      "PROXY TCP4 1.2.3.4 5.6.7.8 0080 2\r\n",   // leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n",     // leading zero
      "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",     // not decimal
      "PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n",    // not decimal
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n",     // not decimal
  };
  for (const char* b : bad)
    check_invalid(b);

  auto p = parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n");
  CHECK(p.error == "PROXY v1: invalid destination port (decimal 0 to 65535, no leading zero)");
  CHECK(p.consumed == 12345);
  CHECK(parse("PROXY TCP4 1.2.3.4 ::1 1 2\r\n").error ==
        "PROXY v1: invalid destination IPv4 address");
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").error == "PROXY v1: the line must end with CRLF");
}

TEST_CASE("v1 malformations are caught before the line ends") {
  const char* bad[] = {
      "PROXY X",
      "PROXY TCP4 1.2.3.x",
      "PROXY TCP4 1.2.3.4  ",
      "PROXY TCP4 1.2.3.4 5.6.7.8 65536",
      "PROXY TCP4 1.2.3.4 5.6.7.8 01",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
      "PROXY TCP4 1234567890123456",
      "PROXY TCP6 2001:db8::g",
  };
  for (const char* b : bad) {
    INFO(b);
    CHECK(parse(b).result == ProxyParse::invalid);
  }
  // A complete but wrong line is refused without waiting for the LF.
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1\r").result == ProxyParse::invalid);
  CHECK(parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r").result == ProxyParse::need_more);
}

TEST_CASE("neither signature") {
  const std::string not_proxy[] = {
      "GET / HTTP/1.1\r\n\r\n",
      std::string("\x16\x03\x01\x02\x00", 5), // TLS ClientHello
      " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXX",
      "\r\n\r\nGET",
      std::string("\r\n\r\n\0\r\nQUIT\r", 12),
      "\r\r",
  };
  for (const auto& d : not_proxy) {
    auto p = parse(d);
    CHECK(p.result == ProxyParse::invalid);
    CHECK(p.error == "not a PROXY protocol header");
  }
  // Prefixes of either signature wait.
  CHECK(parse("").result == ProxyParse::need_more);
  CHECK(parse("P").result == ProxyParse::need_more);
  CHECK(parse("PROXY").result == ProxyParse::need_more);
  CHECK(parse("\r").result == ProxyParse::need_more);
  CHECK(parse("\r\n").result == ProxyParse::need_more);
  CHECK(parse(kV2Sig.substr(0, 11)).result == ProxyParse::need_more);
  CHECK(parse(kV2Sig).result == ProxyParse::need_more);
}

TEST_CASE("v2 IPv4") {
  const std::string h = v2(0x21, 0x11, kV4Block);
  REQUIRE(h.size() == 28);
  auto p = parse(h + "GET / HTTP/1.1\r\n");
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == 28);
  CHECK_FALSE(p.h.local);
  CHECK(p.h.src_ip == "192.0.2.1");
  CHECK(p.h.dst_ip == "198.51.100.7");
  CHECK(p.h.src_port == 56324);
  CHECK(p.h.dst_port == 443);
  check_prefixes(h);
}

TEST_CASE("v2 IPv6") {
  const std::string h = v2(0x21, 0x21, kV6Block);
  REQUIRE(h.size() == 52);
  auto p = parse(h);
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == 52);
  CHECK(p.h.src_ip == "2001:db8::1");
  CHECK(p.h.dst_ip == "2001:db8::2");
  CHECK(p.h.src_port == 1);
  CHECK(p.h.dst_port == 65535);
  check_prefixes(h);

  // A v4-mapped address comes out in its usual text form.
  std::string mapped = kV6Block;
  mapped.replace(0, 16, bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1}));
  auto m = parse(v2(0x21, 0x21, mapped));
  REQUIRE(m.result == ProxyParse::done);
  CHECK(m.h.src_ip == "::ffff:10.0.0.1");
}

TEST_CASE("v2 LOCAL, UNSPEC and UNIX: the real addresses are used") {
  auto p = parse(v2(0x20, 0x00, "") + "GET");
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == 16);
  CHECK(p.h.local);
  CHECK(p.h.src_ip.empty());
  check_prefixes(v2(0x20, 0x00, ""));

  // LOCAL ignores the family and skips whatever block comes with it.
  auto q = parse(v2(0x20, 0x11, kV4Block));
  REQUIRE(q.result == ProxyParse::done);
  CHECK(q.consumed == 28);
  CHECK(q.h.local);
  CHECK(q.h.src_ip.empty());
  CHECK(parse(v2(0x20, 0x77, "abc")).result == ProxyParse::done);

  // PROXY with AF_UNSPEC.
  auto u = parse(v2(0x21, 0x00, ""));
  REQUIRE(u.result == ProxyParse::done);
  CHECK(u.h.local);
  CHECK(u.consumed == 16);
  auto u2 = parse(v2(0x21, 0x00, "xyz"));
  REQUIRE(u2.result == ProxyParse::done);
  CHECK(u2.consumed == 19);

  // PROXY with AF_UNIX over STREAM.
  const std::string unix_block = std::string(108, 'a') + std::string(108, 'b');
  auto x = parse(v2(0x21, 0x31, unix_block));
  REQUIRE(x.result == ProxyParse::done);
  CHECK(x.h.local);
  CHECK(x.consumed == 16 + 216);
  check_invalid(v2(0x21, 0x31, std::string(215, 'a')));
}

TEST_CASE("v2 TLVs are skipped") {
  // ALPN "h2", authority "example.com", then a NOOP with 3 bytes.
  const std::string tlvs = bytes({0x01, 0, 2}) + "h2" + bytes({0x02, 0, 11}) + "example.com" +
                           bytes({0x04, 0, 3, 0, 0, 0});
  const std::string h = v2(0x21, 0x11, kV4Block + tlvs);
  auto p = parse(h + "GET / HTTP/1.1\r\n");
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == h.size());
  CHECK(p.consumed == 28 + tlvs.size());
  CHECK(p.h.src_ip == "192.0.2.1");
  CHECK(p.h.dst_port == 443);
  check_prefixes(h);

  const std::string h6 = v2(0x21, 0x21, kV6Block + tlvs);
  auto q = parse(h6);
  REQUIRE(q.result == ProxyParse::done);
  CHECK(q.consumed == 52 + tlvs.size());
  CHECK(q.h.dst_ip == "2001:db8::2");
}

TEST_CASE("v2 truncated and oversize") {
  // The length says more than has arrived: wait.
  const std::string h = v2(0x21, 0x11, kV4Block, 20);
  CHECK(parse(h).result == ProxyParse::need_more);
  CHECK(parse(h + std::string(7, 'x')).result == ProxyParse::need_more);
  auto p = parse(h + std::string(8, 'x'));
  REQUIRE(p.result == ProxyParse::done);
  CHECK(p.consumed == 36);

  // The length cannot hold the addresses of the family: refused as soon as it is read.
  auto s = parse(v2(0x21, 0x11, "", 11));
  CHECK(s.result == ProxyParse::invalid);
  CHECK(s.error == "PROXY v2: length too short for the address family");
  check_invalid(v2(0x21, 0x11, kV4Block.substr(0, 11)));
  check_invalid(v2(0x21, 0x21, kV6Block.substr(0, 35)));
  check_invalid(v2(0x21, 0x21, kV4Block)); // IPv4-sized block for IPv6

  // 4096 bytes in all is the most we take.
  const std::string max = v2(0x21, 0x11, kV4Block + std::string(4096 - 28, '\0'));
  REQUIRE(max.size() == 4096);
  auto m = parse(max);
  REQUIRE(m.result == ProxyParse::done);
  CHECK(m.consumed == 4096);
  // One more is refused from the fixed part alone.
  auto o = parse(v2(0x21, 0x11, "", 4096 - 16 + 1));
  CHECK(o.result == ProxyParse::invalid);
  CHECK(o.error == "PROXY v2: header longer than 4096 bytes");
  CHECK(parse(v2(0x21, 0x11, "", 0xffff)).result == ProxyParse::invalid);
  CHECK(parse(v2(0x20, 0x00, "", 0xffff)).result == ProxyParse::invalid);
}

TEST_CASE("v2 malformations") {
  // Version must be 2.
  check_invalid(v2(0x11, 0x11, kV4Block));
  check_invalid(v2(0x31, 0x11, kV4Block));
  check_invalid(v2(0x01, 0x11, kV4Block));
  CHECK(parse(kV2Sig + bytes({0x11})).error == "PROXY v2: unsupported version 1");
  // Command must be LOCAL or PROXY.
  check_invalid(v2(0x22, 0x11, kV4Block));
  check_invalid(v2(0x2f, 0x11, kV4Block));
  CHECK(parse(kV2Sig + bytes({0x22})).result == ProxyParse::invalid);
  // Datagrams are not for us; unknown families and protocols are refused.
  for (int fam : {0x12, 0x22, 0x32}) {
    auto p = parse(v2(0x21, fam, std::string(216, '\0')));
    CHECK(p.result == ProxyParse::invalid);
    CHECK(p.error == "PROXY v2: datagram transport is not supported");
  }
  for (int fam : {0x01, 0x02, 0x10, 0x13, 0x20, 0x41, 0xff}) {
    INFO("family " << fam);
    check_invalid(v2(0x21, fam, std::string(216, '\0')));
    CHECK(parse(kV2Sig + bytes({0x21, fam})).result == ProxyParse::invalid);
  }
}

TEST_CASE("make_proxy_v1") {
  CHECK(make_proxy_v1({false, "192.0.2.1", "198.51.100.7", 56324, 443}) ==
        "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n");
  CHECK(make_proxy_v1({false, "2001:DB8:0::1", "::1", 0, 65535}) ==
        "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
  CHECK(make_proxy_v1({true, "192.0.2.1", "198.51.100.7", 1, 2}) == "PROXY UNKNOWN\r\n");
  CHECK(make_proxy_v1({}) == "PROXY UNKNOWN\r\n");
  CHECK(make_proxy_v1({false, "/run/weir.sock", "198.51.100.7", 1, 2}) == "PROXY UNKNOWN\r\n");
  CHECK(make_proxy_v1({false, "192.0.2.1", "example.com", 1, 2}) == "PROXY UNKNOWN\r\n");
  CHECK(make_proxy_v1({false, "[::1]", "::1", 1, 2}) == "PROXY UNKNOWN\r\n");
}

TEST_CASE("make_proxy_v2") {
  CHECK(make_proxy_v2({false, "192.0.2.1", "198.51.100.7", 56324, 443}) ==
        v2(0x21, 0x11, kV4Block));
  CHECK(make_proxy_v2({false, "2001:db8::1", "2001:db8::2", 1, 65535}) == v2(0x21, 0x21, kV6Block));
  CHECK(make_proxy_v2({true, "192.0.2.1", "198.51.100.7", 1, 2}) == v2(0x20, 0x00, ""));
  CHECK(make_proxy_v2({}) == v2(0x20, 0x00, ""));
  CHECK(make_proxy_v2({false, "unix", "198.51.100.7", 1, 2}) == v2(0x20, 0x00, ""));
}

TEST_CASE("mixed families are sent as IPv6 with the IPv4 one mapped") {
  const ProxyHeader a{false, "192.0.2.1", "2001:db8::2", 1000, 443};
  CHECK(make_proxy_v1(a) == "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1000 443\r\n");
  const ProxyHeader b{false, "2001:db8::1", "198.51.100.7", 1000, 443};
  CHECK(make_proxy_v1(b) == "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.7 1000 443\r\n");

  const std::string bin = make_proxy_v2(a);
  REQUIRE(bin.size() == 52);
  CHECK(bin.substr(12, 4) == bytes({0x21, 0x21, 0, 36}));
  CHECK(bin.substr(16, 16) == bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}));

  for (const auto& text : {make_proxy_v1(a), bin}) {
    auto p = parse(text);
    REQUIRE(p.result == ProxyParse::done);
    CHECK(p.h.src_ip == "::ffff:192.0.2.1");
    CHECK(p.h.dst_ip == "2001:db8::2");
  }
}

TEST_CASE("make then parse gives the header back") {
  const ProxyHeader cases[] = {
      {false, "192.0.2.1", "198.51.100.7", 56324, 443},
      {false, "0.0.0.0", "255.255.255.255", 0, 65535},
      {false, "2001:db8::1", "2001:db8::2", 1, 2},
      {false, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 0},
      {false, "::ffff:10.0.0.1", "::1", 80, 8080},
  };
  for (const auto& h : cases) {
    for (const auto& text : {make_proxy_v1(h), make_proxy_v2(h)}) {
      INFO(h.src_ip << " " << h.dst_ip);
      auto p = parse(text + "rest");
      REQUIRE(p.result == ProxyParse::done);
      CHECK(p.consumed == text.size());
      CHECK_FALSE(p.h.local);
      CHECK(p.h.src_ip == h.src_ip);
      CHECK(p.h.dst_ip == h.dst_ip);
      CHECK(p.h.src_port == h.src_port);
      CHECK(p.h.dst_port == h.dst_port);
      check_prefixes(text);
    }
  }
  const ProxyHeader local{true, "192.0.2.1", "198.51.100.7", 1, 2};
  for (const auto& text : {make_proxy_v1(local), make_proxy_v2(local)}) {
    auto p = parse(text);
    REQUIRE(p.result == ProxyParse::done);
    CHECK(p.consumed == text.size());
    CHECK(p.h.local);
    CHECK(p.h.src_ip.empty());
    CHECK(p.h.src_port == 0);
  }
}

TEST_CASE("done overwrites a previously filled header") {
  ProxyHeader h{false, "192.0.2.1", "198.51.100.7", 1, 2};
  size_t consumed = 0;
  std::string error;
  REQUIRE(parse_proxy_header("PROXY UNKNOWN\r\n", h, consumed, error) == ProxyParse::done);
  CHECK(h.local);
  CHECK(h.src_ip.empty());
  CHECK(h.dst_ip.empty());
  CHECK(h.src_port == 0);
}
