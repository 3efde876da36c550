#include "core/runtime/plan.hpp"

#include "core/upstream/conn.hpp"

#include <boost/asio/ssl/context.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

namespace weir::core {

std::unique_ptr<Plan> Plan::build(config::Config cfg, const char* env_plugin_path,
                                  std::vector<std::string>& errors,
                                  std::vector<config::Diagnostic> config_errors) {
  const bool partial = !config_errors.empty();
  // In a partial model, a part the configuration layer found fault with holds defaults or half
  // of what the file says: checking it would report the same mistake again, or a wrong one.
  auto faulted = [&](std::string_view path) {
    return std::any_of(
        config_errors.begin(), config_errors.end(),
        [&](const config::Diagnostic& d) { return config::path_within(d.key_path, path); });
  };
  auto plan = std::make_unique<Plan>();
  plan->config = std::move(cfg);
  plan->registry = std::make_unique<plugin::Registry>();
  // Configured plugin directories are relative to the configuration file, like every path in
  // it, and must exist: a typo there would otherwise surface as "unknown load balancer".
  std::vector<std::string> configured;
  size_t before = errors.size();
  bool dirs_missing = false;
  auto base = std::filesystem::path(plan->config.source_path).parent_path();
  for (const auto& dir : plan->config.system.plugin_dirs) {
    std::filesystem::path p(dir);
    if (p.is_relative())
      p = base / p;
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) {
      errors.push_back(fmt::format("{}: system.plugin-dirs: \"{}\" is not a directory",
                                   plan->config.source_path, p.string()));
      dirs_missing = true;
      continue;
    }
    configured.push_back(p.lexically_normal().string());
  }
  plan->plugin_dirs = plugin::plugin_search_path(configured, env_plugin_path);
  plan->registry->load_dirs(plan->plugin_dirs, errors);
  bool load_failed = errors.size() != before;

  // Without all of its plugin directories (one missing, or `system` itself in error), a plugin
  // name may look unknown only for that: such a reference is not reported on its own.
  const bool dirs_uncertain =
      dirs_missing ||
      (partial &&
       std::any_of(config_errors.begin(), config_errors.end(), [](const config::Diagnostic& d) {
         return d.key_path == "system" || config::path_within(d.key_path, "system.plugin-dirs");
       }));
  std::vector<config::Diagnostic> diags = config_errors;
  auto make = [&](weir_kind_t kind,
                  const config::PluginRef& ref) -> std::shared_ptr<plugin::ModuleConfig> {
    if (partial && (ref.use.empty() || faulted(ref.node.path)))
      return nullptr;
    if (dirs_uncertain && plan->registry->find(kind, ref.use) == nullptr)
      return nullptr;
    return plugin::ModuleConfig::create(*plan->registry, kind, ref, diags);
  };

