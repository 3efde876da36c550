// RAII owners of plugin objects: a module's configuration and the instances made from it. Each
// call into a plugin goes through here, so a plugin's error becomes a logged error, never a crash.
#pragma once

#include "core/plugin/host_api.hpp"
#include "core/plugin/loader.hpp"
#include "weir/config/model.hpp"

#include "weir/discovery.h"
#include "weir/filter.h"
#include "weir/health.h"
#include "weir/lb.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

namespace weir::core::plugin {

// The configuration object a module made from one `{ use = ... }` table.
class ModuleConfig {
public:
  // Validate `ref` with the module named by ref.use. Problems are appended to `errors`; returns
  // null when the configuration was refused or the module is unknown.
  static std::shared_ptr<ModuleConfig> create(const Registry& registry, weir_kind_t kind,
                                              const config::PluginRef& ref,
                                              std::vector<config::Diagnostic>& errors);
  ~ModuleConfig();
  ModuleConfig(const ModuleConfig&) = delete;
  ModuleConfig& operator=(const ModuleConfig&) = delete;

  const Module& module() const { return module_; }
  const weir_plugin_config_t* handle() const { return handle_; }
  const std::string& label() const { return label_; }
  const std::string& key_path() const { return key_path_; }

private:
  ModuleConfig(Module module, std::string label, std::string key_path);
  Module module_; // holds the library
  std::string label_;
  std::string key_path_;
  std::unique_ptr<HostCtx> ctx_;
  weir_plugin_config_t* handle_ = nullptr;
};

// Common base: holds the config (and through it the library) and the host context.
class InstanceBase {
public:
  explicit InstanceBase(std::shared_ptr<const ModuleConfig> config);
  virtual ~InstanceBase();
  InstanceBase(const InstanceBase&) = delete;
  InstanceBase& operator=(const InstanceBase&) = delete;
  HostCtx& ctx() { return *ctx_; }
  const ModuleConfig& config() const { return *config_; }

protected:
  std::shared_ptr<const ModuleConfig> config_;
  std::unique_ptr<HostCtx> ctx_;
};

class LbInstance final : public InstanceBase {
public:
  explicit LbInstance(std::shared_ptr<const ModuleConfig> config); // throws on failure
  ~LbInstance() override;
  bool set_targets(const std::vector<weir_target_t>& targets);
  // Index of the chosen target, or -1.
  long pick(weir_http_t* http, uint32_t attempt, std::span<const uint8_t> excluded);
  void on_start(size_t index);
  void on_done(size_t index, uint32_t status, uint64_t duration_ns);

private:
  const weir_lb_vtable_t* vt_;
  weir_lb_instance_t* inst_ = nullptr;
};

class FilterInstance final : public InstanceBase {
public:
  explicit FilterInstance(std::shared_ptr<const ModuleConfig> config); // throws on failure
  ~FilterInstance() override;
  bool has_request() const { return vt_->on_request != nullptr; }
  bool has_response() const { return vt_->on_response != nullptr; }
  weir_filter_result_t on_request(weir_http_t* http);
  weir_filter_result_t on_response(weir_http_t* http);

private:
  const weir_filter_vtable_t* vt_;
  weir_filter_instance_t* inst_ = nullptr;
};

// Control-thread objects: the host context is prepared by the caller (publish/health/timers).
class DiscoveryInstance final : public InstanceBase {
public:
  DiscoveryInstance(std::shared_ptr<const ModuleConfig> config,
                    std::function<void(HostCtx&)> prepare); // throws on failure
  ~DiscoveryInstance() override;
  bool start();

private:
  const weir_discovery_vtable_t* vt_;
  weir_discovery_instance_t* inst_ = nullptr;
};

class HealthInstance final : public InstanceBase {
public:
  HealthInstance(std::shared_ptr<const ModuleConfig> config,
                 std::function<void(HostCtx&)> prepare); // throws on failure
  ~HealthInstance() override;
  void set_targets(const std::vector<weir_target_t>& targets);
  bool wants_observations() const { return vt_->on_observation != nullptr; }
  void observe(std::string_view target_id, uint32_t status, bool connect_failed, bool timed_out,
               uint64_t duration_ns);
  // Whether a module's configuration makes instances that want observations.
  static bool observes(const ModuleConfig& config);

private:
  const weir_health_vtable_t* vt_;
  weir_health_instance_t* inst_ = nullptr;
};

} // namespace weir::core::plugin
