// discovery/static: publishes a fixed set of targets from the configuration.
//
//   [upstreams.app.discovery]
//   use = "static"
//   targets = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }]
//
// Each target is an address string or a table { address (required), weight (1..10000, default
// 1) }. Addresses are "ip:port", "[ipv6]:port" or "host:port". At least one target;
// no address twice (the address is the target's identity for health reports).
#include <weir/sdk.hpp>

#include <arpa/inet.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

constexpr std::string_view kForms =
    "expected \"ip:port\", \"[ipv6]:port\", \"host:port\" or \"unix:/path\"";

bool all_digits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

/// Empty when `port` is a valid port, else the problem.
std::string check_port(std::string_view port) {
  if (port.empty()) {
    return "missing port";
  }
  if (!all_digits(port) || port.size() > 5) {
    return "invalid port '" + std::string(port) + "'";
  }
  unsigned value = 0;
  for (char c : port) {
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) {
    return "port " + std::string(port) + " is out of range (1..65535)";
  }
  return {};
}

/// RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], 1..63 characters, not starting or
/// ending with '-', 253 characters at most.
bool valid_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  size_t start = 0;
  while (start <= host.size()) {
    size_t end = host.find('.', start);
    if (end == std::string_view::npos) {
      end = host.size();
    }
    const std::string_view label = host.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      const bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

/// Empty when `address` is valid, else a message saying what is wrong with it.
std::string check_address(std::string_view address) {
  const std::string quoted = "'" + std::string(address) + "'";
  if (address.empty()) {
    return "empty address; " + std::string(kForms);
  }
  if (address.starts_with("unix:")) {
    const std::string_view path = address.substr(5);
    if (path.empty() || path.front() != '/') {
      return "invalid address " + quoted + ": a unix socket path must be absolute, like " +
             "'unix:/run/app.sock'";
    }
    if (path.size() > 107) {
      return "invalid address " + quoted + ": a unix socket path is at most 107 bytes";
    }
    if (path.find('\0') != std::string_view::npos) {
      return "invalid address " + quoted + ": NUL byte in the path";
    }
    return {};
  }
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string_view::npos) {
      return "invalid address " + quoted + ": missing ']' after the IPv6 address";
    }
    const std::string ip(address.substr(1, close - 1));
    in6_addr a6{};
    if (ip.empty() || inet_pton(AF_INET6, ip.c_str(), &a6) != 1) {
      return "invalid address " + quoted + ": '" + ip + "' is not an IPv6 address";
    }
    if (close + 1 >= address.size() || address[close + 1] != ':') {
      return "invalid address " + quoted + ": missing port; " + std::string(kForms);
    }
    if (std::string p = check_port(address.substr(close + 2)); !p.empty()) {
      return "invalid address " + quoted + ": " + p;
    }
    return {};
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) {
    return "invalid address " + quoted + ": missing port; " + std::string(kForms);
  }
  const std::string_view host = address.substr(0, colon);
  if (host.find(':') != std::string_view::npos) {
    return "invalid address " + quoted + ": an IPv6 address must be in brackets, e.g. \"[::1]:" +
           std::string(address.substr(colon + 1)) + "\"";
  }
  if (host.empty()) {
    return "invalid address " + quoted + ": missing host; " + std::string(kForms);
  }
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) {
    in_addr a4{};
    const std::string ip(host);
    if (inet_pton(AF_INET, ip.c_str(), &a4) != 1) {
      return "invalid address " + quoted + ": '" + ip + "' is not an IPv4 address";
    }
  } else if (!valid_hostname(host)) {
    return "invalid address " + quoted + ": '" + std::string(host) + "' is not a valid host name";
  }
  if (std::string p = check_port(address.substr(colon + 1)); !p.empty()) {
    return "invalid address " + quoted + ": " + p;
  }
  return {};
}

struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys({"targets"});
    const weir::sdk::ConfigReader list = cfg.child("targets");
    if (!list) {
      cfg.error("missing required key 'targets' (an array of addresses or { address, weight } "
                "tables)");
      return;
    }
    if (!list.expect_array()) {
      return;
    }
    if (list.size() == 0) {
      list.error("at least one target is required");
      return;
    }
    std::vector<std::string> seen_paths;
    for (const weir::sdk::ConfigReader& entry : list.elements()) {
      std::optional<weir::sdk::Target> target = read_target(entry);
      if (!target) {
        continue;
      }
      bool duplicate = false;
      for (size_t i = 0; i < targets.size(); ++i) {
        if (targets[i].address == target->address) {
          entry.error("duplicate target '" + target->address + "' (also at " + seen_paths[i] + ")");
          duplicate = true;
          break;
        }
      }
      if (!duplicate) {
        targets.push_back(std::move(*target));
        seen_paths.push_back(entry.path());
      }
    }
  }

  static std::optional<weir::sdk::Target> read_target(const weir::sdk::ConfigReader& entry) {
    weir::sdk::Target t;
    weir::sdk::ConfigReader address_node = entry;
    if (entry.type() == WEIR_CONFIG_STRING) {
      t.address = *entry.as_string();
    } else if (entry.type() == WEIR_CONFIG_TABLE) {
      entry.expect_only_keys({"address", "weight"});
      address_node = entry.child("address");
      std::optional<std::string> address = entry.require_string("address");
      const std::optional<uint32_t> weight = entry.has("weight")
                                                 ? entry.child("weight").as_int<uint32_t>(1, 10000)
                                                 : std::optional<uint32_t>(1);
      if (!address || !weight) {
        return std::nullopt;
      }
      t.address = std::move(*address);
      t.weight = *weight;
    } else {
      entry.error("expected an address string or a table { address = \"...\", weight = N }, got " +
                  std::string(weir::sdk::config_type_name(entry.type())));
      return std::nullopt;
    }
    if (const std::string problem = check_address(t.address); !problem.empty()) {
      address_node.error(problem);
      return std::nullopt;
    }
    return t;
  }

  std::vector<weir::sdk::Target> targets;
};

class StaticDiscovery {
public:
  StaticDiscovery(weir::sdk::Host host, const Config& config) : host_(host), config_(config) {}

  weir_status_t start() {
    const weir_status_t st = host_.publish_targets(config_.targets);
    if (st != WEIR_OK) {
      host_.error("publishing ", config_.targets.size(), " target(s) failed: status ", st);
    } else {
      host_.debug("published ", config_.targets.size(), " target(s)");
    }
    return st;
  }

private:
  weir::sdk::Host host_;
  const Config& config_;
};

} // namespace

WEIR_SDK_PLUGIN("discovery-static", WEIR_PLUGIN_VERSION,
                weir::sdk::discovery_module<Config, StaticDiscovery>("static"))
