// Upstream target sets: immutable snapshots built on the control thread from what discovery
// published, handed to every worker (which keeps its own pointer: no lock on the hot path).
#pragma once

#include "weir/abi.h"

#include <boost/asio/ip/tcp.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::core::upstream {

struct Target {
  std::string address;       // as published
  std::string id;            // stable identity (pool key, health reports)
  std::string pool_key;      // "<upstream>\n<id>": its connections' key in the worker pools, or ""
  std::size_t pool_hash = 0; // Pool::hash(pool_key), made with it
  uint32_t weight = 1;
  bool healthy = true;
  uint32_t priority = 0; // lower is preferred
  std::vector<std::pair<std::string, std::string>> metadata;
  boost::asio::ip::tcp::endpoint endpoint; // TCP targets
  std::string unix_path;                   // Unix socket targets ("unix:/path" published)
  std::string host;                        // the host part as published (SNI source), or ""
};

// The same target leading to the same place: its connections (pooled, or in use) may serve it.
// A target that stays under its id but now leads elsewhere (its host name resolves to another
// address) is, for its connections, a target that left.
inline bool same_destination(const Target& a, const Target& b) {
  return a.id == b.id && a.endpoint == b.endpoint && a.unix_path == b.unix_path && a.host == b.host;
}

struct TargetSet {
  std::vector<Target> targets;
  std::vector<weir_target_t> abi;                    // views into `targets`, as plugins see them
  std::vector<std::vector<weir_str_t>> abi_metadata; // what abi[i].metadata points to
  uint64_t version = 0;
};

std::shared_ptr<const TargetSet> make_target_set(std::vector<Target> targets, uint64_t version);

enum class AddressKind { invalid, literal, name };

// Split "1.2.3.4:80", "[::1]:80" or "host:80" ("unix:/path" is the caller's). An IP literal goes to
// `out` (literal); a host name to `host` and `port` (name), for the caller to resolve. Invalid
// sets `error`.
AddressKind parse_address(std::string_view address, boost::asio::ip::tcp::endpoint& out,
                          std::string& host, uint16_t& port, std::string& error);

} // namespace weir::core::upstream
