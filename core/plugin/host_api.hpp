// The host API table handed to plugins, and the per-object context behind weir_host_ctx_t.
#pragma once

#include "weir/abi.h"
#include "weir/config/node.hpp"

#include <spdlog/logger.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace weir::core::net {
class DnsResolver;
}

namespace weir::core::plugin {

// A target as a discovery plugin published it (copied out of the plugin's array).
struct PublishedTarget {
  std::string address;
  std::string id;
  uint32_t weight = 1;
  uint32_t priority = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
};

class TimerService;    // control-thread timers of one plugin object
class OutboundService; // probes and fetches of one plugin object
struct GroupTls;

// Behind weir_host_ctx_t: who is calling (for logs and errors) and where its calls go.
struct HostCtx {
  HostCtx(std::string label, std::string module_name);
  ~HostCtx();
  HostCtx(const HostCtx&) = delete;
  HostCtx& operator=(const HostCtx&) = delete;

  std::string label; // e.g. `lb "round-robin" (upstreams.app.lb)`
  std::shared_ptr<spdlog::logger> log;
  // Set while config_new runs: config errors are collected here.
  std::vector<config::Diagnostic>* diagnostics = nullptr;
  size_t errors_reported = 0;
  // Discovery objects: where published sets go. Health objects: where reports go.
  std::function<void(std::vector<PublishedTarget>)> on_publish;
  std::function<void(std::string_view id, bool healthy, std::string_view reason)> on_health;
  // Timers run on this io_context (the control thread's); null = timers unavailable. Set exactly
  // for control-thread instances (discovery, health, certificate providers): it also allows
  // install_certificate / remove_certificate.
  boost::asio::io_context* timer_context = nullptr;
  std::unique_ptr<TimerService> timers;
  std::unique_ptr<OutboundService> outbound; // made on first use (control-thread objects)
  // Health checkers: the TLS settings of their upstream group (for TLS probes and
  // WEIR_FETCH_UPSTREAM_TLS); null for objects outside a group.
  std::shared_ptr<const GroupTls> group_tls;
  bool in_group = false;
  // The process's DNS resolver (control thread; `[dns]`'s servers) for dns_query; null when there
  // is none (weir check, tests).
  net::DnsResolver* dns = nullptr;
  // The resolver with the system's servers (/etc/resolv.conf), for the host names of probes and
  // fetches: the one that resolves the host names of published targets too.
  net::DnsResolver* host_dns = nullptr;

  // Cancel every pending timer, probe and fetch; no callback of this object runs afterwards.
  void cancel_timers();

  weir_host_ctx_t* handle() { return reinterpret_cast<weir_host_ctx_t*>(this); }
  static HostCtx* from(weir_host_ctx_t* ctx) { return reinterpret_cast<HostCtx*>(ctx); }
};

const weir_host_api_t* host_api();

inline const weir_config_node_t* to_handle(const config::Node* node) {
  return reinterpret_cast<const weir_config_node_t*>(node);
}

} // namespace weir::core::plugin
