#include "core/plugin/modules.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace weir::core::plugin {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty())
      out += ", ";
    out += s;
  }
  return out.empty() ? "none installed" : out;
}

template <class VT> const VT* vtable_of(const ModuleConfig& c) {
  return static_cast<const VT*>(c.module().vtable);
}

} // namespace

ModuleConfig::ModuleConfig(Module module, std::string label, std::string key_path)
    : module_(std::move(module)), label_(std::move(label)), key_path_(std::move(key_path)) {}

std::shared_ptr<ModuleConfig> ModuleConfig::create(const Registry& registry, weir_kind_t kind,
                                                   const config::PluginRef& ref,
                                                   std::vector<config::Diagnostic>& errors) {
  const Module* mod = registry.find(kind, ref.use);
  if (mod == nullptr) {
    config::Diagnostic d;
    const config::Node* use = ref.node.get("use");
    d.loc = use ? use->loc : ref.node.loc;
    d.key_path = ref.node.path;
    d.message = fmt::format("unknown {} \"{}\" (known: {})", kind_noun(kind), ref.use,
                            join(registry.names(kind)));
    auto hint = config::did_you_mean(ref.use, registry.names(kind));
    if (!hint.empty())
      d.message += fmt::format("; did you mean \"{}\"?", hint);
    errors.push_back(std::move(d));
    return nullptr;
  }
  auto label = fmt::format("{} \"{}\" ({})", kind_label(kind), ref.use, ref.node.path);
  std::shared_ptr<ModuleConfig> cfg(new ModuleConfig(*mod, label, ref.node.path));
  cfg->ctx_ = std::make_unique<HostCtx>(label, ref.use);
  cfg->ctx_->diagnostics = &errors;
  // Every vtable begins with WEIR_VTABLE_HEAD; the LB layout serves to reach those fields.
  const auto* head = static_cast<const weir_lb_vtable_t*>(mod->vtable);
  weir_plugin_config_t* handle = nullptr;
  weir_status_t st =
      head->config_new(host_api(), cfg->ctx_->handle(), to_handle(&ref.node), &handle);
  size_t reported = cfg->ctx_->errors_reported;
  cfg->ctx_->diagnostics = nullptr;
  if (st != WEIR_OK || reported > 0) {
    if (handle != nullptr)
      head->config_destroy(handle);
    if (reported == 0) {
      config::Diagnostic d;
      d.loc = ref.node.loc;
      d.key_path = ref.node.path;
      d.message =
          fmt::format("{} \"{}\" (plugin \"{}\", {}) rejected its configuration (status {})",
                      kind_noun(kind), ref.use, mod->plugin_name, mod->path, st);
      errors.push_back(std::move(d));
    }
    return nullptr;
  }
  cfg->handle_ = handle;
  return cfg;
}

ModuleConfig::~ModuleConfig() {
  if (handle_ != nullptr) {
    const auto* head = static_cast<const weir_lb_vtable_t*>(module_.vtable);
    head->config_destroy(handle_);
  }
}

InstanceBase::InstanceBase(std::shared_ptr<const ModuleConfig> config)
    : config_(std::move(config)),
      ctx_(std::make_unique<HostCtx>(config_->label(), config_->module().name)) {}

InstanceBase::~InstanceBase() = default;

LbInstance::LbInstance(std::shared_ptr<const ModuleConfig> config)
    : InstanceBase(std::move(config)), vt_(vtable_of<weir_lb_vtable_t>(*config_)) {
  if (vt_->instance_new(host_api(), ctx_->handle(), config_->handle(), &inst_) != WEIR_OK ||
      inst_ == nullptr)
    throw std::runtime_error(config_->label() + ": instance_new failed");
}

LbInstance::~LbInstance() {
  if (inst_ != nullptr)
    vt_->instance_destroy(inst_);
}

bool LbInstance::set_targets(const std::vector<weir_target_t>& targets) {
  weir_status_t st = vt_->on_targets(inst_, targets.data(), targets.size());
  if (st != WEIR_OK)
    ctx_->log->error("{}: on_targets failed (status {})", config_->label(), st);
  return st == WEIR_OK;
}