  const auto& c = plan->config;
  for (const auto& up : c.upstreams) {
    CompiledUpstream cu;
    cu.cfg = &up;
    cu.discovery = make(WEIR_KIND_DISCOVERY, up.discovery);
    cu.lb = make(WEIR_KIND_LB, up.lb);
    for (const auto& h : up.health) {
      cu.health.push_back(make(WEIR_KIND_HEALTH, h));
      if (cu.health.back() && plugin::HealthInstance::observes(*cu.health.back()))
        cu.observed = true;
    }
    if (up.tls && !(partial && faulted(up.tls->key_path))) {
      std::string error;
      cu.client_tls =
          upstream::make_client_tls(up.tls->verify, up.tls->ca_file, up.tls->cert, up.tls->key,
                                    up.tls->min_version, up.protocol, error);
      if (!cu.client_tls)
        diags.push_back({up.tls->loc, up.tls->key_path, error});
    }
    cu.proxy_protocol = up.proxy_protocol == "v1" ? 1 : up.proxy_protocol == "v2" ? 2 : 0;
    plan->upstreams.push_back(std::move(cu));
  }
  auto upstream_index = [&](const std::string& name) -> size_t {
    for (size_t i = 0; i < c.upstreams.size(); ++i)
      if (c.upstreams[i].name == name)
        return i;
    return c.upstreams.size(); // unknown: only in a partial model (the config layer said so)
  };
  for (const auto& svc : c.services) {
    CompiledService cs;
    cs.cfg = &svc;
    for (const auto& tp : svc.trusted_proxies) {
      std::string error;
      if (auto r = config::CidrRange::parse(tp.text, error))
        cs.trusted_proxies.push_back(*r);
    }
    for (const auto& f : svc.filters)
      cs.filters.push_back(make(WEIR_KIND_FILTER, f));
    auto policy_of = [&](size_t upstream) {
      ForwardPolicy p;
      if (upstream >= c.upstreams.size())
        return p;
      const auto& u = c.upstreams[upstream];
      p.connect_timeout = u.connect_timeout;
      p.response_timeout = u.response_timeout;
      p.request_timeout = u.request_timeout;
      p.max_tries = u.max_tries;
      p.retry_timeout = u.retry_timeout;
      return p;
    };
    for (const auto& r : svc.routes) {
      CompiledRoute cr;
      cr.exact = r.path_exact;
      cr.prefix = r.path_prefix;
      if (r.path_regex)
        cr.regex = std::make_shared<const config::Regex>(*r.path_regex);
      cr.hosts = r.hosts;
      cr.methods = r.methods;
      cr.file_order = cs.routes.size();
      cr.upstream = upstream_index(r.upstream);
      cr.policy = policy_of(cr.upstream);
      if (r.connect_timeout)
        cr.policy.connect_timeout = *r.connect_timeout;
      if (r.response_timeout)
        cr.policy.response_timeout = *r.response_timeout;
      if (r.request_timeout)
        cr.policy.request_timeout = *r.request_timeout;
      if (r.max_tries)
        cr.policy.max_tries = *r.max_tries;
      if (r.retry_timeout)
        cr.policy.retry_timeout = *r.retry_timeout;
      cr.filters = cs.filters;
      for (const auto& f : r.filters)
        cr.filters.push_back(make(WEIR_KIND_FILTER, f));
      cs.routes.push_back(std::move(cr));
    }
    // Precedence: exact matches, then the longest prefix (a route without a path matches like
    // an empty prefix), then regular expressions; file order breaks ties.
    auto rank = [](const CompiledRoute& r) { return r.exact ? 0 : r.regex ? 2 : 1; };
    auto host_kind = [](const CompiledRoute& r) {
      if (r.hosts.empty())
        return 0;
      bool exact = std::any_of(r.hosts.begin(), r.hosts.end(),
                               [](const std::string& h) { return !h.starts_with("*."); });
      return exact ? 2 : 1;
    };
    std::stable_sort(cs.routes.begin(), cs.routes.end(),
                     [&](const CompiledRoute& a, const CompiledRoute& b) {
                       if (rank(a) != rank(b))
                         return rank(a) < rank(b);
                       if (rank(a) == 1) {
                         size_t la = a.prefix ? a.prefix->size() : 0;
                         size_t lb = b.prefix ? b.prefix->size() : 0;
                         if (la != lb)
                           return la > lb;
                       }
                       // Equally good paths: a route naming hosts exactly beats one naming
                       // only wildcards, which beats one for any host (as server names do).
                       return host_kind(a) > host_kind(b);
                     });
    if (!svc.upstream.empty()) {
      CompiledRoute fb;
      fb.upstream = upstream_index(svc.upstream);
      fb.policy = policy_of(fb.upstream);
      fb.filters = cs.filters;
      cs.fallback = std::move(fb);
    }
    plan->services.push_back(std::move(cs));
  }

  // Listeners by address: services sharing one are virtual hosts on it (the config layer checked
  // that they agree on everything but certificates). Certificates are loaded here, so
  // `weir check` finds a missing file or a mismatched key.
  for (size_t si = 0; si < c.services.size(); ++si) {
    for (const auto& l : c.services[si].listeners) {
      auto it = std::find_if(plan->listeners.begin(), plan->listeners.end(),
                             [&](const CompiledListener& cl) {
                               return !l.share_key.empty() && cl.cfg->share_key == l.share_key;
                             });
      if (it == plan->listeners.end()) {
        CompiledListener cl;
        cl.cfg = &l;
        for (const auto& cidr : l.proxy_protocol_from) {
          std::string error;
          if (auto r = config::CidrRange::parse(cidr.text, error))
            cl.proxy_protocol_from.push_back(*r);
        }
        plan->listeners.push_back(std::move(cl));
        it = std::prev(plan->listeners.end());
      }
      it->services.push_back(si);
    }
  }
  // In a partial model too: a listener's TLS settings in error are at their defaults, which
  // load any certificate, and a certificate entry in error is not in the model.
  for (auto& cl : plan->listeners) {
    if (!cl.cfg->tls)
      continue;
    config::TlsConfig merged = *cl.cfg->tls;
    for (size_t k = 1; k < cl.services.size(); ++k)
      for (const auto& l : c.services[cl.services[k]].listeners)
        if (l.address == cl.cfg->address && l.tls)
          merged.certificates.insert(merged.certificates.end(), l.tls->certificates.begin(),
                                     l.tls->certificates.end());
    cl.tls = tls::ServerTls::create(merged, diags);
  }

  config::sort_diagnostics(diags, plan->config.source_path);
  for (const auto& d : diags)
    errors.push_back(d.to_string());
  if (partial || load_failed || !diags.empty())
    return nullptr;
  return plan;
}

} // namespace weir::core
