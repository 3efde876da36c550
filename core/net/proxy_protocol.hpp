// The HAProxy PROXY protocol, versions 1 (text) and 2 (binary): parsing the header a load balancer
// puts in front of a client connection, and building one for an upstream connection. Pure: no
// sockets. Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace weir::core::net {

struct ProxyHeader {
  bool local = false; // v2 LOCAL command, or v1 "UNKNOWN": use the connection's real addresses
  std::string src_ip, dst_ip; // textual, no brackets; parsed ones are canonical (inet_ntop)
  uint16_t src_port = 0, dst_port = 0;
};

enum class ProxyParse { need_more, done, invalid };

// Parse a v1 or v2 header at the start of `data` (detected by its signature). `need_more` when the
// bytes so far are a valid prefix of a header; `done` sets `out` and `consumed` (header length,
// including v2 TLVs, which are skipped); `invalid` sets `error` to a short human reason (for a log
// line), "not a PROXY protocol header" when the first bytes match neither signature. Nothing else
// is written to for need_more.
ProxyParse parse_proxy_header(std::string_view data, ProxyHeader& out, size_t& consumed,
                              std::string& error);

// Build a header for an upstream connection.
// v1: "PROXY TCP4 ...", "PROXY TCP6 ...", or "PROXY UNKNOWN\r\n" when `local` or an address is
// not an IP address.
// v2: the PROXY command with AF_INET or AF_INET6 over STREAM, or the LOCAL command when `local` or
// an address is not an IP address.
// With mixed families (IPv4 source, IPv6 destination or the reverse) the IPv4 one is mapped to
// ::ffff:a.b.c.d and IPv6 is used. Addresses are written in their canonical form.
std::string make_proxy_v1(const ProxyHeader& h);
std::string make_proxy_v2(const ProxyHeader& h);

} // namespace weir::core::net
