// An IPv4 or IPv6 address range ("10.0.0.0/8", "::1", "2001:db8::/32"). Pure: no sockets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weir::config {

struct CidrRange {
  std::array<uint8_t, 16> bytes{}; // network address; IPv4 uses the first 4 bytes
  bool v4 = true;
  uint8_t prefix = 32; // bits

  // "a.b.c.d[/n]" or "ipv6[/n]" (no brackets). Host bits must be zero ("10.0.0.1/8" is refused:
  // it is almost always a typo). On failure returns nullopt and says why in `error`.
  static std::optional<CidrRange> parse(std::string_view text, std::string& error);
  // Whether the address (4 bytes when `v4`, else 16) lies in this range. An IPv4-mapped IPv6
  // address (::ffff:a.b.c.d) is compared as the IPv4 address it carries.
  bool contains(const uint8_t* addr, bool addr_v4) const;
  std::string to_string() const;
};

// Whether `addr` (textual IPv4 or IPv6, no brackets) is in any of `ranges`. False for text that is
// not an address (a Unix socket peer, say).
bool in_any(const std::vector<CidrRange>& ranges, std::string_view addr);

} // namespace weir::config
