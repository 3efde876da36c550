#include "weir/config/cidr.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace weir::config {

namespace {

bool parse_ip(std::string_view text, std::array<uint8_t, 16>& out, bool& v4) {
  out.fill(0);
  if (text.find('\0') != std::string_view::npos)
    return false; // inet_pton would stop at it and accept what comes before
  std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) {
    v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) {
    v4 = false;
    return true;
  }
  return false;
}

bool is_v4_mapped(const uint8_t* a) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPrefix, 12) == 0;
}

} // namespace

std::optional<CidrRange> CidrRange::parse(std::string_view text, std::string& error) {
  CidrRange r;
  auto slash = text.find('/');
  std::string_view ip = text.substr(0, slash);
  if (!parse_ip(ip, r.bytes, r.v4)) {
    error = "\"" + std::string(text) +
            "\" is not an address range: expected an IPv4 or IPv6 address, optionally with a "
            "prefix length, like \"10.0.0.0/8\" or \"2001:db8::/32\"";
    return std::nullopt;
  }
  unsigned max = r.v4 ? 32 : 128;
  r.prefix = static_cast<uint8_t>(max);
  if (slash != std::string_view::npos) {
    std::string_view len = text.substr(slash + 1);
    unsigned n = 0;
    bool ok = !len.empty() && len.size() <= 3;
    for (char c : len) {
      if (c < '0' || c > '9') {
        ok = false;
        break;
      }
      n = n * 10 + static_cast<unsigned>(c - '0');
    }
    if (!ok || n > max) {
      error = "invalid prefix length in \"" + std::string(text) + "\": expected 0 to " +
              std::to_string(max);
      return std::nullopt;
    }
    r.prefix = static_cast<uint8_t>(n);
  }
  size_t nbytes = r.v4 ? 4 : 16;
  for (size_t bit = r.prefix; bit < nbytes * 8; ++bit) {
    if ((r.bytes[bit / 8] & (0x80u >> (bit % 8))) != 0) {
      error = "\"" + std::string(text) + "\" has host bits set; did you mean \"" + [&] {
        CidrRange masked = r;
        for (size_t b = r.prefix; b < nbytes * 8; ++b)
          masked.bytes[b / 8] &= static_cast<uint8_t>(~(0x80u >> (b % 8)));
        return masked.to_string();
      }() + "\"?";
      return std::nullopt;
    }
  }
  // An IPv4-mapped range (::ffff:a.b.c.d/96 and longer) is kept as the IPv4 range it stands for:
  // contains() compares mapped addresses as IPv4, so the IPv6 form would never match. (A shorter
  // prefix of a mapped address has host bits set and was refused above.)
  if (!r.v4 && r.prefix >= 96 && is_v4_mapped(r.bytes.data())) {
    std::array<uint8_t, 16> v4{};
    std::memcpy(v4.data(), r.bytes.data() + 12, 4);
    r.bytes = v4;
    r.v4 = true;
    r.prefix = static_cast<uint8_t>(r.prefix - 96);
  }
  return r;
}

bool CidrRange::contains(const uint8_t* addr, bool addr_v4) const {
  if (!addr_v4 && is_v4_mapped(addr)) {
    addr += 12;
    addr_v4 = true;
  }
  if (addr_v4 != v4)
    return false;
  size_t full = prefix / 8;
  if (std::memcmp(addr, bytes.data(), full) != 0)
    return false;
  unsigned rest = prefix % 8;
  if (rest == 0)
    return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (addr[full] & mask) == (bytes[full] & mask);
}

std::string CidrRange::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool in_any(const std::vector<CidrRange>& ranges, std::string_view addr) {
  std::array<uint8_t, 16> a{};
  bool v4 = false;
  if (!parse_ip(addr, a, v4))
    return false;
  for (const auto& r : ranges)
    if (r.contains(a.data(), v4))
      return true;
  return false;
}

} // namespace weir::config