long LbInstance::pick(weir_http_t* http, uint32_t attempt, std::span<const uint8_t> excluded) {
  weir_lb_pick_t req{sizeof(weir_lb_pick_t), http, attempt,
                     excluded.empty() ? nullptr : excluded.data(), excluded.size()};
  size_t index = 0;
  weir_status_t st = vt_->pick(inst_, &req, &index);
  if (st != WEIR_OK)
    return -1;
  if (index >= excluded.size()) {
    ctx_->log->error("{}: pick returned index {} of {} targets", config_->label(), index,
                     excluded.size());
    return -1;
  }
  return static_cast<long>(index);
}

void LbInstance::on_start(size_t index) {
  if (vt_->struct_size >= offsetof(weir_lb_vtable_t, on_start) + sizeof(void*) && vt_->on_start)
    vt_->on_start(inst_, index);
}

void LbInstance::on_done(size_t index, uint32_t status, uint64_t duration_ns) {
  if (vt_->struct_size >= offsetof(weir_lb_vtable_t, on_done) + sizeof(void*) && vt_->on_done)
    vt_->on_done(inst_, index, status, duration_ns);
}

FilterInstance::FilterInstance(std::shared_ptr<const ModuleConfig> config)
    : InstanceBase(std::move(config)), vt_(vtable_of<weir_filter_vtable_t>(*config_)) {
  if (vt_->instance_new(host_api(), ctx_->handle(), config_->handle(), &inst_) != WEIR_OK ||
      inst_ == nullptr)
    throw std::runtime_error(config_->label() + ": instance_new failed");
}

FilterInstance::~FilterInstance() {
  if (inst_ != nullptr)
    vt_->instance_destroy(inst_);
}

weir_filter_result_t FilterInstance::on_request(weir_http_t* http) {
  return vt_->on_request ? vt_->on_request(inst_, http) : WEIR_FILTER_CONTINUE;
}

weir_filter_result_t FilterInstance::on_response(weir_http_t* http) {
  return vt_->on_response ? vt_->on_response(inst_, http) : WEIR_FILTER_CONTINUE;
}

DiscoveryInstance::DiscoveryInstance(std::shared_ptr<const ModuleConfig> config,
                                     std::function<void(HostCtx&)> prepare)
    : InstanceBase(std::move(config)), vt_(vtable_of<weir_discovery_vtable_t>(*config_)) {
  prepare(*ctx_);
  if (vt_->instance_new(host_api(), ctx_->handle(), config_->handle(), &inst_) != WEIR_OK ||
      inst_ == nullptr)
    throw std::runtime_error(config_->label() + ": instance_new failed");
}

DiscoveryInstance::~DiscoveryInstance() {
  if (inst_ != nullptr)
    vt_->instance_destroy(inst_);
  ctx_->cancel_timers();
}

bool DiscoveryInstance::start() {
  weir_status_t st = vt_->start(inst_);
  if (st != WEIR_OK)
    ctx_->log->error("{}: start failed (status {})", config_->label(), st);
  return st == WEIR_OK;
}

HealthInstance::HealthInstance(std::shared_ptr<const ModuleConfig> config,
                               std::function<void(HostCtx&)> prepare)
    : InstanceBase(std::move(config)), vt_(vtable_of<weir_health_vtable_t>(*config_)) {
  prepare(*ctx_);
  if (vt_->instance_new(host_api(), ctx_->handle(), config_->handle(), &inst_) != WEIR_OK ||
      inst_ == nullptr)
    throw std::runtime_error(config_->label() + ": instance_new failed");
}

HealthInstance::~HealthInstance() {
  if (inst_ != nullptr)
    vt_->instance_destroy(inst_);
  ctx_->cancel_timers();
}

bool HealthInstance::observes(const ModuleConfig& config) {
  return vtable_of<weir_health_vtable_t>(config)->on_observation != nullptr;
}

void HealthInstance::observe(std::string_view target_id, uint32_t status, bool connect_failed,
                             bool timed_out, uint64_t duration_ns) {
  weir_health_observation_t o{};
  o.struct_size = sizeof o;
  o.target_id = weir_str_t{target_id.data(), target_id.size()};
  o.status = status;
  o.connect_failed = connect_failed ? 1 : 0;
  o.timed_out = timed_out ? 1 : 0;
  o.duration_ns = duration_ns;
  vt_->on_observation(inst_, &o);
}

void HealthInstance::set_targets(const std::vector<weir_target_t>& targets) {
  weir_status_t st = vt_->on_targets(inst_, targets.data(), targets.size());
  if (st != WEIR_OK)
    ctx_->log->error("{}: on_targets failed (status {})", config_->label(), st);
}

} // namespace weir::core::plugin
