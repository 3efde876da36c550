// The validated, compiled form of a configuration: plugins loaded, every plugin configuration
// accepted, routes ordered. Built for `weir check` and for `weir run` alike.
#pragma once

#include "core/plugin/loader.hpp"
#include "core/plugin/modules.hpp"
#include "core/tls/server_tls.hpp"
#include "weir/config/cidr.hpp"
#include "weir/config/model.hpp"
#include "weir/config/regex.hpp"

#include <chrono>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace weir::core {

using ModuleConfigPtr = std::shared_ptr<const plugin::ModuleConfig>;

struct CompiledUpstream {
  const config::UpstreamConfig* cfg = nullptr;
  ModuleConfigPtr discovery;
  ModuleConfigPtr lb;
  std::vector<ModuleConfigPtr> health; // may be empty
  bool observed = false; // a health module wants passive observations (on_observation)
  std::shared_ptr<boost::asio::ssl::context> client_tls; // null: no TLS to the targets
  int proxy_protocol = 0;                                // PROXY header version to send, 0 = none
};

// How requests of one route are forwarded: the upstream's values with the route's overrides.
struct ForwardPolicy {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds response_timeout{60000};
  std::optional<std::chrono::milliseconds> request_timeout; // the whole exchange; none = no limit
  uint32_t max_tries = 3;                                   // attempts, the first included
  std::optional<std::chrono::milliseconds> retry_timeout;   // no new attempt after it
};

struct CompiledRoute {
  std::optional<std::string> exact;
  std::optional<std::string> prefix;
  std::shared_ptr<const config::Regex> regex;
  std::vector<std::string> hosts;   // lowercase names or "*.example.com"; empty = any
  std::vector<std::string> methods; // empty = any
  size_t file_order = 0;
  size_t upstream = 0;
  ForwardPolicy policy;
  std::vector<ModuleConfigPtr> filters; // the service's filters, then the route's
};

struct CompiledService {
  const config::ServiceConfig* cfg = nullptr;
  std::vector<CompiledRoute> routes;     // exact first, then longest prefix, then regex, in
                                         // file order among equals
  std::optional<CompiledRoute> fallback; // the service's default upstream, if any
  std::vector<ModuleConfigPtr> filters;  // used when nothing matches and there is no fallback
  std::vector<config::CidrRange> trusted_proxies;
};

// One listening address and the services on it (several: virtual hosts, chosen by Host / SNI;
// the first is the default).
struct CompiledListener {
  const config::ListenerConfig* cfg = nullptr; // of the first service
  std::vector<size_t> services;
  std::shared_ptr<tls::ServerTls> tls; // every certificate of every service here; null: plain
  std::vector<config::CidrRange> proxy_protocol_from;
};

class Plan {
public:
  // Load plugins and validate every plugin configuration. Errors (plugin refusals and
  // configuration diagnostics) are appended as ready-to-print lines.
  //
  // `config_errors`, when not empty, are the configuration layer's findings and `cfg` is the
  // partial model it loaded: the plugin tables, certificates and plugin directories are still
  // checked, except those under a key path already in error, and every finding is appended in
  // file order. The result is then always null: one run of `weir check` reports every mistake.
  static std::unique_ptr<Plan> build(config::Config cfg, const char* env_plugin_path,
                                     std::vector<std::string>& errors,
                                     std::vector<config::Diagnostic> config_errors = {});

  config::Config config;
  std::unique_ptr<plugin::Registry> registry;
  std::vector<std::string> plugin_dirs;
  std::vector<CompiledUpstream> upstreams;
  std::vector<CompiledService> services;
  std::vector<CompiledListener> listeners; // by address, in file order of first appearance
};

} // namespace weir::core
