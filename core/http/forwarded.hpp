// Who the client is when requests arrive through trusted proxies: X-Forwarded-For and Forwarded
// (RFC 7239) read against a list of trusted address ranges. Pure: no sockets.
#pragma once

#include "weir/config/cidr.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace weir::core::http {

// The client address for logs, filters and hashing. When `peer` (the TCP peer, textual IP) is in
// `trusted`, walk the forwarding chain from right to left, skipping addresses in `trusted`; the
// first one that is not trusted is the client. `forwarded` holds every Forwarded header line in
// order (RFC 7239; its for= parameters are used when any line is present), otherwise `xff` holds
// every X-Forwarded-For line in order. Elements may carry ports ("1.2.3.4:5678",
// "[2001:db8::1]:443") and quotes (Forwarded: for="[2001:db8::1]"); they are returned without port
// or brackets, otherwise as written. When an element is not an IP address ("unknown", "_hidden",
// garbage, a Forwarded element without for=), the walk stops and the last address examined (a
// trusted one) is returned. When every address is trusted, the leftmost is returned. At most 64
// elements are examined (the walk stops there, as with garbage). Empty list elements ("a, , b")
// are skipped. When `peer` is not trusted it is returned as is.
std::string effective_client(std::string_view peer, const std::vector<std::string_view>& xff,
                             const std::vector<std::string_view>& forwarded,
                             const std::vector<weir::config::CidrRange>& trusted);

} // namespace weir::core::http
