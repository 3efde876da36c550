// The effective configuration as TOML, every default written out. load_string() of the output
// gives back the same Config (positions aside).
#include "internal.hpp"
#include "weir/config/model.hpp"

#include <algorithm>
#include <cstdio>

namespace weir::config {

namespace {

using detail::toml_key;
using detail::toml_quote;

std::string plugin_to_toml(const PluginRef& ref) {
  if (ref.node.type == Node::Type::Table)
    return node_to_toml(ref.node);
  return "{ use = " + toml_quote(ref.use) + " }"; // a ref built in code, without its table
}

std::string plugins_to_toml(const std::vector<PluginRef>& refs) {
  std::string out = "[";
  for (size_t i = 0; i < refs.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += plugin_to_toml(refs[i]);
  }
  out += "]";
  return out;
}

std::string strings_to_toml(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += toml_quote(items[i]);
  }
  out += "]";
  return out;
}

// Always the `certificates` form, every key written.
std::string tls_to_toml(const TlsConfig& tls) {
  std::string out = "{ certificates = [";
  for (size_t i = 0; i < tls.certificates.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += "{ cert = " + toml_quote(tls.certificates[i].cert) +
           ", key = " + toml_quote(tls.certificates[i].key) + " }";
  }
  out += "], min-version = " + toml_quote(tls.min_version);
  out += ", max-version = " + toml_quote(tls.max_version);
  out += ", ciphers = " + toml_quote(tls.ciphers);
  out += ", ciphersuites = " + toml_quote(tls.ciphersuites);
  out += ", groups = " + toml_quote(tls.groups);
  out += ", session-tickets = ";
  out += tls.session_tickets ? "true" : "false";
  out += ", session-timeout = " + toml_quote(format_duration(tls.session_timeout));
  out += ", alpn = " + strings_to_toml(tls.alpn);
  out += " }";
  return out;
}

std::string cidrs_to_toml(const std::vector<Cidr>& items) {
  std::vector<std::string> texts;
  texts.reserve(items.size());
  for (const auto& c : items)
    texts.push_back(c.text);
  return strings_to_toml(texts);
}

// Only the keys that are set: an empty string means "the default" and is not a valid value.
std::string upstream_tls_to_toml(const UpstreamTlsConfig& tls) {
  std::string out = "{ verify = ";
  out += tls.verify ? "true" : "false";
  if (!tls.ca_file.empty())
    out += ", ca-file = " + toml_quote(tls.ca_file);
  if (!tls.server_name.empty())
    out += ", server-name = " + toml_quote(tls.server_name);
  if (!tls.cert.empty())
    out += ", cert = " + toml_quote(tls.cert);
  if (!tls.key.empty())
    out += ", key = " + toml_quote(tls.key);
  out += ", min-version = " + toml_quote(tls.min_version);
  out += " }";
  return out;
}

// "0660"
std::string mode_to_toml(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\"%04o\"", mode);
  return buf;
}

std::string listener_to_toml(const ListenerConfig& l) {
  std::string out = "{ address = " + toml_quote(l.address);
  if (l.address.rfind("unix:", 0) == 0) // mode is refused on other listeners
    out += ", mode = " + mode_to_toml(l.mode);
  out += ", h2c = ";
  out += l.h2c ? "true" : "false";
  out += ", proxy-protocol-from = " + cidrs_to_toml(l.proxy_protocol_from);
  if (l.tls)
    out += ", tls = " + tls_to_toml(*l.tls);
  out += " }";
  return out;
}

// One plain listener on one line; otherwise one listener a line (an inline table cannot span
// lines, an array can).
std::string listeners_to_toml(const std::vector<ListenerConfig>& listeners) {
  const bool multiline = listeners.size() > 1 ||
                         std::any_of(listeners.begin(), listeners.end(),
                                     [](const ListenerConfig& l) { return l.tls.has_value(); });
  std::string out = "[";
  for (size_t i = 0; i < listeners.size(); ++i) {
    if (multiline) {
      out += "\n  " + listener_to_toml(listeners[i]) + ",";
    } else {
      if (i > 0)
        out += ", ";
      out += listener_to_toml(listeners[i]);
    }
  }
  out += multiline ? "\n]" : "]";
  return out;
}

class Writer {
public:
  void line(std::string_view key, const std::string& value) {
    out += key;
    out += " = ";
    out += value;
    out += '\n';
  }
  void str(std::string_view key, std::string_view value) { line(key, toml_quote(value)); }
  void num(std::string_view key, uint64_t value) { line(key, std::to_string(value)); }
  void dur(std::string_view key, Duration value) { line(key, toml_quote(format_duration(value))); }
  void boolean(std::string_view key, bool value) { line(key, value ? "true" : "false"); }
  void header(const std::string& name) { out += "\n[" + name + "]\n"; }
  void array_header(const std::string& name) { out += "\n[[" + name + "]]\n"; }
  void comment(std::string_view text) {
    out += "# ";
    out += text;
    out += '\n';
  }

