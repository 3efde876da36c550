#include "core/net/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <vector>

namespace weir::core::net {

namespace {

constexpr std::string_view kV1Signature = "PROXY";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// v1: the longest line ("PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n") is 107 bytes
// including the CRLF; a receiver needs no more than that.
constexpr size_t kV1MaxHeader = 107;
constexpr size_t kV1MaxLine = kV1MaxHeader - 2; // without the CRLF

// v2: 16 fixed bytes, then as many as the length field says (up to 65535): addresses and TLVs.
constexpr size_t kV2FixedLen = 16;
// The format allows 16 + 65535 bytes, but nothing legitimate comes close (addresses plus a few
// TLVs: ALPN, authority, SSL details, a unique id). Refusing anything over 4 KiB keeps a client
// from making us buffer 64 KiB per connection before a single byte of it is checked (DoS guard).
constexpr size_t kV2MaxHeader = 4096;

constexpr uint8_t kCmdLocal = 0x0;
constexpr uint8_t kCmdProxy = 0x1;
// Family (high nibble) and transport protocol (low nibble).
constexpr uint8_t kUnspec = 0x00;
constexpr uint8_t kTcp4 = 0x11;
constexpr uint8_t kUdp4 = 0x12;
constexpr uint8_t kTcp6 = 0x21;
constexpr uint8_t kUdp6 = 0x22;
constexpr uint8_t kUnixStream = 0x31;
constexpr uint8_t kUnixDgram = 0x32;
constexpr size_t kInet4Block = 12; // 4 + 4 + 2 + 2
constexpr size_t kInet6Block = 36; // 16 + 16 + 2 + 2
constexpr size_t kUnixBlock = 216; // 108 + 108

// The longest address text inet_pton accepts ("255.255.255.255", "0000:...:ffff:255.255.255.255").
constexpr size_t kMaxV4Text = 15;
constexpr size_t kMaxV6Text = 45;

struct Addr {
  std::array<uint8_t, 16> bytes{};
  bool v4 = true;
};

bool parse_ip(const std::string& text, Addr& a) {
  a.bytes.fill(0);
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    a.v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.v4 = false;
    return true;
  }
  return false;
}

std::string ip_text(const uint8_t* bytes, bool v4) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes, buf, sizeof buf);
  return buf;
}

// ::ffff:a.b.c.d
void map_to_v6(Addr& a) {
  if (!a.v4)
    return;
  std::array<uint8_t, 16> m{};
  m[10] = 0xff;
  m[11] = 0xff;
  for (size_t i = 0; i < 4; ++i)
    m[12 + i] = a.bytes[i];
  a.bytes = m;
  a.v4 = false;
}

uint8_t byte_at(std::string_view s, size_t i) {
  return static_cast<uint8_t>(s[i]);
}

uint16_t be16(std::string_view s, size_t i) {
  return static_cast<uint16_t>((byte_at(s, i) << 8) | byte_at(s, i + 1));
}

void put_be16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A port, or (when `partial`) the beginning of one: decimal, no sign, no leading zero, <= 65535.
bool valid_port(std::string_view f, bool partial, uint16_t& port) {
  if (f.empty())
    return partial;
  if (f.size() > 5 || (f.size() > 1 && f[0] == '0'))
    return false;
  unsigned v = 0;
  for (char c : f) {
    if (!is_digit(c))
      return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535)
    return false;
  port = static_cast<uint16_t>(v);
  return true;
}

// An address of the declared family, written to `canonical` in its canonical form; or (when
// `partial`) text that may still become one.
bool valid_address(std::string_view f, bool v4, bool partial, std::string& canonical) {
  if (!partial) {
    std::array<uint8_t, 16> buf{};
    std::string s(f);
    if (inet_pton(v4 ? AF_INET : AF_INET6, s.c_str(), buf.data()) != 1)
      return false;
    canonical = ip_text(buf.data(), v4);
    return true;
  }
  if (f.size() > (v4 ? kMaxV4Text : kMaxV6Text))
    return false;
  for (char c : f) {
    bool ok = v4 ? (is_digit(c) || c == '.') : (is_hex(c) || c == ':' || c == '.');
    if (!ok)
      return false;
  }
  return true;
}

bool is_prefix(std::string_view part, std::string_view whole) {
  return part.size() <= whole.size() && whole.substr(0, part.size()) == part;
}

