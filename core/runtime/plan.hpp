// The validated, compiled form of a configuration: plugins loaded, every plugin configuration
// accepted, routes ordered. Built for `weir check` and for `weir run` alike.
#pragma once

#include "core/plugin/loader.hpp"
#include "core/plugin/modules.hpp"
#include "core/tls/server_tls.hpp"
#include "weir/config/model.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace weir::core {

using ModuleConfigPtr = std::shared_ptr<const plugin::ModuleConfig>;

struct CompiledUpstream {
  const config::UpstreamConfig* cfg = nullptr;
  ModuleConfigPtr discovery;
  ModuleConfigPtr lb;
  ModuleConfigPtr health; // may be null
};

struct CompiledRoute {
  std::optional<std::string> exact;
  std::optional<std::string> prefix;
  size_t upstream = 0;
  std::vector<ModuleConfigPtr> filters; // the service's filters, then the route's
};

struct CompiledService {
  const config::ServiceConfig* cfg = nullptr;
  std::vector<CompiledRoute> routes;     // exact first, then longest prefix first
  std::optional<CompiledRoute> fallback; // the service's default upstream, if any
  std::vector<ModuleConfigPtr> filters;  // used when nothing matches and there is no fallback
};

class Plan {
public:
  // Load plugins and validate every plugin configuration. Errors (plugin refusals and
  // configuration diagnostics) are appended as ready-to-print lines.
  static std::unique_ptr<Plan> build(config::Config cfg, const char* env_plugin_path,
                                     std::vector<std::string>& errors);

  config::Config config;
  std::unique_ptr<plugin::Registry> registry;
  std::vector<std::string> plugin_dirs;
  std::vector<CompiledUpstream> upstreams;
  std::vector<CompiledService> services;
  // Per service, per listener: the TLS setup, or null for plain HTTP.
  std::vector<std::vector<std::shared_ptr<tls::ServerTls>>> listener_tls;
};

} // namespace weir::core
