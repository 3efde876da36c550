#include "core/plugin/host_api.hpp"

#include "core/http/exchange.hpp"
#include "core/plugin/outbound.hpp"
#include "core/runtime/logging.hpp"
#include "core/tls/cert_store.hpp"
#include "weir/config/model.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <chrono>
#include <map>
#include <new>

namespace weir::core::plugin {

class TimerService {
public:
  explicit TimerService(boost::asio::io_context& ioc) : ioc_(ioc) {}
  ~TimerService() {
    for (auto& [id, timer] : timers_)
      timer->cancel();
  }

  weir_timer_id_t start(uint64_t delay_ms, weir_timer_cb cb, void* user) {
    weir_timer_id_t id = next_++;
    auto timer = std::make_shared<boost::asio::steady_timer>(ioc_);
    timer->expires_after(std::chrono::milliseconds(delay_ms));
    timers_[id] = timer;
    timer->async_wait([this, id, cb, user, keep = timer](const boost::system::error_code& ec) {
      if (ec)
        return; // cancelled: `this` may be gone
      timers_.erase(id);
      cb(user);
    });
    return id;
  }

  void cancel(weir_timer_id_t id) {
    auto it = timers_.find(id);
    if (it == timers_.end())
      return;
    it->second->cancel();
    timers_.erase(it);
  }

private:
  boost::asio::io_context& ioc_;
  std::map<weir_timer_id_t, std::shared_ptr<boost::asio::steady_timer>> timers_;
  weir_timer_id_t next_ = 1;
};

HostCtx::HostCtx(std::string label_, std::string module_name)
    : label(std::move(label_)), log(logger("plugin." + module_name)) {}

HostCtx::~HostCtx() = default;

void HostCtx::cancel_timers() {
  timers.reset();
  outbound.reset();
}

namespace {

using config::Node;

const Node* node_of(const weir_config_node_t* n) {
  return reinterpret_cast<const Node*>(n);
}
http::Exchange* ex_of(weir_http_t* h) {
  return reinterpret_cast<http::Exchange*>(h);
}
// Never a null pointer, even for an empty string (an empty view may have none): a plugin may
// pass `data` to memcpy and the like.
weir_str_t view(std::string_view s) {
  return weir_str_t{s.data() != nullptr ? s.data() : "", s.size()};
}
std::string_view sv(weir_str_t s) {
  return s.data == nullptr ? std::string_view() : std::string_view(s.data, s.len);
}

spdlog::level::level_enum to_spd(weir_log_level_t level) {
  switch (level) {
  case WEIR_LOG_TRACE:
    return spdlog::level::trace;
  case WEIR_LOG_DEBUG:
    return spdlog::level::debug;
  case WEIR_LOG_INFO:
    return spdlog::level::info;
  case WEIR_LOG_WARN:
    return spdlog::level::warn;
  default:
    return spdlog::level::err;
  }
}

void api_log(weir_host_ctx_t* ctx, weir_log_level_t level, weir_str_t msg) {
  if (ctx == nullptr)
    return;
  auto* c = HostCtx::from(ctx);
  c->log->log(to_spd(level), "{}", sv(msg));
}

int api_log_enabled(weir_host_ctx_t* ctx, weir_log_level_t level) {
  if (ctx == nullptr)
    return 0;
  return HostCtx::from(ctx)->log->should_log(to_spd(level)) ? 1 : 0;
}

weir_config_type_t api_config_type(const weir_config_node_t* n) {
  if (n == nullptr)
    return WEIR_CONFIG_NONE;
  switch (node_of(n)->type) {
  case Node::Type::String:
    return WEIR_CONFIG_STRING;
  case Node::Type::Integer:
    return WEIR_CONFIG_INTEGER;
  case Node::Type::Float:
    return WEIR_CONFIG_FLOAT;
  case Node::Type::Boolean:
    return WEIR_CONFIG_BOOLEAN;
  case Node::Type::Array:
    return WEIR_CONFIG_ARRAY;
  case Node::Type::Table:
    return WEIR_CONFIG_TABLE;
  default:
    return WEIR_CONFIG_NONE;
  }
}

const weir_config_node_t* api_config_get(const weir_config_node_t* n, weir_str_t key) {
  if (n == nullptr)
    return nullptr;
  return to_handle(node_of(n)->get(sv(key)));
}

const weir_config_node_t* api_config_at(const weir_config_node_t* n, size_t index) {
  if (n == nullptr || node_of(n)->type != Node::Type::Array)
    return nullptr;
  const auto& arr = node_of(n)->array;
  return index < arr.size() ? to_handle(&arr[index]) : nullptr;
}

size_t api_config_size(const weir_config_node_t* n) {
  if (n == nullptr)
    return 0;
  const Node* node = node_of(n);
  if (node->type == Node::Type::Array)
    return node->array.size();
  if (node->type == Node::Type::Table)
    return node->table.size();
  return 0;
}

void api_config_each(const weir_config_node_t* n, weir_config_key_cb cb, void* user) {
  if (n == nullptr || cb == nullptr || node_of(n)->type != Node::Type::Table)
    return;
  for (const auto& [key, value] : node_of(n)->table)
    if (cb(user, view(key), to_handle(&value)) != 0)
      break;
}

weir_status_t api_config_string(const weir_config_node_t* n, weir_str_t* out) {
  if (n == nullptr || out == nullptr || node_of(n)->type != Node::Type::String)
    return WEIR_ERROR_INVALID;
  *out = view(node_of(n)->string);
  return WEIR_OK;
}

weir_status_t api_config_int(const weir_config_node_t* n, int64_t* out) {
  if (n == nullptr || out == nullptr || node_of(n)->type != Node::Type::Integer)
    return WEIR_ERROR_INVALID;
  *out = node_of(n)->integer;
  return WEIR_OK;
}

weir_status_t api_config_float(const weir_config_node_t* n, double* out) {
  if (n == nullptr || out == nullptr)
    return WEIR_ERROR_INVALID;
  const Node* node = node_of(n);
  if (node->type == Node::Type::Float) {
    *out = node->floating;
  } else if (node->type == Node::Type::Integer) {
    *out = static_cast<double>(node->integer);
  } else {
    return WEIR_ERROR_INVALID;
  }
  return WEIR_OK;
}

weir_status_t api_config_bool(const weir_config_node_t* n, int* out) {
  if (n == nullptr || out == nullptr || node_of(n)->type != Node::Type::Boolean)
    return WEIR_ERROR_INVALID;
  *out = node_of(n)->boolean ? 1 : 0;
  return WEIR_OK;
}

weir_status_t api_config_duration_ms(const weir_config_node_t* n, uint64_t* out) {
  if (n == nullptr || out == nullptr)
    return WEIR_ERROR_INVALID;
  const Node* node = node_of(n);
  if (node->type == Node::Type::Integer && node->integer >= 0) {
    *out = static_cast<uint64_t>(node->integer);
    return WEIR_OK;
  }
  if (node->type != Node::Type::String)
    return WEIR_ERROR_INVALID;
  auto d = config::parse_duration(node->string);
  if (!d || d->count() < 0)
    return WEIR_ERROR_INVALID;
  *out = static_cast<uint64_t>(d->count());
  return WEIR_OK;
}

void api_config_error(weir_host_ctx_t* ctx, const weir_config_node_t* n, weir_str_t msg) {
  if (ctx == nullptr)
    return;
  auto* c = HostCtx::from(ctx);
  ++c->errors_reported;
  config::Diagnostic d;
  if (n != nullptr) {
    d.loc = node_of(n)->loc;
    d.key_path = node_of(n)->path;
  }
  d.message = std::string(sv(msg));
  try {
    if (c->diagnostics != nullptr) {
      c->diagnostics->push_back(std::move(d));
    } else {
      c->log->error("{}", d.to_string());
    }
  } catch (const std::exception&) {
    // Out of memory while reporting: the error count above still fails the configuration.
  }
}

weir_str_t api_config_path(const weir_config_node_t* n) {
  if (n == nullptr)
    return weir_str_t{"", 0};
  return view(node_of(n)->path);
}

weir_timer_id_t api_timer_start(weir_host_ctx_t* ctx, uint64_t delay_ms, weir_timer_cb cb,
                                void* user) {
  if (ctx == nullptr || cb == nullptr)
    return 0;
  auto* c = HostCtx::from(ctx);
  if (c->timer_context == nullptr)
    return 0;
  if (!c->timers)
    c->timers = std::make_unique<TimerService>(*c->timer_context);
  return c->timers->start(delay_ms, cb, user);
}

void api_timer_cancel(weir_host_ctx_t* ctx, weir_timer_id_t id) {
  if (ctx == nullptr)
    return;
  auto* c = HostCtx::from(ctx);
  if (c->timers)
    c->timers->cancel(id);
}

uint64_t api_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

weir_status_t publish_targets_impl(weir_host_ctx_t* ctx, const weir_target_t* targets, size_t n);

// No exception may cross back into a plugin: every host function that allocates catches.
weir_status_t api_publish_targets(weir_host_ctx_t* ctx, const weir_target_t* targets, size_t n) {
  try {
    return publish_targets_impl(ctx, targets, n);
  } catch (const std::exception&) {
    return WEIR_ERROR_NOMEM;
  }
}

weir_status_t publish_targets_impl(weir_host_ctx_t* ctx, const weir_target_t* targets, size_t n) {
  if (ctx == nullptr || (n > 0 && targets == nullptr))
    return WEIR_ERROR_INVALID;
  auto* c = HostCtx::from(ctx);
  if (!c->on_publish)
    return WEIR_ERROR_STATE;
  std::vector<PublishedTarget> out;
  out.reserve(n);
  // The array's stride is its elements' struct_size (a plugin built for another minor has
  // another sizeof). 1.0 has every field up to `id`.
  const size_t stride = n > 0 ? targets[0].struct_size : 0;
  if (n > 0 && stride < offsetof(weir_target_t, id) + sizeof(weir_str_t))
    return WEIR_ERROR_INVALID;
  const auto* base = reinterpret_cast<const unsigned char*>(targets);
  for (size_t i = 0; i < n; ++i) {
    const auto& t = *reinterpret_cast<const weir_target_t*>(base + i * stride);
    PublishedTarget p;
    p.address = std::string(sv(t.address));
    p.id = std::string(sv(t.id));
    if (p.id.empty())
      p.id = p.address;
    p.weight = t.weight == 0 ? 1 : t.weight;
    if (stride >= offsetof(weir_target_t, metadata_count) + sizeof(size_t)) { // ABI 1.2
      p.priority = t.priority;
      if (t.metadata_count > 0 && t.metadata == nullptr)
        return WEIR_ERROR_INVALID;
      for (size_t k = 0; k < t.metadata_count; ++k)
        p.metadata.emplace_back(std::string(sv(t.metadata[2 * k])),
                                std::string(sv(t.metadata[2 * k + 1])));
    }
    if (p.address.empty())
      return WEIR_ERROR_INVALID;
    out.push_back(std::move(p));
  }
  try {
    c->on_publish(std::move(out));
  } catch (const std::exception& e) {
    c->log->error("publishing targets failed: {}", e.what());
    return WEIR_ERROR;
  }
  return WEIR_OK;
}

weir_status_t api_report_health(weir_host_ctx_t* ctx, weir_str_t target_id, int healthy,
                                weir_str_t reason) {
  if (ctx == nullptr)
    return WEIR_ERROR_INVALID;
  auto* c = HostCtx::from(ctx);
  if (!c->on_health)
    return WEIR_ERROR_STATE;
  try {
    c->on_health(sv(target_id), healthy != 0, sv(reason));
  } catch (const std::exception& e) {
    c->log->error("health report failed: {}", e.what());
    return WEIR_ERROR;
  }
  return WEIR_OK;
}

weir_str_t api_http_method(weir_http_t* h) {
  return h ? view(ex_of(h)->method) : weir_str_t{};
}
weir_str_t api_http_path(weir_http_t* h) {
  return h ? view(ex_of(h)->path) : weir_str_t{};
}
weir_str_t api_http_query(weir_http_t* h) {
  return h ? view(ex_of(h)->query) : weir_str_t{};
}
weir_str_t api_http_host(weir_http_t* h) {
  return h ? view(ex_of(h)->host) : weir_str_t{};
}
weir_str_t api_http_client_ip(weir_http_t* h) {
  return h ? view(ex_of(h)->client_ip) : weir_str_t{};
}
uint16_t api_http_client_port(weir_http_t* h) {
  return h ? ex_of(h)->client_port : 0;
}
uint32_t api_http_status(weir_http_t* h) {
  return h ? ex_of(h)->status : 0;
}

http::Fields* fields_of(weir_http_t* h, weir_headers_which_t which) {
  if (h == nullptr)
    return nullptr;
  auto* ex = ex_of(h);
  return which == WEIR_HEADERS_RESPONSE ? ex->response : ex->request;
}

// Framing headers belong to the host: a filter that could set them could smuggle.
bool reserved_header(std::string_view name) {
  return boost::beast::iequals(name, "content-length") ||
         boost::beast::iequals(name, "transfer-encoding");
}

// What a plugin may write into a header block: a valid field that is not framing, short enough for
// the header container (16-bit lengths).
bool acceptable_header(std::string_view name, std::string_view value) {
  return http::valid_header_name(name) && http::valid_header_value(value) &&
         !reserved_header(name) && name.size() < 1024 && value.size() < 65000;
}

weir_status_t api_header_get(weir_http_t* h, weir_headers_which_t which, weir_str_t name,
                             size_t index, weir_str_t* out) {
  auto* f = fields_of(h, which);
  if (f == nullptr || out == nullptr)
    return WEIR_ERROR_INVALID;
  size_t i = 0;
  bool found = f->each_value(sv(name), [&](http::Fields::string_view v) {
    if (i++ != index)
      return false;
    *out = view(v);
    return true;
  });
  return found ? WEIR_OK : WEIR_ERROR_NOT_FOUND;
}

// Set (replace every field of that name) or add a header for a plugin.
weir_status_t write_header(weir_http_t* h, weir_headers_which_t which, weir_str_t name,
                           weir_str_t value, bool replace) {
  auto* f = fields_of(h, which);
  if (f == nullptr)
    return WEIR_ERROR_STATE;
  if (!acceptable_header(sv(name), sv(value)))
    return WEIR_ERROR_INVALID;
  try {
    if (replace)
      f->set(sv(name), sv(value));
    else
      f->insert(sv(name), sv(value));
  } catch (const std::exception&) {
    return WEIR_ERROR_NOMEM;
  }
  return WEIR_OK;
}

weir_status_t api_header_set(weir_http_t* h, weir_headers_which_t which, weir_str_t name,
                             weir_str_t value) {
  return write_header(h, which, name, value, true);
}

weir_status_t api_header_add(weir_http_t* h, weir_headers_which_t which, weir_str_t name,
                             weir_str_t value) {
  return write_header(h, which, name, value, false);
}

weir_status_t api_header_remove(weir_http_t* h, weir_headers_which_t which, weir_str_t name) {
  auto* f = fields_of(h, which);
  if (f == nullptr)
    return WEIR_ERROR_STATE;
  if (reserved_header(sv(name)))
    return WEIR_ERROR_INVALID;
  f->erase(sv(name));
  return WEIR_OK;
}

void api_header_each(weir_http_t* h, weir_headers_which_t which, weir_header_cb cb, void* user) {
  auto* f = fields_of(h, which);
  if (f == nullptr || cb == nullptr)
    return;
  // By index: a callback that edits the headers (which the ABI forbids) must not make the loop
  // read freed memory.
  for (size_t i = 0; i < f->size(); ++i) {
    const auto& field = f->begin()[i];
    if (cb(user, view(field.name_string()), view(field.value())) != 0)
      break;
  }
}

weir_status_t api_http_respond(weir_http_t* h, uint32_t status, weir_str_t content_type,
                               weir_str_t body) {
  if (h == nullptr)
    return WEIR_ERROR_INVALID;
  auto* ex = ex_of(h);
  if (!ex->can_respond)
    return WEIR_ERROR_STATE;
  if (status < 200 || status > 599)
    return WEIR_ERROR_INVALID;
  if (!http::valid_header_value(sv(content_type)) || content_type.len > 1024)
    return WEIR_ERROR_INVALID;
  try {
    ex->local = http::LocalResponse{status, std::string(sv(content_type)), std::string(sv(body))};
  } catch (const std::exception&) {
    return WEIR_ERROR_NOMEM;
  }
  return WEIR_OK;
}

// install_certificate and remove_certificate: only control-thread objects, i.e. instances given
// the control thread's timers (certificate providers, discovery, health), may change what every
// listener serves. Worker-thread objects and configurations (config_new) may not.
bool may_manage_certificates(HostCtx* c, const char* fn) {
  if (c->timer_context != nullptr)
    return true;
  c->log->error("{} refused: only control-thread plugin instances (certificate providers, "
                "discovery, health) may call it, not load balancers, filters or config_new",
                fn);
  return false;
}

weir_status_t api_install_certificate(weir_host_ctx_t* ctx, const weir_certificate_t* cert) {
  if (ctx == nullptr)
    return WEIR_ERROR_INVALID;
  auto* c = HostCtx::from(ctx);
  try {
    if (!may_manage_certificates(c, "install_certificate"))
      return WEIR_ERROR_STATE;
    // 1.1 has every field up to key_pem.
    if (cert == nullptr ||
        cert->struct_size < offsetof(weir_certificate_t, key_pem) + sizeof(weir_str_t)) {
      c->log->error("install_certificate: {}",
                    cert == nullptr ? "no certificate (NULL)" : "weir_certificate_t too small");
      return WEIR_ERROR_INVALID;
    }
    auto r = tls::CertStore::global().install(sv(cert->cert_pem), sv(cert->key_pem));
    using Status = tls::CertStore::InstallResult::Status;
    if (r.status != Status::Ok) {
      c->log->error("install_certificate: certificate not installed: {}", r.error);
      return r.status == Status::Invalid ? WEIR_ERROR_INVALID : WEIR_ERROR;
    }
    c->log->info("certificate {} installed for [{}] on {} TLS listener{}{}", r.subject,
                 fmt::join(r.names, ", "), r.listeners, r.listeners == 1 ? "" : "s",
                 r.replaced > 0 ? ", replacing the one installed before" : "");
    if (r.expired)
      c->log->warn("installed certificate {} has expired", r.subject);
    return WEIR_OK;
  } catch (const std::bad_alloc&) {
    return WEIR_ERROR_NOMEM;
  } catch (const std::exception& e) {
    c->log->error("install_certificate: {}", e.what());
    return WEIR_ERROR;
  }
}

weir_status_t api_remove_certificate(weir_host_ctx_t* ctx, weir_str_t name) {
  if (ctx == nullptr)
    return WEIR_ERROR_INVALID;
  auto* c = HostCtx::from(ctx);
  try {
    if (!may_manage_certificates(c, "remove_certificate"))
      return WEIR_ERROR_STATE;
    if (sv(name).empty())
      return WEIR_ERROR_INVALID;
    const size_t removed = tls::CertStore::global().remove(sv(name));
    if (removed == 0) {
      c->log->debug("remove_certificate: no installed certificate serves \"{}\"", sv(name));
      return WEIR_ERROR_NOT_FOUND;
    }
    c->log->info("{} installed certificate{} for \"{}\" removed", removed, removed == 1 ? "" : "s",
                 sv(name));
    return WEIR_OK;
  } catch (const std::bad_alloc&) {
    return WEIR_ERROR_NOMEM;
  } catch (const std::exception& e) {
    c->log->error("remove_certificate: {}", e.what());
    return WEIR_ERROR;
  }
}

// probe_start / fetch_start: control-thread objects only (they own a control-thread context).
OutboundService* outbound_of(HostCtx* c, const char* fn) {
  if (c->timer_context == nullptr) {
    c->log->error("{} refused: only control-thread plugin instances (health, discovery, "
                  "certificate providers) may call it",
                  fn);
    return nullptr;
  }
  if (!c->outbound)
    c->outbound = std::make_unique<OutboundService>(*c->timer_context);
  return c->outbound.get();
}

weir_request_id_t api_probe_start(weir_host_ctx_t* ctx, const weir_probe_t* probe, weir_probe_cb cb,
                                  void* user) {
  if (ctx == nullptr || probe == nullptr)
    return 0;
  auto* c = HostCtx::from(ctx);
  try {
    auto* out = outbound_of(c, "probe_start");
    return out != nullptr ? out->probe(*c, *probe, cb, user) : 0;
  } catch (const std::exception& e) {
    c->log->error("probe_start: {}", e.what());
    return 0;
  }
}

weir_request_id_t api_fetch_start(weir_host_ctx_t* ctx, const weir_fetch_t* fetch, weir_fetch_cb cb,
                                  void* user) {
  if (ctx == nullptr || fetch == nullptr)
    return 0;
  auto* c = HostCtx::from(ctx);
  try {
    auto* out = outbound_of(c, "fetch_start");
    return out != nullptr ? out->fetch(*c, *fetch, cb, user) : 0;
  } catch (const std::exception& e) {
    c->log->error("fetch_start: {}", e.what());
    return 0;
  }
}

void api_request_cancel(weir_host_ctx_t* ctx, weir_request_id_t id) {
  if (ctx == nullptr)
    return;
  auto* c = HostCtx::from(ctx);
  if (c->outbound)
    c->outbound->cancel(id);
}

weir_request_id_t api_dns_query(weir_host_ctx_t* ctx, weir_str_t name, weir_dns_type_t type,
                                weir_dns_cb cb, void* user) {
  if (ctx == nullptr)
    return 0;
  auto* c = HostCtx::from(ctx);
  try {
    auto* out = outbound_of(c, "dns_query");
    return out != nullptr ? out->dns(*c, sv(name), type, cb, user) : 0;
  } catch (const std::exception& e) {
    c->log->error("dns_query: {}", e.what());
    return 0;
  }
}

const weir_host_api_t kApi = {
    sizeof(weir_host_api_t), WEIR_ABI_MAJOR,    WEIR_ABI_MINOR,         api_log,
    api_log_enabled,         api_config_type,   api_config_get,         api_config_at,
    api_config_size,         api_config_each,   api_config_string,      api_config_int,
    api_config_float,        api_config_bool,   api_config_duration_ms, api_config_error,
    api_config_path,         api_timer_start,   api_timer_cancel,       api_now_ns,
    api_publish_targets,     api_report_health, api_http_method,        api_http_path,
    api_http_query,          api_http_host,     api_http_client_ip,     api_http_client_port,
    api_http_status,         api_header_get,    api_header_set,         api_header_add,
    api_header_remove,       api_header_each,   api_http_respond,       api_install_certificate,
    api_remove_certificate,  api_probe_start,   api_fetch_start,        api_request_cancel,
    api_dns_query,
};

} // namespace

const weir_host_api_t* host_api() {
  return &kApi;
}

} // namespace weir::core::plugin