// Check the fields of a v1 line (without its CRLF). When `!complete` the line is still arriving:
// its last field may be cut short. Fills `h` as far as it goes.
bool check_v1_line(std::string_view line, bool complete, ProxyHeader& h, std::string& error) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t sp = line.find(' ', start);
    if (sp == std::string_view::npos) {
      fields.push_back(line.substr(start));
      break;
    }
    fields.push_back(line.substr(start, sp - start));
    start = sp + 1;
    if (fields.size() > 6) // "PROXY" + 5 fields; anything past that is an error anyway
      break;
  }
  const size_t n = fields.size();
  if (fields[0] != kV1Signature) {
    error = "PROXY v1: expected a space after \"PROXY\"";
    return false;
  }
  bool v4 = true;
  for (size_t i = 1; i < n; ++i) {
    std::string_view f = fields[i];
    const bool partial = !complete && i == n - 1;
    if (f.empty() && !partial) {
      error = "PROXY v1: fields must be separated by exactly one space";
      return false;
    }
    if (i == 1) {
      if (partial) {
        if (!is_prefix(f, "TCP4") && !is_prefix(f, "TCP6") && !is_prefix(f, "UNKNOWN")) {
          error = "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)";
          return false;
        }
        continue;
      }
      if (f == "UNKNOWN") {
        // Whatever follows up to the CRLF is to be ignored (spec 2.1).
        h.local = true;
        return true;
      }
      if (f != "TCP4" && f != "TCP6") {
        error = "PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)";
        return false;
      }
      v4 = f == "TCP4";
    } else if (i == 2 || i == 3) {
      if (!valid_address(f, v4, partial, i == 2 ? h.src_ip : h.dst_ip)) {
        error = std::string("PROXY v1: invalid ") + (i == 2 ? "source" : "destination") + " " +
                (v4 ? "IPv4" : "IPv6") + " address";
        return false;
      }
    } else if (i == 4 || i == 5) {
      if (!valid_port(f, partial, i == 4 ? h.src_port : h.dst_port)) {
        error = std::string("PROXY v1: invalid ") + (i == 4 ? "source" : "destination") +
                " port (decimal 0 to 65535, no leading zero)";
        return false;
      }
    } else {
      error = "PROXY v1: too many fields";
      return false;
    }
  }
  if (complete && n != 6) {
    error = n == 1 ? "PROXY v1: missing protocol" : "PROXY v1: missing fields";
    return false;
  }
  return true;
}

ProxyParse parse_v1(std::string_view data, ProxyHeader& out, size_t& consumed, std::string& error) {
  const size_t eol = data.find_first_of("\r\n");
  const bool complete = eol != std::string_view::npos;
  const std::string_view line = complete ? data.substr(0, eol) : data;
  if (line.size() > kV1MaxLine) {
    error = "PROXY v1: no CRLF within 107 bytes";
    return ProxyParse::invalid;
  }
  if (complete && (data[eol] != '\r' || (eol + 1 < data.size() && data[eol + 1] != '\n'))) {
    error = "PROXY v1: the line must end with CRLF";
    return ProxyParse::invalid;
  }
  ProxyHeader h;
  if (!check_v1_line(line, complete, h, error))
    return ProxyParse::invalid;
  if (!complete || eol + 1 == data.size())
    return ProxyParse::need_more;
  out = std::move(h);
  consumed = eol + 2;
  return ProxyParse::done;
}