  std::string out;
};

} // namespace

std::string dump_toml(const Config& config) {
  Writer w;
  w.comment("weir effective configuration: every setting, defaults included.");

  w.header("system");
  w.num("workers", config.system.workers);
  w.line("plugin-dirs", strings_to_toml(config.system.plugin_dirs));
  w.dur("shutdown-grace", config.system.shutdown_grace);

  w.header("log");
  w.str("level", config.log.level);
  w.str("format", config.log.format);
  w.str("output", config.log.output);
  w.boolean("access-log", config.log.access_log);

  w.header("dns");
  w.line("servers", strings_to_toml(config.dns.servers));
  w.dur("timeout", config.dns.timeout);
  w.num("tries", config.dns.tries);

  if (!config.admin.listen.empty()) {
    w.header("admin");
    w.str("listen", config.admin.listen);
  } else {
    w.comment("admin: none (no admin endpoint)");
  }

  for (const auto& u : config.upstreams) {
    w.header("upstreams." + toml_key(u.name));
    w.line("discovery", plugin_to_toml(u.discovery));
    w.line("lb", plugin_to_toml(u.lb));
    if (u.health.size() == 1) // as written: one table (key paths stay "...health")
      w.line("health", plugin_to_toml(u.health[0]));
    else if (!u.health.empty())
      w.line("health", plugins_to_toml(u.health));
    else
      w.comment("health: none");
    w.dur("connect-timeout", u.connect_timeout);
    w.dur("response-timeout", u.response_timeout);
    if (u.request_timeout)
      w.dur("request-timeout", *u.request_timeout);
    else
      w.comment("request-timeout: none");
    w.num("max-tries", u.max_tries);
    if (u.retry_timeout)
      w.dur("retry-timeout", *u.retry_timeout);
    else
      w.comment("retry-timeout: none");
    w.dur("idle-timeout", u.idle_timeout);
    w.num("pool-size", u.pool_size);
    w.str("protocol", u.protocol);
    w.str("proxy-protocol", u.proxy_protocol);
    w.num("h2-max-concurrent-streams", u.h2_max_concurrent_streams);
    if (u.tls)
      w.line("tls", upstream_tls_to_toml(*u.tls));
    else
      w.comment("tls: none (plain TCP)");
  }

  for (const auto& s : config.services) {
    const std::string base = "services." + toml_key(s.name);
    w.header(base);
    w.line("listeners", listeners_to_toml(s.listeners));
    if (!s.upstream.empty())
      w.str("upstream", s.upstream);
    else
      w.comment("upstream: none (requests no route matches get 404)");
    w.line("filters", plugins_to_toml(s.filters));
    w.line("server-names", strings_to_toml(s.server_names));
    w.line("trusted-proxies", cidrs_to_toml(s.trusted_proxies));
    w.line("no-route", "{ status = " + std::to_string(s.no_route.status) +
                           ", body = " + toml_quote(s.no_route.body) +
                           ", content-type = " + toml_quote(s.no_route.content_type) + " }");

    w.header(base + ".limits");
    w.num("max-request-line", s.limits.max_request_line);
    w.num("max-header-bytes", s.limits.max_header_bytes);
    w.num("max-headers", s.limits.max_headers);
    w.num("max-body", s.limits.max_body);
    w.dur("header-timeout", s.limits.header_timeout);
    w.dur("keepalive-timeout", s.limits.keepalive_timeout);
    w.dur("send-timeout", s.limits.send_timeout);
    w.dur("tunnel-idle-timeout", s.limits.tunnel_idle_timeout);
    w.num("h2-max-concurrent-streams", s.limits.h2_max_concurrent_streams);
    w.num("h2-initial-window", s.limits.h2_initial_window);

    for (const auto& r : s.routes) {
      w.array_header(base + ".routes");
      if (r.path_prefix)
        w.str("path-prefix", *r.path_prefix);
      if (r.path_exact)
        w.str("path-exact", *r.path_exact);
      if (r.path_regex)
        w.str("path-regex", *r.path_regex);
      if (!r.hosts.empty())
        w.line("host", strings_to_toml(r.hosts));
      if (!r.methods.empty())
        w.line("methods", strings_to_toml(r.methods));
      w.str("upstream", r.upstream);
      if (r.connect_timeout)
        w.dur("connect-timeout", *r.connect_timeout);
      if (r.response_timeout)
        w.dur("response-timeout", *r.response_timeout);
      if (r.request_timeout)
        w.dur("request-timeout", *r.request_timeout);
      if (r.max_tries)
        w.num("max-tries", *r.max_tries);
      if (r.retry_timeout)
        w.dur("retry-timeout", *r.retry_timeout);
      w.line("filters", plugins_to_toml(r.filters));
    }
  }
  return std::move(w.out);
}

} // namespace weir::config