ProxyParse parse_v2(std::string_view data, ProxyHeader& out, size_t& consumed, std::string& error) {
  // The 12-byte signature has been checked.
  if (data.size() < 13)
    return ProxyParse::need_more;
  const uint8_t ver_cmd = byte_at(data, 12);
  if ((ver_cmd >> 4) != 2) {
    error = "PROXY v2: unsupported version " + std::to_string(ver_cmd >> 4);
    return ProxyParse::invalid;
  }
  const auto cmd = static_cast<uint8_t>(ver_cmd & 0x0f);
  if (cmd != kCmdLocal && cmd != kCmdProxy) {
    error = "PROXY v2: unknown command " + std::to_string(cmd);
    return ProxyParse::invalid;
  }
  if (data.size() < 14)
    return ProxyParse::need_more;
  // With LOCAL, the family is ignored (spec 2.2): only the length matters.
  const uint8_t fam = byte_at(data, 13);
  size_t block = 0; // the address block the family needs
  if (cmd == kCmdProxy) {
    switch (fam) {
    case kUnspec:
      break;
    case kTcp4:
      block = kInet4Block;
      break;
    case kTcp6:
      block = kInet6Block;
      break;
    case kUnixStream:
      block = kUnixBlock;
      break;
    case kUdp4:
    case kUdp6:
    case kUnixDgram:
      error = "PROXY v2: datagram transport is not supported";
      return ProxyParse::invalid;
    default:
      error = "PROXY v2: unknown address family or transport";
      return ProxyParse::invalid;
    }
  }
  if (data.size() < kV2FixedLen)
    return ProxyParse::need_more;
  const size_t total = kV2FixedLen + be16(data, 14);
  if (total > kV2MaxHeader) {
    error = "PROXY v2: header longer than " + std::to_string(kV2MaxHeader) + " bytes";
    return ProxyParse::invalid;
  }
  if (total - kV2FixedLen < block) {
    error = "PROXY v2: length too short for the address family";
    return ProxyParse::invalid;
  }
  if (data.size() < total)
    return ProxyParse::need_more;
  ProxyHeader h;
  if (cmd == kCmdLocal || fam == kUnspec || fam == kUnixStream) {
    h.local = true;
  } else {
    const bool v4 = fam == kTcp4;
    const size_t alen = v4 ? 4 : 16;
    const auto* p = reinterpret_cast<const uint8_t*>(data.data() + kV2FixedLen);
    h.src_ip = ip_text(p, v4);
    h.dst_ip = ip_text(p + alen, v4);
    h.src_port = be16(data, kV2FixedLen + 2 * alen);
    h.dst_port = be16(data, kV2FixedLen + 2 * alen + 2);
  }
  // Whatever follows the address block (TLVs) is skipped.
  out = std::move(h);
  consumed = total;
  return ProxyParse::done;
}

} // namespace

ProxyParse parse_proxy_header(std::string_view data, ProxyHeader& out, size_t& consumed,
                              std::string& error) {
  if (data.empty())
    return ProxyParse::need_more;
  for (std::string_view sig : {kV1Signature, kV2Signature}) {
    const size_t n = std::min(data.size(), sig.size());
    if (data.substr(0, n) != sig.substr(0, n))
      continue;
    if (data.size() < sig.size())
      return ProxyParse::need_more;
    return sig == kV1Signature ? parse_v1(data, out, consumed, error)
                               : parse_v2(data, out, consumed, error);
  }
  error = "not a PROXY protocol header";
  return ProxyParse::invalid;
}

std::string make_proxy_v1(const ProxyHeader& h) {
  Addr src, dst;
  if (h.local || !parse_ip(h.src_ip, src) || !parse_ip(h.dst_ip, dst))
    return "PROXY UNKNOWN\r\n";
  if (src.v4 != dst.v4) {
    map_to_v6(src);
    map_to_v6(dst);
  }
  return std::string(src.v4 ? "PROXY TCP4 " : "PROXY TCP6 ") + ip_text(src.bytes.data(), src.v4) +
         " " + ip_text(dst.bytes.data(), dst.v4) + " " + std::to_string(h.src_port) + " " +
         std::to_string(h.dst_port) + "\r\n";
}

std::string make_proxy_v2(const ProxyHeader& h) {
  std::string out(kV2Signature);
  Addr src, dst;
  if (h.local || !parse_ip(h.src_ip, src) || !parse_ip(h.dst_ip, dst)) {
    out.push_back(static_cast<char>(0x20 | kCmdLocal));
    out.push_back(static_cast<char>(kUnspec));
    put_be16(out, 0);
    return out;
  }
  if (src.v4 != dst.v4) {
    map_to_v6(src);
    map_to_v6(dst);
  }
  const size_t alen = src.v4 ? 4 : 16;
  out.push_back(static_cast<char>(0x20 | kCmdProxy));
  out.push_back(static_cast<char>(src.v4 ? kTcp4 : kTcp6));
  put_be16(out, static_cast<uint16_t>(src.v4 ? kInet4Block : kInet6Block));
  out.append(reinterpret_cast<const char*>(src.bytes.data()), alen);
  out.append(reinterpret_cast<const char*>(dst.bytes.data()), alen);
  put_be16(out, h.src_port);
  put_be16(out, h.dst_port);
  return out;
}

} // namespace weir::core::net
