// Unit tests of weir::config: loading, validation diagnostics, overlays, dump round trip, units.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "weir/config/model.hpp"
#include "weir/config/node.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>
#include <vector>

using namespace weir::config;
using namespace std::chrono_literals;

namespace {

using Env = std::map<std::string, std::string>;

const char* const kContract = R"([system]
workers = 1
plugin-dirs = ["/extra/dir"]
[log]
level = "info"
format = "text"
access-log = true
[upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }] }
lb = { use = "round-robin" }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
upstream = "app"
[[services.web.routes]]
path-prefix = "/static"
upstream = "app"
filters = [{ use = "headers", request-set = { "x-env" = "test" }, response-remove = ["server"] }]
)";

const char* const kMinimal = R"([upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001"] }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)";

LoadResult load(std::string_view text, const Overrides& cli = {}, const Env& env = {}) {
  return load_string(text, "weir.toml", cli, env);
}

std::vector<std::string> lines_of(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& d : r.errors)
    out.push_back(d.to_string());
  return out;
}

std::string joined(const LoadResult& r) {
  std::string out;
  for (const auto& l : lines_of(r))
    out += l + "\n";
  return out;
}

// 1-based column of `needle` within line `line` (1-based) of `text`.
uint32_t column_of(std::string_view text, uint32_t line, std::string_view needle) {
  size_t start = 0;
  for (uint32_t i = 1; i < line; ++i)
    start = text.find('\n', start) + 1;
  size_t end = text.find('\n', start);
  std::string_view l = text.substr(start, end - start);
  size_t pos = l.find(needle);
  REQUIRE(pos != std::string_view::npos);
  return static_cast<uint32_t>(pos + 1);
}

// Structural equality, positions aside (they depend on the layout of the text).
void check_same(const Node& a, const Node& b) {
  INFO("node " << a.path);
  CHECK(a.type == b.type);
  CHECK(a.path == b.path);
  CHECK(a.string == b.string);
  CHECK(a.integer == b.integer);
  CHECK(a.floating == b.floating);
  CHECK(a.boolean == b.boolean);
  REQUIRE(a.array.size() == b.array.size());
  for (size_t i = 0; i < a.array.size(); ++i)
    check_same(a.array[i], b.array[i]);
  REQUIRE(a.table.size() == b.table.size());
  for (size_t i = 0; i < a.table.size(); ++i) {
    CHECK(a.table[i].first == b.table[i].first);
    check_same(a.table[i].second, b.table[i].second);
  }
}

void check_same(const PluginRef& a, const PluginRef& b) {
  CHECK(a.use == b.use);
  check_same(a.node, b.node);
}

void check_same(const std::vector<PluginRef>& a, const std::vector<PluginRef>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i)
    check_same(a[i], b[i]);
}

std::vector<std::string> texts(const std::vector<Cidr>& list) {
  std::vector<std::string> out;
  for (const auto& c : list)
    out.push_back(c.text);
  return out;
}

// Key paths aside too: the shorthand comes back in the `certificates` form.
void check_same(const TlsConfig& a, const TlsConfig& b) {
  REQUIRE(a.certificates.size() == b.certificates.size());
  for (size_t i = 0; i < a.certificates.size(); ++i) {
    CHECK(a.certificates[i].cert == b.certificates[i].cert);
    CHECK(a.certificates[i].key == b.certificates[i].key);
  }
  CHECK(a.min_version == b.min_version);
  CHECK(a.max_version == b.max_version);
  CHECK(a.ciphers == b.ciphers);
  CHECK(a.ciphersuites == b.ciphersuites);
  CHECK(a.groups == b.groups);
  CHECK(a.session_tickets == b.session_tickets);
  CHECK(a.session_timeout == b.session_timeout);
  CHECK(a.alpn == b.alpn);
}

void check_same(const Config& a, const Config& b) {
  CHECK(a.system.workers == b.system.workers);
  CHECK(a.system.plugin_dirs == b.system.plugin_dirs);
  CHECK(a.system.shutdown_grace == b.system.shutdown_grace);
  CHECK(a.log.level == b.log.level);
  CHECK(a.log.format == b.log.format);
  CHECK(a.log.output == b.log.output);
  CHECK(a.log.access_log == b.log.access_log);
  CHECK(a.admin.listen == b.admin.listen);
  REQUIRE(a.upstreams.size() == b.upstreams.size());
  for (size_t i = 0; i < a.upstreams.size(); ++i) {
    const auto& x = a.upstreams[i];
    const auto& y = b.upstreams[i];
    CHECK(x.name == y.name);
    check_same(x.discovery, y.discovery);
    check_same(x.lb, y.lb);
    check_same(x.health, y.health);
    CHECK(x.connect_timeout == y.connect_timeout);
    CHECK(x.request_timeout == y.request_timeout);
    CHECK(x.max_tries == y.max_tries);
    CHECK(x.retry_timeout == y.retry_timeout);
    CHECK(x.response_timeout == y.response_timeout);
    CHECK(x.idle_timeout == y.idle_timeout);
    CHECK(x.pool_size == y.pool_size);
    CHECK(x.protocol == y.protocol);
    CHECK(x.proxy_protocol == y.proxy_protocol);
    CHECK(x.h2_max_concurrent_streams == y.h2_max_concurrent_streams);
    REQUIRE(x.tls.has_value() == y.tls.has_value());
    if (x.tls) {
      CHECK(x.tls->verify == y.tls->verify);
      CHECK(x.tls->ca_file == y.tls->ca_file);
      CHECK(x.tls->server_name == y.tls->server_name);
      CHECK(x.tls->cert == y.tls->cert);
      CHECK(x.tls->key == y.tls->key);
      CHECK(x.tls->min_version == y.tls->min_version);
      CHECK(x.tls->key_path == y.tls->key_path);
    }
  }
  REQUIRE(a.services.size() == b.services.size());
  for (size_t i = 0; i < a.services.size(); ++i) {
    const auto& x = a.services[i];
    const auto& y = b.services[i];
    CHECK(x.name == y.name);
    REQUIRE(x.listeners.size() == y.listeners.size());
    for (size_t j = 0; j < x.listeners.size(); ++j) {
      CHECK(x.listeners[j].address == y.listeners[j].address);
      CHECK(x.listeners[j].mode == y.listeners[j].mode);
      CHECK(x.listeners[j].h2c == y.listeners[j].h2c);
      CHECK(texts(x.listeners[j].proxy_protocol_from) == texts(y.listeners[j].proxy_protocol_from));
      REQUIRE(x.listeners[j].tls.has_value() == y.listeners[j].tls.has_value());
      if (x.listeners[j].tls)
        check_same(*x.listeners[j].tls, *y.listeners[j].tls);
    }
    CHECK(x.upstream == y.upstream);
    REQUIRE(x.routes.size() == y.routes.size());
    for (size_t j = 0; j < x.routes.size(); ++j) {
      CHECK(x.routes[j].path_prefix == y.routes[j].path_prefix);
      CHECK(x.routes[j].path_exact == y.routes[j].path_exact);
      CHECK(x.routes[j].path_regex == y.routes[j].path_regex);
      CHECK(x.routes[j].hosts == y.routes[j].hosts);
      CHECK(x.routes[j].methods == y.routes[j].methods);
      CHECK(x.routes[j].connect_timeout == y.routes[j].connect_timeout);
      CHECK(x.routes[j].response_timeout == y.routes[j].response_timeout);
      CHECK(x.routes[j].request_timeout == y.routes[j].request_timeout);
      CHECK(x.routes[j].max_tries == y.routes[j].max_tries);
      CHECK(x.routes[j].retry_timeout == y.routes[j].retry_timeout);
      CHECK(x.routes[j].upstream == y.routes[j].upstream);
      check_same(x.routes[j].filters, y.routes[j].filters);
    }
    check_same(x.filters, y.filters);
    CHECK(x.no_route.status == y.no_route.status);
    CHECK(x.no_route.body == y.no_route.body);
    CHECK(x.no_route.content_type == y.no_route.content_type);
    CHECK(x.limits.max_request_line == y.limits.max_request_line);
    CHECK(x.limits.max_header_bytes == y.limits.max_header_bytes);
    CHECK(x.limits.max_headers == y.limits.max_headers);
    CHECK(x.limits.max_body == y.limits.max_body);
    CHECK(x.limits.header_timeout == y.limits.header_timeout);
    CHECK(x.limits.keepalive_timeout == y.limits.keepalive_timeout);
    CHECK(x.limits.send_timeout == y.limits.send_timeout);
    CHECK(x.limits.tunnel_idle_timeout == y.limits.tunnel_idle_timeout);
    CHECK(x.limits.h2_max_concurrent_streams == y.limits.h2_max_concurrent_streams);
    CHECK(x.limits.h2_initial_window == y.limits.h2_initial_window);
    CHECK(x.server_names == y.server_names);
    CHECK(texts(x.trusted_proxies) == texts(y.trusted_proxies));
  }
}

// load -> dump -> load -> dump: the two dumps are identical and so are the configs.
void check_round_trip(std::string_view text) {
  auto first = load(text);
  INFO(joined(first));
  REQUIRE(first.ok());
  const std::string dump1 = dump_toml(*first.config);
  auto second = load_string(dump1, "dump.toml", {}, {});
  INFO("dump:\n" << dump1 << joined(second));
  REQUIRE(second.ok());
  const std::string dump2 = dump_toml(*second.config);
  CHECK(dump1 == dump2);
  check_same(*first.config, *second.config);
}

} // namespace

TEST_CASE("the contract example loads as written") {
  auto r = load(kContract);
  INFO(joined(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.source_path == "weir.toml");
  CHECK(c.system.workers == 1);
  CHECK(c.system.plugin_dirs == std::vector<std::string>{"/extra/dir"});
  CHECK(c.log.level == "info");
  CHECK(c.log.format == "text");
  CHECK(c.log.access_log);

  REQUIRE(c.upstreams.size() == 1);
  const UpstreamConfig& app = c.upstreams[0];
  CHECK(app.name == "app");
  CHECK(app.loc.line == 8);
  CHECK(app.discovery.use == "static");
  CHECK(app.lb.use == "round-robin");
  CHECK(app.health.empty());
  CHECK(c.find_upstream("app") == &app);
  CHECK(c.find_upstream("nope") == nullptr);

  const Node* targets = app.discovery.node.get("targets");
  REQUIRE(targets != nullptr);
  REQUIRE(targets->type == Node::Type::Array);
  REQUIRE(targets->array.size() == 2);
  CHECK(targets->array[0].string == "127.0.0.1:9001");
  const Node* weight = targets->array[1].get("weight");
  REQUIRE(weight != nullptr);
  CHECK(weight->type == Node::Type::Integer);
  CHECK(weight->integer == 2);

  REQUIRE(c.services.size() == 1);
  const ServiceConfig& web = c.services[0];
  CHECK(web.name == "web");
  REQUIRE(web.listeners.size() == 1);
  CHECK(web.listeners[0].address == "127.0.0.1:8080");
  CHECK(web.listeners[0].loc.line == 12);
  CHECK(web.upstream == "app");
  CHECK(web.filters.empty());
  REQUIRE(web.routes.size() == 1);
  const RouteConfig& route = web.routes[0];
  CHECK(route.path_prefix == std::optional<std::string>("/static"));
  CHECK_FALSE(route.path_exact.has_value());
  CHECK(route.upstream == "app");
  CHECK(route.loc.line == 14);
  REQUIRE(route.filters.size() == 1);
  CHECK(route.filters[0].use == "headers");
  const Node* set = route.filters[0].node.get("request-set");
  REQUIRE(set != nullptr);
  REQUIRE(set->get("x-env") != nullptr);
  CHECK(set->get("x-env")->string == "test");
  const Node* remove = route.filters[0].node.get("response-remove");
  REQUIRE(remove != nullptr);
  REQUIRE(remove->array.size() == 1);
  CHECK(remove->array[0].string == "server");
}

TEST_CASE("plugin nodes carry paths and source positions") {
  auto r = load(kContract);
  REQUIRE(r.ok());
  const auto& app = r.config->upstreams[0];
  const Node& d = app.discovery.node;
  CHECK(d.path == "upstreams.app.discovery");
  CHECK(d.loc.file == "weir.toml");
  CHECK(d.loc.line == 9);
  CHECK(d.loc.column == column_of(kContract, 9, "{ use"));
  // Table entries keep the file order, `use` included.
  REQUIRE(d.table.size() == 2);
  CHECK(d.table[0].first == "use");
  CHECK(d.table[1].first == "targets");
  CHECK(d.table[0].second.path == "upstreams.app.discovery.use");

  const Node* targets = d.get("targets");
  REQUIRE(targets);
  CHECK(targets->path == "upstreams.app.discovery.targets");
  CHECK(targets->array[0].path == "upstreams.app.discovery.targets[0]");
  CHECK(targets->array[0].loc.column == column_of(kContract, 9, "\"127.0.0.1:9001\""));
  CHECK(targets->array[1].path == "upstreams.app.discovery.targets[1]");
  const Node* weight = targets->array[1].get("weight");
  REQUIRE(weight);
  CHECK(weight->path == "upstreams.app.discovery.targets[1].weight");
  CHECK(weight->loc.file == "weir.toml");
  CHECK(weight->loc.line == 9);
  CHECK(weight->loc.column == column_of(kContract, 9, "2 }"));

  const auto& filter = r.config->services[0].routes[0].filters[0].node;
  CHECK(filter.path == "services.web.routes[0].filters[0]");
  CHECK(filter.loc.line == 17);
  const Node* env = filter.get("request-set")->get("x-env");
  REQUIRE(env);
  CHECK(env->path == "services.web.routes[0].filters[0].request-set.x-env");
  CHECK(env->loc.column == column_of(kContract, 17, "\"test\""));
  CHECK(filter.get("response-remove")->array[0].path ==
        "services.web.routes[0].filters[0].response-remove[0]");

  // A defaulted lb still has a table with paths.
  auto m = load(kMinimal);
  REQUIRE(m.ok());
  const Node& lb = m.config->upstreams[0].lb.node;
  CHECK(lb.path == "upstreams.app.lb");
  REQUIRE(lb.get("use"));
  CHECK(lb.get("use")->string == "round-robin");
  CHECK(lb.get("use")->path == "upstreams.app.lb.use");
}

TEST_CASE("plugin tables may be standard tables") {
  const char* text = R"(# comment
[upstreams.app.discovery]
use = "static"
targets = ["127.0.0.1:1"]
[upstreams.app.health]
use = "tcp"
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
[[services.web.routes]]
path-prefix = "/x"
upstream = "app"
[[services.web.routes.filters]]
use = "gzip"
level = 5
)";
  auto r = load(text);
  INFO(joined(r));
  REQUIRE(r.ok());
  const auto& u = r.config->upstreams.at(0);
  CHECK(u.loc.line == 2);
  CHECK(u.discovery.use == "static");
  CHECK(u.discovery.node.loc.line == 2);
  CHECK(u.discovery.node.get("targets")->array[0].loc.line == 4);
  REQUIRE(u.health.size() == 1);
  CHECK(u.health[0].node.get("use")->loc.line == 6);
  const auto& f = r.config->services.at(0).routes.at(0).filters.at(0);
  CHECK(f.use == "gzip");
  CHECK(f.node.path == "services.web.routes[0].filters[0]");
  CHECK(f.node.get("level")->path == "services.web.routes[0].filters[0].level");
  CHECK(f.node.get("level")->loc.line == 14);
  CHECK(f.node.get("level")->loc.column == 9);
  check_round_trip(text);
}

TEST_CASE("keys that are not bare are quoted in paths") {
  auto r = load(R"([upstreams.app]
discovery = { use = "static", "a.b" = { "c d" = 1 } }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  REQUIRE(r.ok());
  const Node* ab = r.config->upstreams[0].discovery.node.get("a.b");
  REQUIRE(ab);
  CHECK(ab->path == R"(upstreams.app.discovery."a.b")");
  CHECK(ab->get("c d")->path == R"(upstreams.app.discovery."a.b"."c d")");
}

TEST_CASE("every default") {
  auto r = load(kMinimal);
  INFO(joined(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.system.workers == 0);
  CHECK(c.system.plugin_dirs.empty());
  CHECK(c.system.shutdown_grace == 30s);
  CHECK(c.log.level == "info");
  CHECK(c.log.format == "text");
  CHECK(c.log.output == "stdout");
  CHECK(c.log.access_log == true);
  const auto& u = c.upstreams.at(0);
  CHECK(u.lb.use == "round-robin");
  CHECK(u.health.empty());
  CHECK(u.connect_timeout == 5s);
  CHECK(u.response_timeout == 60s);
  CHECK(u.idle_timeout == 60s);
  CHECK(u.pool_size == 64);
  const auto& s = c.services.at(0);
  CHECK(s.upstream.empty());
  CHECK(s.routes.empty());
  CHECK(s.filters.empty());
  CHECK(s.limits.max_request_line == 8192);
  CHECK(s.limits.max_header_bytes == 32768);
  CHECK(s.limits.max_headers == 100);
  CHECK(s.limits.max_body == 0);
  CHECK(s.limits.header_timeout == 60s);
  CHECK(s.limits.keepalive_timeout == 75s);
  CHECK(s.limits.send_timeout == 60s);
}

TEST_CASE("every setting can be given") {
  auto r = load(R"([system]
workers = 8
plugin-dirs = ["/a", "/b"]
shutdown-grace = "1m30s"
[log]
level = "debug"
format = "json"
output = "/var/log/weir.log"
access-log = false
[upstreams.api]
discovery = { use = "dns", name = "api.internal" }
lb = { use = "least-conn" }
health = { use = "http-check", path = "/healthz", interval = "5s" }
connect-timeout = "250ms"
response-timeout = "2m"
idle-timeout = "1h"
pool-size = 65536
[services.web]
listeners = [{ address = "0.0.0.0:80" }, { address = "[::1]:0" }]
filters = [{ use = "request-id" }]
[services.web.limits]
max-request-line = "16KiB"
max-header-bytes = 65536
max-headers = 50
max-body = "10MB"
header-timeout = "10s"
keepalive-timeout = "1d"
send-timeout = "30s"
[[services.web.routes]]
path-exact = "/health"
upstream = "api"
)");
  INFO(joined(r));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.system.workers == 8);
  CHECK(c.system.plugin_dirs == std::vector<std::string>{"/a", "/b"});
  CHECK(c.system.shutdown_grace == 90s);
  CHECK(c.log.level == "debug");
  CHECK(c.log.format == "json");
  CHECK(c.log.output == "/var/log/weir.log");
  CHECK_FALSE(c.log.access_log);
  const auto& u = c.upstreams.at(0);
  CHECK(u.lb.use == "least-conn");
  REQUIRE(u.health.size() == 1);
  CHECK(u.health[0].use == "http-check");
  CHECK(u.health[0].node.get("interval")->string == "5s");
  CHECK(u.connect_timeout == 250ms);
  CHECK(u.response_timeout == 2min);
  CHECK(u.idle_timeout == 1h);
  CHECK(u.pool_size == 65536);
  const auto& s = c.services.at(0);
  REQUIRE(s.listeners.size() == 2);
  CHECK(s.listeners[1].address == "[::1]:0");
  REQUIRE(s.filters.size() == 1);
  CHECK(s.filters[0].use == "request-id");
  CHECK(s.limits.max_request_line == 16384);
  CHECK(s.limits.max_header_bytes == 65536);
  CHECK(s.limits.max_headers == 50);
  CHECK(s.limits.max_body == 10'000'000);
  CHECK(s.limits.header_timeout == 10s);
  CHECK(s.limits.keepalive_timeout == 24h);
  CHECK(s.limits.send_timeout == 30s);
  REQUIRE(s.routes.size() == 1);
  CHECK(s.routes[0].path_exact == std::optional<std::string>("/health"));
  CHECK_FALSE(s.routes[0].path_prefix.has_value());
  check_round_trip(R"([upstreams.api]
discovery = { use = "dns", name = "api.internal" }
health = { use = "http-check", path = "/healthz", interval = "5s" }
[services.web]
listeners = [{ address = "0.0.0.0:80" }, { address = "[::1]:0" }]
filters = [{ use = "request-id" }]
[[services.web.routes]]
path-exact = "/health"
upstream = "api"
)");
}

TEST_CASE("three mistakes give three diagnostics in file order") {
  const char* text = R"([system]
workers = "four"
[log]
level = "verbose"
[upstreams.app]
discovery = { use = "static" }
pol-size = 3
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)";
  auto r = load(text);
  CHECK_FALSE(r.ok());
  // The partial model is kept for the plugins' checks: values in error at their defaults, the
  // rest as written.
  REQUIRE(r.config.has_value());
  CHECK(r.config->system.workers == 0);
  CHECK(r.config->log.level == "info");
  REQUIRE(r.config->upstreams.size() == 1);
  CHECK(r.config->upstreams[0].discovery.use == "static");
  CHECK(r.config->services.at(0).listeners.at(0).address == "127.0.0.1:8080");
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].loc.line == 2);
  CHECK(r.errors[0].loc.column == 11);
  CHECK(r.errors[0].key_path == "system.workers");
  CHECK(r.errors[1].loc.line == 4);
  CHECK(r.errors[1].loc.column == 9);
  CHECK(r.errors[1].key_path == "log.level");
  CHECK(r.errors[2].loc.line == 7);
  CHECK(r.errors[2].loc.column == 1);
  CHECK(r.errors[2].key_path == "upstreams.app");
  auto lines = lines_of(r);
  CHECK(lines[0] == "weir.toml:2:11: system.workers: expected an integer, got a string");
  CHECK(lines[1] == "weir.toml:4:9: log.level: unknown log level \"verbose\" (allowed: trace, "
                    "debug, info, warn, error)");
  CHECK(lines[2] ==
        "weir.toml:7:1: upstreams.app: unknown key \"pol-size\" (did you mean \"pool-size\"?)");
}

TEST_CASE("errors come out sorted even when found out of order") {
  // Services are checked after upstreams, whatever the file order.
  auto r = load(R"([services.web]
listeners = []
[upstreams.app]
discovery = { use = "Static" }
)");
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].loc.line == 2);
  CHECK(r.errors[1].loc.line == 4);
  CHECK(r.errors[1].key_path == "upstreams.app.discovery.use");
  CHECK(r.errors[1].message.find("invalid plugin name \"Static\"") == 0);
}

TEST_CASE("unknown keys") {
  SUBCASE("close to a known key") {
    auto r = load(std::string("[sytem]\nworkers = 2\n") + kMinimal);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() ==
          "weir.toml:1:2: unknown key \"sytem\" (did you mean \"system\"?)");
  }
  SUBCASE("far from every known key lists the allowed ones") {
    auto r = load(std::string(kMinimal) + "colour = \"blue\"\n");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() ==
          "weir.toml:5:1: services.web: unknown key \"colour\" (allowed: listeners, upstream, "
          "routes, filters, limits, server-names, trusted-proxies, no-route)");
  }
  SUBCASE("in limits, routes and listeners") {
    auto r = load(R"([upstreams.app]
discovery = { use = "static" }
[services.web]
listeners = [{ address = "127.0.0.1:8080", tsl = true }]
[services.web.limits]
max-bdy = 10
[[services.web.routes]]
path-prefix = "/"
upstream = "app"
fliters = []
)");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] ==
          "weir.toml:4:44: services.web.listeners[0]: unknown key \"tsl\" (allowed: address, tls, "
          "mode, h2c, proxy-protocol-from)");
    CHECK(
        lines[1] ==
        "weir.toml:6:1: services.web.limits: unknown key \"max-bdy\" (did you mean \"max-body\"?)");
    CHECK(lines[2] == "weir.toml:10:1: services.web.routes[0]: unknown key \"fliters\" (did you "
                      "mean \"filters\"?)");
  }
  SUBCASE("keys inside plugin tables belong to the plugin") {
    auto r = load(R"([upstreams.app]
discovery = { use = "static", anything = { goes = [1, 2.5, true] } }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
    CHECK(r.ok());
  }
}

TEST_CASE("did_you_mean") {
  std::vector<std::string> keys{"pool-size", "idle-timeout", "connect-timeout"};
  CHECK(did_you_mean("pol-size", keys) == "pool-size");
  CHECK(did_you_mean("Pool-Size", keys) == "pool-size");
  CHECK(did_you_mean("idle-timout", keys) == "idle-timeout");
  CHECK(did_you_mean("banana", keys) == "");
  CHECK(did_you_mean("x", {}) == "");
}

TEST_CASE("bad values name what was expected") {
  auto errors_for = [](const std::string& section) {
    return lines_of(load(section + "\n" + kMinimal));
  };
  SUBCASE("enum lists the allowed values") {
    auto lines = errors_for("[log]\nformat = \"xml\"");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] ==
          "weir.toml:2:10: log.format: unknown log format \"xml\" (allowed: text, json)");
  }
  SUBCASE("duration given as an integer") {
    auto lines = errors_for("[system]\nshutdown-grace = 5000");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "weir.toml:2:18: system.shutdown-grace: expected a duration string like "
                      "\"5s\", got an integer (durations need a unit: write \"5000ms\" for "
                      "milliseconds or \"5000s\" for seconds)");
  }
  SUBCASE("malformed duration") {
    auto lines = errors_for("[system]\nshutdown-grace = \"5 sec\"");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("system.shutdown-grace: invalid duration \"5 sec\"") != std::string::npos);
  }
  SUBCASE("out of range") {
    auto lines = errors_for("[system]\nworkers = 2000");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "weir.toml:2:11: system.workers: must be between 0 and 1024 (got 2000)");
  }
  SUBCASE("booleans and strings") {
    auto lines = errors_for("[log]\naccess-log = \"yes\"\noutput = \"\"");
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] ==
          "weir.toml:2:14: log.access-log: expected a boolean (true or false), got a string");
    CHECK(lines[1] == "weir.toml:3:10: log.output: must not be empty");
  }
  SUBCASE("plugin given as a bare string") {
    auto lines = lines_of(load(R"([upstreams.app]
discovery = "static"
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)"));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "weir.toml:2:13: upstreams.app.discovery: expected a plugin table like { "
                      "use = \"name\" }, got a string (write { use = \"static\" })");
  }
  SUBCASE("plugin without use") {
    auto lines = lines_of(load(R"([upstreams.app]
discovery = { targets = [] }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)"));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("weir.toml:2:13: upstreams.app.discovery: missing key \"use\"", 0) == 0);
  }
  SUBCASE("sizes") {
    auto r = load(std::string(kMinimal) + R"([services.web.limits]
max-request-line = 0
max-header-bytes = "64kb"
max-body = -1
max-headers = 0
header-timeout = "0s"
)");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] ==
          "weir.toml:6:20: services.web.limits.max-request-line: must be greater than zero");
    CHECK(lines[1].find("services.web.limits.max-header-bytes: invalid size \"64kb\"") !=
          std::string::npos);
    CHECK(lines[1].find("(allowed units: B, KB, KiB, MB, MiB, GB, GiB)") != std::string::npos);
    CHECK(lines[2] ==
          "weir.toml:8:12: services.web.limits.max-body: must not be negative (got -1)");
    CHECK(lines[3] == "weir.toml:9:15: services.web.limits.max-headers: must be between 1 and "
                      "65536 (got 0)");
    CHECK(lines[4] ==
          "weir.toml:10:18: services.web.limits.header-timeout: must be greater than zero");
  }
  SUBCASE("dates are refused") {
    auto lines = errors_for("[system]\nworkers = 1979-05-27");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("system.workers: dates and times are not supported") != std::string::npos);
  }
  SUBCASE("names") {
    auto lines = lines_of(load(R"([upstreams."my app"]
discovery = { use = "static" }
[services."web!"]
listeners = [{ address = "127.0.0.1:8080" }]
)"));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "weir.toml:1:12: upstreams.\"my app\": invalid upstream name \"my app\": use "
                      "only letters, digits, \"_\" and \"-\"");
    CHECK(lines[1].find("invalid service name \"web!\"") != std::string::npos);
  }
}

TEST_CASE("missing and unknown upstreams") {
  SUBCASE("a route names a missing upstream: the known ones are listed") {
    auto r = load(R"([upstreams.app]
discovery = { use = "static" }
[upstreams.api]
discovery = { use = "static" }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
upstream = "ap"
[[services.web.routes]]
path-prefix = "/x"
upstream = "zzz"
)");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] ==
          "weir.toml:7:12: services.web.upstream: unknown upstream \"ap\" (did you mean "
          "\"app\"?; defined upstreams: app, api)");
    CHECK(lines[1] == "weir.toml:10:12: services.web.routes[0].upstream: unknown upstream \"zzz\" "
                      "(defined upstreams: app, api)");
  }
  SUBCASE("no upstreams at all") {
    auto r = load(R"([services.web]
listeners = [{ address = "127.0.0.1:8080" }]
upstream = "app"
)");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].message ==
          "unknown upstream \"app\" (no upstreams are defined; add one with [upstreams.app])");
  }
  SUBCASE("discovery is required") {
    auto r = load(R"([upstreams.app]
lb = { use = "round-robin" }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
upstream = "app"
)");
    REQUIRE(r.errors.size() == 1); // and no cascade onto the reference
    CHECK(r.errors[0].loc.line == 1);
    CHECK(r.errors[0].key_path == "upstreams.app");
    CHECK(r.errors[0].message.rfind("missing required key \"discovery\"", 0) == 0);
  }
  SUBCASE("upstreams that are not a table do not cascade") {
    auto r = load(R"(upstreams = 5
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
upstream = "app"
)");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "weir.toml:1:13: upstreams: expected a table, got an integer");
  }
}

TEST_CASE("services and listeners") {
  SUBCASE("at least one service") {
    auto r = load("[system]\nworkers = 1\n");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].key_path == "services");
    CHECK(r.errors[0].to_string().rfind("weir.toml: services: at least one service is required",
                                        0) == 0);
    auto empty = load("");
    REQUIRE(empty.errors.size() == 1);
    CHECK(empty.errors[0].key_path == "services");
  }
  SUBCASE("at least one listener") {
    auto r = load("[services.web]\nlisteners = []\n[services.api]\nupstream = \"x\"\n"
                  "[upstreams.x]\ndiscovery = { use = \"static\" }\n");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("weir.toml:2:13: services.web.listeners: at least one listener is "
                         "required",
                         0) == 0);
    CHECK(lines[1].rfind("weir.toml:3:1: services.api: missing required key \"listeners\"", 0) ==
          0);
  }
  SUBCASE("addresses") {
    auto r = load(R"([services.web]
listeners = [
  { address = "127.0.0.1:8080" },
  { address = "[::1]:8080" },
  { address = "0.0.0.0:0" },
  { address = "localhost:80" },
  { address = "::1:80" },
  { address = "127.0.0.1:65536" },
  { address = "127.0.0.1" },
  { address = "[fe80::zz]:80" },
  "127.0.0.1:81",
  { port = 80 },
]
)");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 8);
    CHECK(lines[0].find(":6:15: services.web.listeners[3].address: invalid IP address "
                        "\"localhost\" in listener address \"localhost:80\"") != std::string::npos);
    CHECK(lines[1].find("listeners[4].address: invalid listener address \"::1:80\": IPv6 "
                        "addresses must be in brackets") != std::string::npos);
    CHECK(lines[2].find("listeners[5].address: invalid port \"65536\"") != std::string::npos);
    CHECK(lines[3].find("listeners[6].address: invalid listener address \"127.0.0.1\"") !=
          std::string::npos);
    CHECK(lines[4].find("listeners[7].address: invalid IPv6 address \"fe80::zz\"") !=
          std::string::npos);
    CHECK(
        lines[5].find("listeners[8]: expected a listener table like { address = "
                      "\"0.0.0.0:8080\" }, got a string (write { address = \"127.0.0.1:81\" })") !=
        std::string::npos);
    // Same line: sorted by column.
    CHECK(lines[6].find(":12:3: services.web.listeners[9]: missing required key \"address\"") !=
          std::string::npos);
    CHECK(lines[7].find(":12:5: services.web.listeners[9]: unknown key \"port\"") !=
          std::string::npos);
  }
  SUBCASE("an address twice in one service, port 0 excepted") {
    auto r = load(R"([services.a]
listeners = [{ address = "127.0.0.1:8080" }, { address = "[::1]:0" }, { address = "[::1]:9000" },
  { address = "127.0.0.1:8080" }, { address = "[::1]:0" }, { address = "[0:0::1]:9000" }]
)");
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "weir.toml:3:15: services.a.listeners[3].address: listener address "
                      "\"127.0.0.1:8080\" is already listed by this service (line 2); a service "
                      "listens on an address once");
    CHECK(lines[1].find("services.a.listeners[5].address: listener address \"[0:0::1]:9000\" is "
                        "already listed by this service (line 2)") != std::string::npos);
  }
}

// --- listener TLS --------------------------------------------------------------------------------

namespace {

std::string cwd() {
  char buf[4096];
  REQUIRE(getcwd(buf, sizeof buf) != nullptr);
  return buf;
}

// A service whose only listener is `listener`, on line 3.
std::string one_listener(std::string_view listener) {
  return "[services.web]\nlisteners = [\n  " + std::string(listener) + ",\n]\n";
}

// The diagnostics for `one_listener(listener)`.
std::vector<std::string> listener_errors(std::string_view listener) {
  return lines_of(load_string(one_listener(listener), "/etc/weir/weir.toml", {}, {}));
}

// "/etc/weir/weir.toml:3:COL: " with COL the column of `needle` on the listener's line.
std::string at(std::string_view listener, std::string_view needle) {
  return "/etc/weir/weir.toml:3:" + std::to_string(column_of(one_listener(listener), 3, needle)) +
         ": ";
}

} // namespace

TEST_CASE("listener TLS: the shorthand is one certificate") {
  const std::string text = one_listener(
      R"({ address = "127.0.0.1:8443", tls = { cert = "certs/a.pem", key = "/keys/a.key" } })");
  auto r = load_string(text, "/etc/weir/weir.toml", {}, {});
  INFO(joined(r));
  REQUIRE(r.ok());
  const ListenerConfig& l = r.config->services.at(0).listeners.at(0);
  CHECK(l.address == "127.0.0.1:8443");
  REQUIRE(l.tls.has_value());
  const TlsConfig& tls = *l.tls;
  CHECK(tls.key_path == "services.web.listeners[0].tls");
  CHECK(tls.loc.file == "/etc/weir/weir.toml");
  CHECK(tls.loc.line == 3);
  CHECK(tls.loc.column == column_of(text, 3, "{ cert"));
  REQUIRE(tls.certificates.size() == 1);
  const TlsCertificate& c = tls.certificates[0];
  CHECK(c.cert == "/etc/weir/certs/a.pem");
  CHECK(c.key == "/keys/a.key");
  // The shorthand's certificate is the tls table itself.
  CHECK(c.key_path == "services.web.listeners[0].tls");
  CHECK(c.loc.line == 3);
  CHECK(c.loc.column == tls.loc.column);
}

TEST_CASE("listener TLS: defaults") {
  auto r = load_string(std::string(kMinimal) + R"([services.tls]
listeners = [{ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key" } }]
)",
                       "/srv/weir.toml", {}, {});
  INFO(joined(r));
  REQUIRE(r.ok());
  CHECK_FALSE(r.config->services.at(0).listeners.at(0).tls.has_value()); // plain HTTP
  const auto& tls = r.config->services.at(1).listeners.at(0).tls;
  REQUIRE(tls.has_value());
  REQUIRE(tls->certificates.size() == 1);
  CHECK(tls->certificates[0].cert == "/srv/a.pem");
  CHECK(tls->certificates[0].key == "/srv/a.key");
  const TlsConfig defaults;
  CHECK(tls->min_version == "1.2");
  CHECK(tls->max_version == "1.3");
  CHECK(tls->ciphers == defaults.ciphers);
  CHECK(tls->ciphers.rfind("ECDHE-ECDSA-AES128-GCM-SHA256:", 0) == 0);
  CHECK(tls->ciphersuites == defaults.ciphersuites);
  CHECK(tls->groups == "X25519:P-256:P-384");
  CHECK(tls->session_tickets == true);
  CHECK(tls->session_timeout == 1h);
  CHECK(tls->alpn == std::vector<std::string>{"h2", "http/1.1"});
}

TEST_CASE("listener TLS: the certificates array and every setting") {
  const char* text = R"([services.web]
listeners = [
  { address = "127.0.0.1:8080" },
  { address = "127.0.0.1:9443", tls = { certificates = [{ cert = "a.pem", key = "a.key" }, { cert = "/b/b.pem", key = "b.key" }], min-version = "1.3", max-version = "1.3", ciphers = "ECDHE-RSA-AES128-GCM-SHA256", ciphersuites = "TLS_AES_256_GCM_SHA384", groups = "X25519:P-256", session-tickets = false, session-timeout = "90s", alpn = ["http/1.1", "h2"] } },
]
)";
  auto r = load_string(text, "/etc/weir/weir.toml", {}, {});
  INFO(joined(r));
  REQUIRE(r.ok());
  const auto& listeners = r.config->services.at(0).listeners;
  REQUIRE(listeners.size() == 2);
  CHECK_FALSE(listeners[0].tls.has_value());
  REQUIRE(listeners[1].tls.has_value());
  const TlsConfig& tls = *listeners[1].tls;
  CHECK(tls.key_path == "services.web.listeners[1].tls");
  CHECK(tls.loc.line == 4);
  CHECK(tls.loc.column == column_of(text, 4, "{ certificates"));
  REQUIRE(tls.certificates.size() == 2);
  CHECK(tls.certificates[0].cert == "/etc/weir/a.pem");
  CHECK(tls.certificates[0].key == "/etc/weir/a.key");
  CHECK(tls.certificates[0].key_path == "services.web.listeners[1].tls.certificates[0]");
  CHECK(tls.certificates[0].loc.line == 4);
  CHECK(tls.certificates[0].loc.column == column_of(text, 4, "{ cert = \"a.pem\""));
  CHECK(tls.certificates[1].cert == "/b/b.pem");
  CHECK(tls.certificates[1].key == "/etc/weir/b.key");
  CHECK(tls.certificates[1].key_path == "services.web.listeners[1].tls.certificates[1]");
  CHECK(tls.certificates[1].loc.column == column_of(text, 4, "{ cert = \"/b/b.pem\""));
  CHECK(tls.min_version == "1.3");
  CHECK(tls.max_version == "1.3");
  CHECK(tls.ciphers == "ECDHE-RSA-AES128-GCM-SHA256");
  CHECK(tls.ciphersuites == "TLS_AES_256_GCM_SHA384");
  CHECK(tls.groups == "X25519:P-256");
  CHECK(tls.session_tickets == false);
  CHECK(tls.session_timeout == 90s);
  CHECK(tls.alpn == std::vector<std::string>{"http/1.1", "h2"});
}

TEST_CASE("listener TLS: table headers work like inline tables") {
  const char* text = R"([[services.web.listeners]]
address = "127.0.0.1:9443"
[services.web.listeners.tls]
min-version = "1.3"
[[services.web.listeners.tls.certificates]]
cert = "a.pem"
key = "a.key"
[[services.web.listeners.tls.certificates]]
cert = "b.pem"
key = "b.key"
)";
  auto r = load_string(text, "/etc/weir/weir.toml", {}, {});
  INFO(joined(r));
  REQUIRE(r.ok());
  const auto& tls = r.config->services.at(0).listeners.at(0).tls;
  REQUIRE(tls.has_value());
  CHECK(tls->min_version == "1.3");
  REQUIRE(tls->certificates.size() == 2);
  CHECK(tls->certificates[1].cert == "/etc/weir/b.pem");
  CHECK(tls->certificates[1].key_path == "services.web.listeners[0].tls.certificates[1]");
}

TEST_CASE("listener TLS: relative paths are resolved against the file's directory") {
  auto resolved = [](const std::string& source, const std::string& cert) {
    auto r =
        load_string(one_listener(std::string(R"({ address = "127.0.0.1:8443", tls = { cert = ")") +
                                 cert + R"(", key = "/k" } })"),
                    source, {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    return r.config->services.at(0).listeners.at(0).tls->certificates.at(0).cert;
  };
  CHECK(resolved("/etc/weir/weir.toml", "a.pem") == "/etc/weir/a.pem");
  CHECK(resolved("/etc/weir/weir.toml", "certs/a.pem") == "/etc/weir/certs/a.pem");
  // "." segments and doubled slashes go; ".." stays (a symlinked directory decides where it leads).
  CHECK(resolved("/etc/weir/weir.toml", "./certs//./a.pem") == "/etc/weir/certs/a.pem");
  CHECK(resolved("/etc/weir/weir.toml", "../ssl/a.pem") == "/etc/weir/../ssl/a.pem");
  CHECK(resolved("/etc/weir/./conf/weir.toml", "a.pem") == "/etc/weir/conf/a.pem");
  CHECK(resolved("/weir.toml", "a.pem") == "/a.pem");
  // Absolute paths are kept as written.
  CHECK(resolved("/etc/weir/weir.toml", "/srv/./a.pem") == "/srv/./a.pem");
  // A relative configuration path is relative to the working directory.
  CHECK(resolved("weir.toml", "a.pem") == cwd() + "/a.pem");
  CHECK(resolved("conf/weir.toml", "a.pem") == cwd() + "/conf/a.pem");
  CHECK(resolved("./conf/weir.toml", "../a.pem") == cwd() + "/conf/../a.pem");
  // Not a file: paths stay as written.
  CHECK(resolved("-", "./a.pem") == "./a.pem");

  SUBCASE("load_file") {
    char path[] = "/tmp/weir-config-tls-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    {
      std::ofstream out(path);
      out << one_listener(
          R"({ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "k/a.key" } })");
    }
    auto r = load_file(path, {}, {});
    std::remove(path);
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& c = r.config->services.at(0).listeners.at(0).tls->certificates.at(0);
    CHECK(c.cert == "/tmp/a.pem");
    CHECK(c.key == "/tmp/k/a.key");
  }
}

TEST_CASE("listener TLS: certificate errors") {
  const std::string p = "services.web.listeners[0].tls";
  SUBCASE("not a table") {
    const char* l = R"({ address = "127.0.0.1:8443", tls = true })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l, "true") + p +
                          ": expected a table like { cert = \"server.pem\", key = \"server.key\" "
                          "}, got a boolean");
  }
  SUBCASE("neither cert and key nor certificates") {
    const char* l = R"({ address = "127.0.0.1:8443", tls = { min-version = "1.3" } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l, "{ min") + p +
                          ": missing \"cert\" and \"key\" (one certificate, like { cert = "
                          "\"server.pem\", key = \"server.key\" }) or \"certificates\" (one or "
                          "more, like certificates = [{ cert = \"a.pem\", key = \"a.key\" }])");
  }
  SUBCASE("both") {
    const char* l =
        R"({ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key", certificates = [{ cert = "b.pem", key = "b.key" }] } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l, "[{") + p +
                          ".certificates: give either \"cert\" and \"key\" (one certificate) or "
                          "\"certificates\" (one or more), not both");
    // cert alone with certificates is the same mistake.
    const char* l2 =
        R"({ address = "127.0.0.1:8443", tls = { certificates = [], cert = "a.pem" } })";
    auto lines2 = listener_errors(l2);
    REQUIRE(lines2.size() == 1);
    CHECK(lines2[0] == at(l2, "[]") + p +
                           ".certificates: give either \"cert\" and \"key\" (one certificate) or "
                           "\"certificates\" (one or more), not both");
  }
  SUBCASE("cert without key and key without cert") {
    const char* l1 = R"({ address = "127.0.0.1:8443", tls = { cert = "a.pem" } })";
    auto lines = listener_errors(l1);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l1, "{ cert") + p +
                          ": missing required key \"key\" (the PEM private key for \"cert\")");
    const char* l2 = R"({ address = "127.0.0.1:8443", tls = { key = "a.key" } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "{ key") + p +
                          ": missing required key \"cert\" (the PEM certificate chain for "
                          "\"key\")");
  }
  SUBCASE("the certificates array") {
    const char* l1 = R"({ address = "127.0.0.1:8443", tls = { certificates = [] } })";
    auto lines = listener_errors(l1);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l1, "[]") + p +
                          ".certificates: at least one certificate is required, like [{ cert = "
                          "\"server.pem\", key = \"server.key\" }]");
    const char* l2 =
        R"({ address = "127.0.0.1:8443", tls = { certificates = { cert = "a.pem", key = "a.key" } } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "{ cert =") + p +
                          ".certificates: expected an array of certificate tables like [{ cert = "
                          "\"server.pem\", key = \"server.key\" }], got a table");
    const char* l3 =
        R"({ address = "127.0.0.1:8443", tls = { certificates = ["a.pem", {}, { cert = "b.pem" }, { key = "c.key" }, { cert = "d.pem", key = "d.key", chain = "x", keys = "y" }] } })";
    lines = listener_errors(l3);
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == at(l3, "\"a.pem\"") + p +
                          ".certificates[0]: expected a certificate table like { cert = "
                          "\"server.pem\", key = \"server.key\" }, got a string");
    CHECK(lines[1] == at(l3, "{}") + p +
                          ".certificates[1]: missing required keys \"cert\" and \"key\" (PEM "
                          "files, like { cert = \"server.pem\", key = \"server.key\" })");
    CHECK(lines[2] == at(l3, "{ cert = \"b") + p +
                          ".certificates[2]: missing required key \"key\" (the PEM private key "
                          "for \"cert\")");
    CHECK(lines[3] == at(l3, "{ key = \"c") + p +
                          ".certificates[3]: missing required key \"cert\" (the PEM certificate "
                          "chain for \"key\")");
    CHECK(lines[4] ==
          at(l3, "chain") + p + ".certificates[4]: unknown key \"chain\" (allowed: cert, key)");
    CHECK(lines[5] ==
          at(l3, "keys") + p + ".certificates[4]: unknown key \"keys\" (did you mean \"key\"?)");
  }
  SUBCASE("paths") {
    const char* l =
        R"({ address = "127.0.0.1:8443", tls = { certificates = [{ cert = "", key = 5 }, { cert = "a\u0000b", key = "k" }] } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == at(l, "\"\"") + p + ".certificates[0].cert: must not be empty");
    CHECK(lines[1] == at(l, "5 }") + p + ".certificates[0].key: expected a string, got an integer");
    CHECK(lines[2] ==
          at(l, "\"a\\u0000b\"") + p + ".certificates[1].cert: must not contain a NUL character");
  }
}

TEST_CASE("listener TLS: setting errors") {
  const std::string p = "services.web.listeners[0].tls";
  const std::string cert =
      R"({ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key", )";
  SUBCASE("versions") {
    const std::string l = cert + R"(min-version = "1.1", max-version = 1.3 } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] ==
          at(l, "\"1.1\"") + p + ".min-version: unknown TLS version \"1.1\" (allowed: 1.2, 1.3)");
    CHECK(lines[1] == at(l, "1.3 }") + p +
                          ".max-version: expected a string (allowed: 1.2, 1.3), got a float "
                          "(write \"1.3\")");
    const std::string l2 = cert + R"(max-version = "1.2", min-version = "1.3" } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "\"1.2\"") + p +
                          ".max-version: must not be lower than min-version \"1.3\" (got "
                          "\"1.2\")");
    const std::string l3 = cert + R"(min-version = 2 } })";
    lines = listener_errors(l3);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l3, "2 }") + p +
                          ".min-version: expected a string (allowed: 1.2, 1.3), got an integer");
  }
  SUBCASE("OpenSSL lists") {
    const std::string l =
        cert + R"(ciphers = "A B", ciphersuites = "", groups = "X25519:\tP-256" } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == at(l, "\"A B\"") + p +
                          ".ciphers: must not contain whitespace or control characters (separate "
                          "the entries with \":\")");
    CHECK(lines[1] == at(l, "\"\"") + p + ".ciphersuites: must not be empty");
    CHECK(lines[2] == at(l, "\"X25519") + p +
                          ".groups: must not contain whitespace or control characters (separate "
                          "the entries with \":\")");
    const std::string l2 = cert + R"(groups = ["X25519"] } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "[\"X") + p + ".groups: expected a string, got an array");
  }
  SUBCASE("sessions") {
    const std::string l = cert + R"(session-tickets = "yes", session-timeout = "0s" } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == at(l, "\"yes\"") + p +
                          ".session-tickets: expected a boolean (true or false), got a string");
    CHECK(lines[1] == at(l, "\"0s\"") + p + ".session-timeout: must be greater than zero");
    const std::string l2 = cert + R"(session-timeout = 300 } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "300") + p +
                          ".session-timeout: expected a duration string like \"5s\", got an "
                          "integer (durations need a unit: write \"300ms\" for milliseconds or "
                          "\"300s\" for seconds)");
  }
  SUBCASE("alpn") {
    const std::string l = cert + R"(alpn = ["http/1.1", "h3", "http/1.1", 2, ""] } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == at(l, "\"h3\"") + p +
                          ".alpn[1]: \"h3\" is not served by this release (allowed: h2, "
                          "http/1.1)");
    CHECK(lines[1] == at(l, "\"http/1.1\", 2") + p + ".alpn[2]: duplicate protocol \"http/1.1\"");
    CHECK(lines[2] == at(l, "2, ") + p + ".alpn[3]: expected a string, got an integer");
    CHECK(lines[3] == at(l, "\"\"]") + p + ".alpn[4]: must not be empty");
    const std::string l2 = cert + R"(alpn = [] } })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "[]") + p +
                          ".alpn: at least one protocol is required, like [\"h2\", "
                          "\"http/1.1\"]");
    const std::string l3 = cert + R"(alpn = "http/1.1" } })";
    lines = listener_errors(l3);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l3, "\"http/1.1\"") + p +
                          ".alpn: expected an array of protocol names like [\"h2\", "
                          "\"http/1.1\"], got a string");
  }
  SUBCASE("unknown keys") {
    const std::string l = cert + R"(ciphersuite = "X", sesion-tickets = false, colour = 1 } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == at(l, "ciphersuite") + p +
                          ": unknown key \"ciphersuite\" (did you mean \"ciphersuites\"?)");
    CHECK(lines[1] == at(l, "sesion") + p +
                          ": unknown key \"sesion-tickets\" (did you mean \"session-tickets\"?)");
    CHECK(lines[2] == at(l, "colour") + p +
                          ": unknown key \"colour\" (allowed: cert, key, certificates, "
                          "min-version, max-version, ciphers, ciphersuites, groups, "
                          "session-tickets, session-timeout, alpn)");
  }
  SUBCASE("TLS errors and address errors are all reported") {
    auto lines = lines_of(load(R"([services.web]
listeners = [
  { address = "localhost:443", tls = {} },
  { address = "127.0.0.1:443", tls = { cert = "a.pem", key = "a.key", alpn = ["h3"] } },
]
)"));
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].find(":3:15: services.web.listeners[0].address: invalid IP address") !=
          std::string::npos);
    CHECK(lines[1].find(":3:38: services.web.listeners[0].tls: missing \"cert\" and \"key\"") !=
          std::string::npos);
    CHECK(lines[2].find(":4:79: services.web.listeners[1].tls.alpn[0]: \"h3\" is not served") !=
          std::string::npos);
  }
}

TEST_CASE("listener TLS: dump round trip") {
  SUBCASE("shorthand, array, relative paths and every setting") {
    check_round_trip(R"([upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001"] }
[services.web]
listeners = [
  { address = "127.0.0.1:8080" },
  { address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "keys/a.key" } },
  { address = "[::1]:9443", tls = { certificates = [{ cert = "/etc/ssl/a b.pem", key = "a\"q.key" }, { cert = "b.pem", key = "b.key" }], min-version = "1.3", max-version = "1.3", ciphers = "ECDHE-RSA-AES128-GCM-SHA256", ciphersuites = "TLS_AES_128_GCM_SHA256", groups = "X25519", session-tickets = false, session-timeout = "1500ms", alpn = ["http/1.1"] } },
]
upstream = "app"
[services.plain]
listeners = [{ address = "127.0.0.1:8081" }]
)");
  }
  SUBCASE("table headers") {
    check_round_trip(R"([[services.web.listeners]]
address = "127.0.0.1:9443"
[[services.web.listeners.tls.certificates]]
cert = "a.pem"
key = "a.key"
)");
  }
  SUBCASE("the dump writes every TLS key in the certificates form") {
    auto r = load_string(
        one_listener(R"({ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key" } })"),
        "/etc/weir/weir.toml", {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    const std::string dump = dump_toml(*r.config);
    INFO(dump);
    const TlsConfig defaults;
    CHECK(dump.find("[services.web]\nlisteners = [\n  { address = \"127.0.0.1:8443\", h2c = false, "
                    "proxy-protocol-from = [], tls = { "
                    "certificates = [{ cert = \"/etc/weir/a.pem\", key = \"/etc/weir/a.key\" }], "
                    "min-version = \"1.2\", max-version = \"1.3\", ciphers = \"" +
                    defaults.ciphers + "\", ciphersuites = \"" + defaults.ciphersuites +
                    "\", groups = \"X25519:P-256:P-384\", session-tickets = true, "
                    "session-timeout = \"1h\", alpn = [\"h2\", \"http/1.1\"] } },\n]\n") !=
          std::string::npos);
  }
}

TEST_CASE("routes") {
  auto r = load(R"([upstreams.app]
discovery = { use = "static" }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
[[services.web.routes]]
path-prefix = "/a"
path-exact = "/a"
upstream = "app"
[[services.web.routes]]
upstream = "app"
[[services.web.routes]]
path-prefix = "static"
[[services.web.routes]]
path-exact = "/x"
upstream = "app"
filters = [{ use = "headers" }, { nope = 1 }]
)");
  auto lines = lines_of(r);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "weir.toml:7:14: services.web.routes[0].path-exact: a route has at most one "
                    "of \"path-prefix\", \"path-exact\" and \"path-regex\"");
  CHECK(lines[1] == "weir.toml:9:1: services.web.routes[1]: a route needs something to match: "
                    "\"path-prefix\", \"path-exact\", \"path-regex\", \"host\" or \"methods\"");
  CHECK(lines[2] == "weir.toml:11:1: services.web.routes[2]: missing required key \"upstream\"");
  CHECK(lines[3] == "weir.toml:12:15: services.web.routes[2].path-prefix: must start with \"/\" "
                    "(got \"static\")");
  CHECK(lines[4].rfind("weir.toml:16:33: services.web.routes[3].filters[1]: missing key \"use\"",
                       0) == 0);
}

TEST_CASE("routes: host, methods, path-regex, timeouts and retries") {
  const std::string text = R"([upstreams.app]
discovery = { use = "static" }
max-tries = 5
retry-timeout = "3s"
request-timeout = "30s"
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
no-route = { status = 421, body = "no such site\n", content-type = "text/html" }
[[services.web.routes]]
path-regex = "^/v[0-9]+/users/[^/]+$"
host = ["API.example.com", "*.api.example.com"]
methods = ["GET", "HEAD"]
upstream = "app"
connect-timeout = "1s"
response-timeout = "2s"
request-timeout = "4s"
max-tries = 1
retry-timeout = "500ms"
[[services.web.routes]]
host = "www.example.com"
upstream = "app"
[[services.web.routes]]
methods = ["POST"]
upstream = "app"
)";
  auto r = load(text);
  INFO(joined(r));
  REQUIRE(r.ok());
  const auto& up = r.config->upstreams[0];
  CHECK(up.max_tries == 5);
  CHECK(up.retry_timeout == 3000ms);
  CHECK(up.request_timeout == 30000ms);
  const auto& s = r.config->services[0];
  CHECK(s.no_route.status == 421);
  CHECK(s.no_route.body == "no such site\n");
  CHECK(s.no_route.content_type == "text/html");
  REQUIRE(s.routes.size() == 3);
  const auto& a = s.routes[0];
  CHECK(a.path_regex == "^/v[0-9]+/users/[^/]+$");
  CHECK(a.hosts == std::vector<std::string>{"api.example.com", "*.api.example.com"});
  CHECK(a.methods == std::vector<std::string>{"GET", "HEAD"});
  CHECK(a.connect_timeout == 1000ms);
  CHECK(a.response_timeout == 2000ms);
  CHECK(a.request_timeout == 4000ms);
  CHECK(a.max_tries == 1u);
  CHECK(a.retry_timeout == 500ms);
  CHECK(s.routes[1].hosts == std::vector<std::string>{"www.example.com"});
  CHECK_FALSE(s.routes[1].max_tries.has_value());
  CHECK(s.routes[2].methods == std::vector<std::string>{"POST"});

  auto again = load(dump_toml(*r.config));
  INFO(dump_toml(*r.config));
  REQUIRE(again.ok());
  check_same(*r.config, *again.config);

  auto defaults = load(R"([upstreams.app]
discovery = { use = "static" }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  REQUIRE(defaults.ok());
  CHECK(defaults.config->upstreams[0].max_tries == 3);
  CHECK_FALSE(defaults.config->upstreams[0].retry_timeout.has_value());
  CHECK_FALSE(defaults.config->upstreams[0].request_timeout.has_value());
  CHECK(defaults.config->services[0].no_route.status == 404);
}

TEST_CASE("routes: errors in host, methods, path-regex, no-route and retries") {
  auto r = load(R"([upstreams.app]
discovery = { use = "static" }
max-tries = 0
retry-timeout = 5
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
no-route = { status = 99, nope = 1 }
[[services.web.routes]]
path-regex = "^/(a"
upstream = "app"
[[services.web.routes]]
host = ["a.example", "bad host", "x:80"]
methods = ["GET", "PO ST"]
upstream = "app"
[[services.web.routes]]
host = []
methods = "GET"
upstream = "app"
[[services.web.routes]]
path-prefix = "/a"
path-regex = "/b"
max-tries = 101
upstream = "app"
)");
  auto lines = lines_of(r);
  INFO(joined(r));
  REQUIRE(lines.size() == 12);
  CHECK(lines[0] == "weir.toml:3:13: upstreams.app.max-tries: must be between 1 and 100 (got 0)");
  CHECK(lines[1].rfind("weir.toml:4:17: upstreams.app.retry-timeout: expected a duration string",
                       0) == 0);
  CHECK(lines[2].rfind("weir.toml:7:23: services.web.no-route.status: must be between 200 and 599",
                       0) == 0);
  CHECK(lines[3].rfind("weir.toml:7:27: services.web.no-route: unknown key \"nope\"", 0) == 0);
  CHECK(lines[4].rfind("weir.toml:9:14: services.web.routes[0].path-regex: invalid regular "
                       "expression \"^/(a\": ",
                       0) == 0);
  CHECK(lines[5].rfind("weir.toml:12:22: services.web.routes[1].host[1]: invalid host name \"bad "
                       "host\"",
                       0) == 0);
  CHECK(
      lines[6].rfind("weir.toml:12:34: services.web.routes[1].host[2]: invalid host name \"x:80\": "
                     "a host name has no port",
                     0) == 0);
  CHECK(lines[7] == "weir.toml:13:19: services.web.routes[1].methods[1]: invalid method \"PO ST\": "
                    "a method is a token like \"GET\"");
  CHECK(lines[8] == "weir.toml:16:8: services.web.routes[2].host: must not be empty (leave "
                    "\"host\" out to match every host)");
  CHECK(lines[9].rfind("weir.toml:17:11: services.web.routes[2].methods: expected an array of "
                       "methods",
                       0) == 0);
  CHECK(lines[10].rfind("weir.toml:21:14: services.web.routes[3].path-regex: a route has at most "
                        "one of",
                        0) == 0);
  CHECK(lines[11] == "weir.toml:22:13: services.web.routes[3].max-tries: must be between 1 and "
                     "100 (got 101)");
}

TEST_CASE("upstream health: one plugin table or an array of them") {
  auto one = load(R"([upstreams.app]
discovery = { use = "static" }
health = { use = "tcp", interval = "1s" }
[upstreams.two]
discovery = { use = "static" }
health = [{ use = "http", path = "/healthz" }, { use = "outlier" }]
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  INFO(joined(one));
  REQUIRE(one.ok());
  REQUIRE(one.config->upstreams[0].health.size() == 1);
  CHECK(one.config->upstreams[0].health[0].use == "tcp");
  REQUIRE(one.config->upstreams[1].health.size() == 2);
  CHECK(one.config->upstreams[1].health[1].use == "outlier");
  auto again = load(dump_toml(*one.config));
  REQUIRE(again.ok());
  check_same(*one.config, *again.config);
}

TEST_CASE("dns: servers, timeout, tries") {
  auto ok = load(R"([dns]
servers = ["127.0.0.1:5353", "10.0.0.2", "[::1]:53", "::1"]
timeout = "500ms"
tries = 3
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  INFO(joined(ok));
  REQUIRE(ok.ok());
  CHECK(ok.config->dns.servers ==
        std::vector<std::string>{"127.0.0.1:5353", "10.0.0.2:53", "[::1]:53", "[::1]:53"});
  CHECK(ok.config->dns.timeout == 500ms);
  CHECK(ok.config->dns.tries == 3);
  auto again = load(dump_toml(*ok.config));
  REQUIRE(again.ok());
  CHECK(again.config->dns.servers == ok.config->dns.servers);
  CHECK(again.config->dns.tries == 3);
  auto bad = load(R"([dns]
servers = ["dns.example:53", "unix:/x"]
tries = 0
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  auto lines = lines_of(bad);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].rfind("weir.toml:2:12: dns.servers[0]: ", 0) == 0);
  CHECK(lines[1] ==
        "weir.toml:2:30: dns.servers[1]: a DNS server is an IP address with an optional port");
  CHECK(lines[2] == "weir.toml:3:9: dns.tries: must be between 1 and 10 (got 0)");
}

TEST_CASE("admin: listen") {
  auto ok = load(R"([admin]
listen = "127.0.0.1:9901"
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  INFO(joined(ok));
  REQUIRE(ok.ok());
  CHECK(ok.config->admin.listen == "127.0.0.1:9901");
  auto again = load(dump_toml(*ok.config));
  REQUIRE(again.ok());
  CHECK(again.config->admin.listen == "127.0.0.1:9901");
  auto bad = load(R"([admin]
listen = "unix:/tmp/a.sock"
port = 1
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  auto lines = lines_of(bad);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "weir.toml:2:10: admin.listen: the admin endpoint listens on TCP only: "
                    "expected \"ip:port\" like \"127.0.0.1:9901\"");
  CHECK(lines[1].rfind("weir.toml:3:1: admin: unknown key \"port\"", 0) == 0);
}

TEST_CASE("a key path lies within itself and its descendants only") {
  CHECK(path_within("upstreams.app.tls", "upstreams.app.tls"));
  CHECK(path_within("upstreams.app.tls.verify", "upstreams.app.tls"));
  CHECK(path_within("services.web.filters[1].status", "services.web.filters"));
  CHECK_FALSE(path_within("upstreams.app.tls2", "upstreams.app.tls"));
  CHECK_FALSE(path_within("upstreams.app", "upstreams.app.tls"));
  CHECK_FALSE(path_within("upstreams.apple.lb", "upstreams.app"));
}

TEST_CASE("TOML syntax error is one diagnostic at the parser's position") {
  auto r = load("[system]\nworkers = = 1\n[services.web]\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].loc.file == "weir.toml");
  CHECK(r.errors[0].loc.line == 2);
  CHECK(r.errors[0].loc.column == 11);
  CHECK(r.errors[0].key_path.empty());
  CHECK(r.errors[0].to_string().rfind("weir.toml:2:11: TOML syntax error: ", 0) == 0);
  CHECK_FALSE(r.config.has_value());

  auto dup = load("[services.web]\n[services.web]\n");
  REQUIRE(dup.errors.size() == 1);
  CHECK(dup.errors[0].loc.line == 2);
}

TEST_CASE("files") {
  SUBCASE("unreadable file is one diagnostic naming the path") {
    auto r = load_file("/nonexistent/weir.toml", {}, {});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() ==
          "/nonexistent/weir.toml: cannot read the configuration file: No such file or directory");
  }
  SUBCASE("a directory") {
    auto r = load_file("/", {}, {});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "/: cannot read the configuration file: Is a directory");
  }
  SUBCASE("a real file") {
    char path[] = "/tmp/weir-config-test-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    {
      std::ofstream out(path);
      out << kContract << "bogus = 1\n";
    }
    auto r = load_file(path, {}, {});
    std::remove(path);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].loc.file == path);
    CHECK(r.errors[0].loc.line == 18);
    CHECK(r.errors[0].key_path == "services.web.routes[0]");
  }
}

TEST_CASE("environment and command line overlay the file") {
  const std::string file =
      std::string("[system]\nworkers = 2\n[log]\nlevel = \"warn\"\n") + kMinimal;
  SUBCASE("file only") {
    auto r = load(file);
    REQUIRE(r.ok());
    CHECK(r.config->system.workers == 2);
    CHECK(r.config->log.level == "warn");
    CHECK(r.config->log.format == "text");
  }
  SUBCASE("environment beats the file") {
    auto r = load(file, {},
                  {{"WEIR_WORKERS", "3"},
                   {"WEIR_LOG_LEVEL", "debug"},
                   {"WEIR_LOG_FORMAT", "json"},
                   {"HOME", "/root"}});
    REQUIRE(r.ok());
    CHECK(r.config->system.workers == 3);
    CHECK(r.config->log.level == "debug");
    CHECK(r.config->log.format == "json");
  }
  SUBCASE("command line beats the environment") {
    Overrides cli;
    cli.workers = 5;
    cli.log_level = "error";
    auto r = load(file, cli, {{"WEIR_WORKERS", "3"}, {"WEIR_LOG_LEVEL", "debug"}});
    REQUIRE(r.ok());
    CHECK(r.config->system.workers == 5);
    CHECK(r.config->log.level == "error");
    CHECK(r.config->log.format == "text");
  }
  SUBCASE("an empty variable counts as unset") {
    auto r = load(file, {}, {{"WEIR_WORKERS", ""}});
    REQUIRE(r.ok());
    CHECK(r.config->system.workers == 2);
  }
}

TEST_CASE("bad environment and command line values") {
  SUBCASE("env") {
    auto r = load(kMinimal, {}, {{"WEIR_WORKERS", "lots"}, {"WEIR_LOG_LEVEL", "loud"}});
    CHECK_FALSE(r.ok());
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 2);
    CHECK(r.errors[0].loc.file == "env:WEIR_WORKERS");
    CHECK(r.errors[0].loc.line == 0);
    CHECK(lines[0] == "env:WEIR_WORKERS: system.workers: invalid value \"lots\": expected an "
                      "integer from 0 to 1024 (0 = one per core)");
    CHECK(lines[1] == "env:WEIR_LOG_LEVEL: log.level: invalid value \"loud\" (allowed: trace, "
                      "debug, info, warn, error)");
  }
  SUBCASE("cli") {
    Overrides cli;
    cli.workers = 4096;
    cli.log_format = "xml";
    auto r = load(kMinimal, cli, {});
    auto lines = lines_of(r);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("cli:--workers: system.workers: invalid value \"4096\"", 0) == 0);
    CHECK(lines[1] == "cli:--log-format: log.format: invalid value \"xml\" (allowed: text, json)");
  }
  SUBCASE("file errors come before overlay errors") {
    auto r = load(std::string(kMinimal) + "oops = 1\n", {}, {{"WEIR_WORKERS", "-1"}});
    REQUIRE(r.errors.size() == 2);
    CHECK(r.errors[0].loc.file == "weir.toml");
    CHECK(r.errors[1].loc.file == "env:WEIR_WORKERS");
  }
}

TEST_CASE("env_vars lists what weir reads") {
  const auto& vars = env_vars();
  auto find = [&](std::string_view name) -> const EnvVar* {
    for (const auto& v : vars)
      if (v.name == name)
        return &v;
    return nullptr;
  };
  REQUIRE(vars.size() == 5);
  REQUIRE(find("WEIR_CONFIG"));
  CHECK(find("WEIR_CONFIG")->key_path.empty());
  CHECK(find("WEIR_WORKERS")->key_path == "system.workers");
  CHECK(find("WEIR_LOG_LEVEL")->key_path == "log.level");
  CHECK(find("WEIR_LOG_FORMAT")->key_path == "log.format");
  REQUIRE(find("WEIR_PLUGIN_PATH"));
  CHECK(find("WEIR_PLUGIN_PATH")->key_path.empty());
  for (const auto& v : vars)
    CHECK_FALSE(v.meaning.empty());
}

TEST_CASE("dump round trip") {
  SUBCASE("contract") {
    check_round_trip(kContract);
  }
  SUBCASE("minimal") {
    check_round_trip(kMinimal);
  }
  SUBCASE("awkward strings and values") {
    check_round_trip(R"([system]
plugin-dirs = ["/with \"quotes\"", 'C:\back\slash', "tab\there", "üñí", "nl\nbell\u0007del\u007f"]
[log]
output = "/tmp/a b.log"
[upstreams.a-1]
discovery = { use = "static", "odd key" = 1.5, neg = -3, big = 1e300, tiny = 5e-324, whole = 2.0, e5 = 1e5, ninf = -inf, inf = inf, t = true, empty = {}, list = [], nested = [[1, 2], ["x"]] }
[upstreams.b_2]
discovery = { use = "dns" }
lb = { use = "ewma", decay = "10s" }
health = { use = "tcp" }
connect-timeout = "1500ms"
[services.one]
listeners = [{ address = "[::]:443" }]
[services.one.limits]
max-body = "1GiB"
keepalive-timeout = "1m30s"
[[services.one.routes]]
path-exact = "/\"quoted\""
upstream = "b_2"
[[services.one.routes]]
path-prefix = "/"
upstream = "a-1"
[services.two]
listeners = [{ address = "0.0.0.0:80" }]
upstream = "a-1"
filters = [{ use = "gzip" }, { use = "headers", request-set = { "X-A" = "1" } }]
)");
  }
  SUBCASE("overlays are in the dump") {
    Overrides cli;
    cli.workers = 7;
    auto r = load(kMinimal, cli, {{"WEIR_LOG_FORMAT", "json"}});
    REQUIRE(r.ok());
    std::string dump = dump_toml(*r.config);
    CHECK(dump.find("workers = 7\n") != std::string::npos);
    CHECK(dump.find("format = \"json\"\n") != std::string::npos);
  }
  SUBCASE("the dump writes every default") {
    auto r = load(kMinimal);
    REQUIRE(r.ok());
    const std::string dump = dump_toml(*r.config);
    for (const char* expected :
         {"[system]\nworkers = 0\nplugin-dirs = []\nshutdown-grace = \"30s\"\n",
          "[log]\nlevel = \"info\"\nformat = \"text\"\noutput = \"stdout\"\naccess-log = true\n",
          "[upstreams.app]\ndiscovery = { use = \"static\", targets = [\"127.0.0.1:9001\"] }\n"
          "lb = { use = \"round-robin\" }\n# health: none\nconnect-timeout = \"5s\"\n"
          "response-timeout = \"1m\"\n# request-timeout: none\nmax-tries = 3\n"
          "# retry-timeout: none\nidle-timeout = \"1m\"\npool-size = 64\n"
          "protocol = \"h1\"\nproxy-protocol = \"off\"\nh2-max-concurrent-streams = 100\n"
          "# tls: none (plain TCP)\n",
          "[services.web]\nlisteners = [{ address = \"127.0.0.1:8080\", h2c = false, "
          "proxy-protocol-from = [] }]\n",
          "filters = []\nserver-names = []\ntrusted-proxies = []\n"
          "no-route = { status = 404, body = \"404 Not Found\\n\", content-type = \"text/plain\" "
          "}\n",
          "[services.web.limits]\nmax-request-line = 8192\nmax-header-bytes = 32768\n"
          "max-headers = 100\nmax-body = 0\nheader-timeout = \"1m\"\nkeepalive-timeout = "
          "\"75s\"\nsend-timeout = \"1m\"\ntunnel-idle-timeout = \"5m\"\n"
          "h2-max-concurrent-streams = 128\nh2-initial-window = 65535\n"}) {
      INFO(dump);
      CHECK(dump.find(expected) != std::string::npos);
    }
  }
}

TEST_CASE("node_to_toml and Node::get") {
  auto r = load(R"([upstreams.app]
discovery = { use = "static", s = "a\"b\\c\n", f = 0.5, i = -7, b = false, a = [1, "x"], t = { k = 1 } }
[services.web]
listeners = [{ address = "127.0.0.1:8080" }]
)");
  REQUIRE(r.ok());
  const Node& d = r.config->upstreams[0].discovery.node;
  CHECK(
      node_to_toml(d) ==
      R"({ use = "static", s = "a\"b\\c\n", f = 0.5, i = -7, b = false, a = [1, "x"], t = { k = 1 } })");
  CHECK(d.get("missing") == nullptr);
  CHECK(d.get("i")->get("anything") == nullptr); // not a table
  CHECK(d.is_table());
  Node f;
  f.type = Node::Type::Float;
  f.floating = 3;
  CHECK(node_to_toml(f) == "3.0");
}

TEST_CASE("parse_duration") {
  CHECK(parse_duration("250ms") == Duration{250});
  CHECK(parse_duration("5s") == Duration{5000});
  CHECK(parse_duration("1m") == Duration{60000});
  CHECK(parse_duration("1h") == Duration{3600000});
  CHECK(parse_duration("1d") == Duration{86400000});
  CHECK(parse_duration("1m30s") == Duration{90000});
  CHECK(parse_duration("1h2m3s4ms") == Duration{3723004});
  CHECK(parse_duration("0s") == Duration{0});
  CHECK(parse_duration("1500ms") == Duration{1500});
  for (const char* bad : {"", "5", "s", "5 s", " 5s", "5s ", "5sec", "-5s", "1.5s", "5S", "30s1m",
                          "1s1s", "ms", "1m30", "99999999999999999999s", "9223372036854775807d"})
    CHECK_MESSAGE(!parse_duration(bad).has_value(), bad);
}

TEST_CASE("parse_size") {
  CHECK(parse_size("512") == 512u);
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("10B") == 10u);
  CHECK(parse_size("10KB") == 10000u);
  CHECK(parse_size("64KiB") == 65536u);
  CHECK(parse_size("1MB") == 1000000u);
  CHECK(parse_size("1MiB") == 1048576u);
  CHECK(parse_size("1GB") == 1000000000u);
  CHECK(parse_size("1GiB") == 1073741824u);
  for (const char* bad : {"", "KiB", "64 KiB", "64kib", "1.5MiB", "-1", "1TB", "64KiBs",
                          "99999999999999999999999", "99999999999999999999GiB"})
    CHECK_MESSAGE(!parse_size(bad).has_value(), bad);
}

TEST_CASE("format_duration uses the largest exact unit") {
  CHECK(format_duration(Duration{1500}) == "1500ms");
  CHECK(format_duration(Duration{60000}) == "1m");
  CHECK(format_duration(Duration{90000}) == "90s");
  CHECK(format_duration(Duration{3600000}) == "1h");
  CHECK(format_duration(Duration{86400000}) == "1d");
  CHECK(format_duration(Duration{172800000}) == "2d");
  CHECK(format_duration(Duration{1}) == "1ms");
  CHECK(format_duration(Duration{0}) == "0s");
  for (long long ms : {0LL, 1LL, 999LL, 1000LL, 61000LL, 3600000LL, 90061001LL})
    CHECK(parse_duration(format_duration(Duration{ms})) == Duration{ms});
}

// --- upstream protocol, PROXY protocol and TLS ---------------------------------------------------

namespace {

// A directory with PEM-named files, removed at the end of the test.
struct TempDir {
  std::string path;
  TempDir() {
    char buf[] = "/tmp/weir-config-dir-XXXXXX";
    REQUIRE(mkdtemp(buf) != nullptr);
    path = buf;
    for (const char* name : {"ca.pem", "client.pem", "client.key"}) {
      std::ofstream out(path + "/" + name);
      out << "-----BEGIN CERTIFICATE-----\n";
    }
    REQUIRE(mkdir((path + "/dir.pem").c_str(), 0700) == 0);
  }
  ~TempDir() {
    for (const char* name : {"ca.pem", "client.pem", "client.key"})
      std::remove((path + "/" + name).c_str());
    rmdir((path + "/dir.pem").c_str());
    rmdir(path.c_str());
  }
  std::string file() const { return path + "/weir.toml"; }
};

// kMinimal's upstream "app" with `extra` lines added to it (they start on line 3).
std::string upstream_with(std::string_view extra) {
  return "[upstreams.app]\ndiscovery = { use = \"static\", targets = [\"127.0.0.1:9001\"] }\n" +
         std::string(extra) + "\n[services.web]\nlisteners = [{ address = \"127.0.0.1:8080\" }]\n";
}

} // namespace

TEST_CASE("upstream: protocol, proxy-protocol and h2-max-concurrent-streams") {
  SUBCASE("defaults") {
    auto r = load(kMinimal);
    REQUIRE(r.ok());
    const auto& u = r.config->upstreams.at(0);
    CHECK(u.protocol == "h1");
    CHECK(u.proxy_protocol == "off");
    CHECK(u.h2_max_concurrent_streams == 100);
    CHECK_FALSE(u.tls.has_value());
  }
  SUBCASE("values") {
    for (const char* protocol : {"h1", "h2"})
      for (const char* proxy : {"off", "v1", "v2"})
        for (int streams : {1, 10000}) {
          auto r = load(
              upstream_with(std::string("protocol = \"") + protocol + "\"\nproxy-protocol = \"" +
                            proxy + "\"\nh2-max-concurrent-streams = " + std::to_string(streams)));
          INFO(joined(r));
          REQUIRE(r.ok());
          const auto& u = r.config->upstreams.at(0);
          CHECK(u.protocol == protocol);
          CHECK(u.proxy_protocol == proxy);
          CHECK(u.h2_max_concurrent_streams == static_cast<uint32_t>(streams));
        }
    auto r = load(upstream_with("protocol = \"auto\"\ntls = {}"));
    INFO(joined(r));
    REQUIRE(r.ok());
    CHECK(r.config->upstreams.at(0).protocol == "auto");
  }
  SUBCASE("errors") {
    auto lines = lines_of(load(upstream_with(R"(protocol = "h3"
proxy-protocol = true
h2-max-concurrent-streams = 0
[upstreams.b]
discovery = { use = "static" }
protocol = "auto"
proxy-protocol = "v3"
h2-max-concurrent-streams = 10001
[upstreams.c]
discovery = { use = "static" }
protocol = 2
h2-max-concurrent-streams = "10")")));
    REQUIRE(lines.size() == 8);
    CHECK(
        lines[0] ==
        "weir.toml:3:12: upstreams.app.protocol: unknown protocol \"h3\" (allowed: h1, h2, auto)");
    CHECK(lines[1] == "weir.toml:4:18: upstreams.app.proxy-protocol: expected a string (allowed: "
                      "off, v1, v2), got a boolean");
    CHECK(lines[2] == "weir.toml:5:29: upstreams.app.h2-max-concurrent-streams: must be between 1 "
                      "and 10000 (got 0)");
    CHECK(lines[3] == "weir.toml:8:12: upstreams.b.protocol: \"auto\" chooses h2 or http/1.1 by "
                      "ALPN, which needs TLS: add tls = {} (or a tls table with settings), or "
                      "choose \"h1\" or \"h2\"");
    CHECK(lines[4] == "weir.toml:9:18: upstreams.b.proxy-protocol: unknown PROXY protocol version "
                      "\"v3\" (allowed: off, v1, v2)");
    CHECK(lines[5] == "weir.toml:10:29: upstreams.b.h2-max-concurrent-streams: must be between 1 "
                      "and 10000 (got 10001)");
    CHECK(lines[6] == "weir.toml:13:12: upstreams.c.protocol: expected a string (allowed: h1, h2, "
                      "auto), got an integer");
    CHECK(lines[7] == "weir.toml:14:29: upstreams.c.h2-max-concurrent-streams: expected an "
                      "integer, got a string");
  }
  SUBCASE("unknown keys suggest the new ones") {
    auto lines = lines_of(load(upstream_with("protocl = \"h2\"\nproxy-protcol = \"v1\"")));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "weir.toml:3:1: upstreams.app: unknown key \"protocl\" (did you mean "
                      "\"protocol\"?)");
    CHECK(lines[1] == "weir.toml:4:1: upstreams.app: unknown key \"proxy-protcol\" (did you mean "
                      "\"proxy-protocol\"?)");
  }
}

TEST_CASE("upstream TLS: values") {
  TempDir dir;
  SUBCASE("an empty table is every default") {
    const std::string text = upstream_with("tls = {}");
    auto r = load_string(text, dir.file(), {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& tls = r.config->upstreams.at(0).tls;
    REQUIRE(tls.has_value());
    CHECK(tls->verify == true);
    CHECK(tls->ca_file.empty());
    CHECK(tls->server_name.empty());
    CHECK(tls->cert.empty());
    CHECK(tls->key.empty());
    CHECK(tls->min_version == "1.2");
    CHECK(tls->key_path == "upstreams.app.tls");
    CHECK(tls->loc.file == dir.file());
    CHECK(tls->loc.line == 3);
    CHECK(tls->loc.column == column_of(text, 3, "{}"));
  }
  SUBCASE("every key; relative paths resolved against the file's directory") {
    auto r = load_string(
        upstream_with(
            R"(tls = { verify = false, ca-file = "ca.pem", server-name = "API.Internal", cert = "./client.pem", key = ")" +
            dir.path + R"(/client.key", min-version = "1.3" })"),
        dir.file(), {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& tls = *r.config->upstreams.at(0).tls;
    CHECK(tls.verify == false);
    CHECK(tls.ca_file == dir.path + "/ca.pem");
    CHECK(tls.server_name == "api.internal");
    CHECK(tls.cert == dir.path + "/client.pem");
    CHECK(tls.key == dir.path + "/client.key");
    CHECK(tls.min_version == "1.3");
  }
  SUBCASE("a table header") {
    auto r =
        load_string(upstream_with("[upstreams.app.tls]\nca-file = \"ca.pem\""), dir.file(), {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& tls = *r.config->upstreams.at(0).tls;
    CHECK(tls.ca_file == dir.path + "/ca.pem");
    CHECK(tls.key_path == "upstreams.app.tls");
    CHECK(tls.loc.line == 3);
  }
}

TEST_CASE("upstream TLS: errors") {
  TempDir dir;
  auto errors = [&](std::string_view extra) {
    return lines_of(load_string(upstream_with(extra), dir.file(), {}, {}));
  };
  auto at3 = [&](std::string_view extra, std::string_view needle) {
    return dir.file() + ":3:" + std::to_string(column_of(upstream_with(extra), 3, needle)) + ": ";
  };
  const std::string p = "upstreams.app.tls";
  SUBCASE("not a table") {
    const char* e = "tls = true";
    auto lines = errors(e);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at3(e, "true") + p +
                          ": expected a table like { verify = true } ({} for the defaults), got a "
                          "boolean");
  }
  SUBCASE("unknown keys and types") {
    const char* e = R"(tls = { verfy = true, verify = "yes", colour = 1 })";
    auto lines = errors(e);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == at3(e, "verfy") + p + ": unknown key \"verfy\" (did you mean \"verify\"?)");
    CHECK(lines[1] ==
          at3(e, "\"yes\"") + p + ".verify: expected a boolean (true or false), got a string");
    CHECK(lines[2] == at3(e, "colour") + p +
                          ": unknown key \"colour\" (allowed: verify, ca-file, server-name, cert, "
                          "key, min-version)");
  }
  SUBCASE("files must exist and be readable") {
    const char* e = R"(tls = { ca-file = "missing.pem", cert = "dir.pem", key = "" })";
    auto lines = errors(e);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == at3(e, "\"missing") + p + ".ca-file: cannot read \"" + dir.path +
                          "/missing.pem\": No such file or directory");
    CHECK(lines[1] == at3(e, "\"dir.pem") + p + ".cert: cannot read \"" + dir.path +
                          "/dir.pem\": it is a directory (expected a PEM file)");
    CHECK(lines[2] == at3(e, "\"\"") + p + ".key: must not be empty");
    const char* e2 = R"(tls = { ca-file = "a\u0000b" })";
    lines = errors(e2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at3(e2, "\"a") + p + ".ca-file: must not contain a NUL character");
  }
  SUBCASE("cert and key go together") {
    const char* e1 = R"(tls = { cert = "client.pem" })";
    auto lines = errors(e1);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at3(e1, "{ cert") + p +
                          ": missing required key \"key\" (the PEM private key for the client "
                          "certificate \"cert\")");
    const char* e2 = R"(tls = { key = "client.key" })";
    lines = errors(e2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at3(e2, "{ key") + p +
                          ": missing required key \"cert\" (the PEM client certificate chain for "
                          "\"key\")");
  }
  SUBCASE("server-name") {
    for (auto [value, message] : std::vector<std::pair<std::string, std::string>>{
             {"api.internal:443",
              "invalid host name \"api.internal:443\": a host name has no port (nor brackets)"},
             {"10.0.0.1", "\"10.0.0.1\" is an IP address; SNI carries only DNS names (leave "
                          "server-name out to have the target's address verified against the "
                          "certificate)"},
             {"::1", "\"::1\" is an IP address; SNI carries only DNS names"},
             {"*.internal", "invalid host name \"*.internal\": wildcards are not allowed here"},
             {"a..b", "invalid host name \"a..b\": empty label"},
             {"a_b", "invalid host name \"a_b\": only letters, digits, \"-\" and \".\" are "
                     "allowed"},
             {"", "must not be empty"}}) {
      const std::string e = "tls = { server-name = \"" + value + "\" }";
      auto lines = errors(e);
      INFO(value);
      REQUIRE(lines.size() == 1);
      CHECK(lines[0].rfind(at3(e, "\"") + p + ".server-name: " + message, 0) == 0);
    }
  }
  SUBCASE("min-version") {
    const char* e = R"(tls = { min-version = "1.1" })";
    auto lines = errors(e);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] ==
          at3(e, "\"1.1") + p + ".min-version: unknown TLS version \"1.1\" (allowed: 1.2, 1.3)");
    const char* e2 = R"(tls = { min-version = 1.3 })";
    lines = errors(e2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at3(e2, "1.3") + p +
                          ".min-version: expected a string (allowed: 1.2, 1.3), got a float "
                          "(write \"1.3\")");
  }
}

// --- listeners: unix sockets, mode, h2c, PROXY protocol ------------------------------------------

TEST_CASE("listeners: unix: addresses") {
  SUBCASE("valid, with mode as an integer or an octal string") {
    const std::string longest = "/" + std::string(106, 'x'); // 107 bytes
    auto r = load(R"([services.web]
listeners = [
  { address = "unix:/run/weir.sock" },
  { address = "unix:/run/a.sock", mode = 0o600 },
  { address = "unix:/run/b.sock", mode = "0640" },
  { address = "unix:/run/c.sock", mode = "777" },
  { address = "unix:/run/d.sock", mode = 0 },
  { address = "unix:)" +
                  longest + R"(" },
]
)");
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& l = r.config->services.at(0).listeners;
    REQUIRE(l.size() == 6);
    CHECK(l[0].address == "unix:/run/weir.sock");
    CHECK(l[0].mode == 0660);
    CHECK(l[1].mode == 0600);
    CHECK(l[2].mode == 0640);
    CHECK(l[3].mode == 0777);
    CHECK(l[4].mode == 0);
    CHECK(l[5].address == "unix:" + longest);
  }
  SUBCASE("address errors") {
    const std::string too_long = "/" + std::string(107, 'x'); // 108 bytes
    auto lines = lines_of(load(R"([services.web]
listeners = [
  { address = "unix:run/weir.sock" },
  { address = "unix:" },
  { address = "unix:/run/" },
  { address = "unix:/a\u0000b" },
  { address = "unix:)" + too_long +
                               R"(" },
]
)"));
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] == "weir.toml:3:15: services.web.listeners[0].address: invalid listener "
                      "address \"unix:run/weir.sock\": the socket path must be absolute, like "
                      "\"unix:/run/weir.sock\"");
    CHECK(lines[1].find("listeners[1].address: invalid listener address \"unix:\": the socket "
                        "path must be absolute") != std::string::npos);
    CHECK(lines[2].find("listeners[2].address: invalid listener address \"unix:/run/\": the "
                        "socket path must name a file, not a directory") != std::string::npos);
    CHECK(lines[3].find("listeners[3].address: invalid listener address "
                        "\"unix:/a\\u0000b\": the socket path must not contain a NUL "
                        "character") != std::string::npos);
    CHECK(lines[4].find("listeners[4].address: invalid listener address \"unix:" + too_long +
                        "\": the socket path is 108 bytes long; at most 107 fit in a Unix "
                        "socket address (sun_path)") != std::string::npos);
  }
  SUBCASE("tls is refused on a unix: listener") {
    auto lines = listener_errors(
        R"({ address = "unix:/run/weir.sock", tls = { cert = "c.pem", key = "k.pem" } })");
    bool found = false;
    for (const auto& line : lines)
      found = found || line.find("listeners[0].tls: tls is not available on a Unix socket "
                                 "listener (\"unix:/run/weir.sock\")") != std::string::npos;
    INFO(lines.size());
    CHECK(found);
  }
  SUBCASE("the generic address error mentions the unix: form") {
    auto lines = listener_errors(R"({ address = "8080" })");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("or \"unix:/absolute/path\"") != std::string::npos);
  }
  SUBCASE("mode errors") {
    auto lines = lines_of(load(R"([services.web]
listeners = [
  { address = "127.0.0.1:8080", mode = 0o600 },
  { address = "unix:/run/a.sock", mode = 660 },
  { address = "unix:/run/b.sock", mode = 1000 },
  { address = "unix:/run/c.sock", mode = "rw-rw----" },
  { address = "unix:/run/d.sock", mode = "01777" },
  { address = "unix:/run/e.sock", mode = -1 },
  { address = "unix:/run/f.sock", mode = true },
]
)"));
    REQUIRE(lines.size() == 7);
    CHECK(lines[0] == "weir.toml:3:40: services.web.listeners[0].mode: \"mode\" sets the "
                      "permissions of a Unix socket file; it applies only to \"unix:/path\" "
                      "addresses (this listener's address is \"127.0.0.1:8080\")");
    CHECK(lines[1] == "weir.toml:4:42: services.web.listeners[1].mode: must be at most 0o777 (got "
                      "660); a TOML integer without 0o is decimal: write 0o660 or \"0660\"");
    CHECK(lines[2] == "weir.toml:5:42: services.web.listeners[2].mode: must be at most 0o777 (got "
                      "1000)");
    CHECK(lines[3] == "weir.toml:6:42: services.web.listeners[3].mode: invalid mode "
                      "\"rw-rw----\": expected octal digits, like \"0660\"");
    CHECK(lines[4] == "weir.toml:7:42: services.web.listeners[4].mode: must be at most \"0777\" "
                      "(got \"01777\")");
    CHECK(lines[5] == "weir.toml:8:42: services.web.listeners[5].mode: must not be negative (got "
                      "-1)");
    CHECK(lines[6] == "weir.toml:9:42: services.web.listeners[6].mode: expected a file mode, like "
                      "0o660 or \"0660\", got a boolean");
  }
}

TEST_CASE("listeners: h2c") {
  SUBCASE("default and values") {
    auto r = load_string(one_listener(R"({ address = "127.0.0.1:8080", h2c = true },
  { address = "127.0.0.1:8081" },
  { address = "127.0.0.1:8443", h2c = false, tls = { cert = "a.pem", key = "a.key" } },
  { address = "unix:/run/weir.sock", h2c = true })"),
                         "/etc/weir/weir.toml", {}, {});
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& l = r.config->services.at(0).listeners;
    CHECK(l.at(0).h2c == true);
    CHECK(l.at(1).h2c == false);
    CHECK(l.at(2).h2c == false);
    CHECK(l.at(3).h2c == true);
  }
  SUBCASE("not with tls") {
    const char* l =
        R"({ address = "127.0.0.1:8443", h2c = true, tls = { cert = "a.pem", key = "a.key" } })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l, "true") +
                          "services.web.listeners[0].h2c: \"h2c\" (cleartext HTTP/2) is for "
                          "listeners without tls: over TLS, HTTP/2 is negotiated with ALPN; list "
                          "\"h2\" in tls.alpn instead");
  }
  SUBCASE("a boolean") {
    const char* l = R"({ address = "127.0.0.1:8080", h2c = "yes" })";
    auto lines = listener_errors(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l, "\"yes\"") +
                          "services.web.listeners[0].h2c: expected a boolean (true or false), got "
                          "a string");
  }
}

TEST_CASE("listeners: proxy-protocol-from") {
  SUBCASE("values, unix listeners included") {
    const std::string text = one_listener(
        R"({ address = "127.0.0.1:8080", proxy-protocol-from = ["10.0.0.0/8", "::1", "192.168.1.7/32"] },
  { address = "unix:/run/weir.sock", proxy-protocol-from = ["127.0.0.1"] },
  { address = "127.0.0.1:8081", proxy-protocol-from = [] })");
    auto r = load(text);
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& l = r.config->services.at(0).listeners;
    REQUIRE(l.at(0).proxy_protocol_from.size() == 3);
    CHECK(l[0].proxy_protocol_from[0].text == "10.0.0.0/8");
    CHECK(l[0].proxy_protocol_from[1].text == "::1");
    CHECK(l[0].proxy_protocol_from[2].text == "192.168.1.7/32");
    CHECK(l[0].proxy_protocol_from[1].loc.line == 3);
    CHECK(l[0].proxy_protocol_from[1].loc.column == column_of(text, 3, "\"::1\""));
    REQUIRE(l.at(1).proxy_protocol_from.size() == 1);
    CHECK(l.at(2).proxy_protocol_from.empty());
    CHECK(load(kMinimal).config->services.at(0).listeners.at(0).proxy_protocol_from.empty());
  }
  SUBCASE("each range is checked where it is written") {
    const char* l =
        R"({ address = "127.0.0.1:8080", proxy-protocol-from = ["10.0.0.1/8", "nope", 5, "::1/129"] })";
    auto lines = listener_errors(l);
    const std::string p = "services.web.listeners[0].proxy-protocol-from";
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == at(l, "\"10.0") + p +
                          "[0]: \"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?");
    CHECK(lines[1] == at(l, "\"nope\"") + p +
                          "[1]: \"nope\" is not an address range: expected an IPv4 or IPv6 "
                          "address, optionally with a prefix length, like \"10.0.0.0/8\" or "
                          "\"2001:db8::/32\"");
    CHECK(lines[2] == at(l, "5,") + p + "[2]: expected a string, got an integer");
    CHECK(lines[3] == at(l, "\"::1/129\"") + p +
                          "[3]: invalid prefix length in \"::1/129\": expected 0 to 128");
    const char* l2 = R"({ address = "127.0.0.1:8080", proxy-protocol-from = "10.0.0.0/8" })";
    lines = listener_errors(l2);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == at(l2, "\"10.0") + p +
                          ": expected an array of address ranges like [\"10.0.0.0/8\", \"::1\"], "
                          "got a string");
  }
}

// --- services: server-names, trusted-proxies, limits ---------------------------------------------

TEST_CASE("services: server-names") {
  SUBCASE("lowercased; one-label wildcards") {
    auto r = load(
        std::string(kMinimal) +
        R"(server-names = ["Example.COM", "*.example.com", "a-b.c0.example", "x", "10.0.0.1"])");
    INFO(joined(r));
    REQUIRE(r.ok());
    CHECK(r.config->services.at(0).server_names ==
          std::vector<std::string>{"example.com", "*.example.com", "a-b.c0.example", "x",
                                   "10.0.0.1"});
    CHECK(load(kMinimal).config->services.at(0).server_names.empty());
  }
  SUBCASE("errors") {
    const std::string label64(64, 'a');
    const std::string name254 = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                std::string(63, 'c') + "." + std::string(63, 'd'); // 255
    auto lines = lines_of(load(std::string(kMinimal) + R"(server-names = [
  "example.com:8080",
  "a..b",
  ".example.com",
  "example.com.",
  "a.*.com",
  "*",
  "*.",
  "ex_ample.com",
  "",
  ")" + label64 + R"(.com",
  ")" + name254 + R"(",
  "EXAMPLE.com",
  "example.com",
  3,
]
)"));
    REQUIRE(lines.size() == 13);
    CHECK(lines[0] == "weir.toml:6:3: services.web.server-names[0]: invalid host name "
                      "\"example.com:8080\": a host name has no port (nor brackets)");
    CHECK(lines[1] == "weir.toml:7:3: services.web.server-names[1]: invalid host name \"a..b\": "
                      "empty label (a leading, trailing or doubled \".\")");
    CHECK(lines[2].find("server-names[2]: invalid host name \".example.com\": empty label") !=
          std::string::npos);
    CHECK(lines[3].find("server-names[3]: invalid host name \"example.com.\": empty label") !=
          std::string::npos);
    CHECK(lines[4].find("server-names[4]: invalid host name \"a.*.com\": a wildcard is allowed "
                        "only as the whole first label, like \"*.example.com\"") !=
          std::string::npos);
    CHECK(lines[5].find("server-names[5]: invalid host name \"*\": a wildcard is allowed only") !=
          std::string::npos);
    CHECK(lines[6].find("server-names[6]: invalid host name \"*.\": a wildcard needs a domain "
                        "after it") != std::string::npos);
    CHECK(lines[7].find("server-names[7]: invalid host name \"ex_ample.com\": only letters, "
                        "digits, \"-\" and \".\" are allowed") != std::string::npos);
    CHECK(lines[8].find("server-names[8]: must not be empty") != std::string::npos);
    CHECK(lines[9].find("server-names[9]: invalid host name \"" + label64 +
                        ".com\": a label is longer than 63 characters") != std::string::npos);
    CHECK(lines[10].find("server-names[10]: invalid host name \"" + name254 +
                         "\": it is 255 characters long; a host name has at most 253") !=
          std::string::npos);
    CHECK(lines[11] == "weir.toml:18:3: services.web.server-names[12]: duplicate server name "
                       "\"example.com\"");
    CHECK(lines[12].find("server-names[13]: expected a string, got an integer") !=
          std::string::npos);
  }
  SUBCASE("not an array") {
    auto lines = lines_of(load(std::string(kMinimal) + "server-names = \"example.com\"\n"));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "weir.toml:5:16: services.web.server-names: expected an array of host names "
                      "like [\"example.com\", \"*.example.com\"], got a string");
  }
}

TEST_CASE("services: trusted-proxies") {
  SUBCASE("values") {
    auto r = load(
        std::string(kMinimal) +
        R"(trusted-proxies = ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1", "::ffff:192.168.0.0/112"])");
    INFO(joined(r));
    REQUIRE(r.ok());
    const auto& t = r.config->services.at(0).trusted_proxies;
    REQUIRE(t.size() == 4);
    CHECK(t[0].text == "10.0.0.0/8");
    CHECK(t[3].text == "::ffff:192.168.0.0/112");
    CHECK(t[1].loc.line == 5);
    CHECK(load(kMinimal).config->services.at(0).trusted_proxies.empty());
  }
  SUBCASE("errors") {
    auto lines = lines_of(load(std::string(kMinimal) +
                               R"(trusted-proxies = ["10.0.0.0/33", "10.1.0.0/8", "", true])"));
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "weir.toml:5:20: services.web.trusted-proxies[0]: invalid prefix length in "
                      "\"10.0.0.0/33\": expected 0 to 32");
    CHECK(lines[1] == "weir.toml:5:35: services.web.trusted-proxies[1]: \"10.1.0.0/8\" has host "
                      "bits set; did you mean \"10.0.0.0/8\"?");
    CHECK(lines[2] == "weir.toml:5:49: services.web.trusted-proxies[2]: must not be empty");
    CHECK(lines[3] == "weir.toml:5:53: services.web.trusted-proxies[3]: expected a string, got a "
                      "boolean");
    auto lines2 = lines_of(load(std::string(kMinimal) + "trusted-proxies = {}\n"));
    REQUIRE(lines2.size() == 1);
    CHECK(lines2[0] == "weir.toml:5:19: services.web.trusted-proxies: expected an array of "
                       "address ranges like [\"10.0.0.0/8\", \"::1\"], got a table");
  }
}

TEST_CASE("limits: HTTP/2") {
  SUBCASE("defaults") {
    const auto& limits = load(kMinimal).config->services.at(0).limits;
    CHECK(limits.h2_max_concurrent_streams == 128);
    CHECK(limits.h2_initial_window == 65535);
  }
  SUBCASE("values") {
    for (auto [streams, window, bytes] : std::vector<std::tuple<int, std::string, uint64_t>>{
             {1, "1", 1},
             {10000, "\"1MiB\"", 1048576},
             {500, "2147483647", 2147483647},
             {128, "\"2147483647B\"", 2147483647}}) {
      auto r = load(std::string(kMinimal) + "[services.web.limits]\nh2-max-concurrent-streams = " +
                    std::to_string(streams) + "\nh2-initial-window = " + window + "\n");
      INFO(joined(r));
      REQUIRE(r.ok());
      CHECK(r.config->services.at(0).limits.h2_max_concurrent_streams ==
            static_cast<uint32_t>(streams));
      CHECK(r.config->services.at(0).limits.h2_initial_window == bytes);
    }
  }
  SUBCASE("errors") {
    auto lines = lines_of(load(std::string(kMinimal) + R"([services.web.limits]
h2-max-concurrent-streams = 0
h2-initial-window = 0
[services.two]
listeners = [{ address = "127.0.0.1:8081" }]
[services.two.limits]
h2-max-concurrent-streams = 10001
h2-initial-window = "2GiB"
[services.three]
listeners = [{ address = "127.0.0.1:8082" }]
[services.three.limits]
h2-max-concurrent-streams = 1.5
h2-initial-window = "64 KiB"
)"));
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == "weir.toml:6:29: services.web.limits.h2-max-concurrent-streams: must be "
                      "between 1 and 10000 (got 0)");
    CHECK(lines[1] == "weir.toml:7:21: services.web.limits.h2-initial-window: must be greater "
                      "than zero");
    CHECK(lines[2] == "weir.toml:11:29: services.two.limits.h2-max-concurrent-streams: must be "
                      "between 1 and 10000 (got 10001)");
    CHECK(lines[3] == "weir.toml:12:21: services.two.limits.h2-initial-window: must be at most "
                      "2147483647 bytes (2GiB - 1, the largest HTTP/2 window), got 2147483648");
    CHECK(lines[4] == "weir.toml:16:29: services.three.limits.h2-max-concurrent-streams: expected "
                      "an integer, got a float");
    CHECK(lines[5].rfind("weir.toml:17:21: services.three.limits.h2-initial-window: invalid size "
                         "\"64 KiB\"",
                         0) == 0);
  }
}

// --- virtual hosts: services sharing a listener --------------------------------------------------

TEST_CASE("virtual hosts") {
  SUBCASE("services may share an address; certificates may differ") {
    auto r = load(R"([services.a]
listeners = [{ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key", min-version = "1.3" } }, { address = "127.0.0.1:8080" }]
[services.b]
listeners = [{ address = "127.0.0.1:8443", tls = { certificates = [{ cert = "b.pem", key = "b.key" }], min-version = "1.3" } }]
server-names = ["b.example"]
[services.c]
listeners = [{ address = "127.0.0.1:8080" }, { address = "[::1]:0" }]
server-names = ["c.example", "*.example"]
[services.d]
listeners = [{ address = "127.0.0.1:8080" }, { address = "[::1]:0" }]
server-names = ["d.example"]
)");
    INFO(joined(r));
    REQUIRE(r.ok());
    CHECK(r.config->services.size() == 4);
  }
  SUBCASE("unix: addresses and PROXY protocol ranges compare by meaning") {
    auto r = load(R"([services.a]
listeners = [{ address = "unix:/run/w.sock", mode = "0600", proxy-protocol-from = ["::1", "10.0.0.0/8"] }]
[services.b]
listeners = [{ address = "unix:/run/w.sock", mode = 0o600, proxy-protocol-from = ["10.0.0.0/8", "::1/128"] }]
server-names = ["b.example"]
)");
    INFO(joined(r));
    REQUIRE(r.ok());
  }
  SUBCASE("listeners sharing an address must agree on everything but certificates") {
    auto tls = [](std::string_view extra) {
      return R"(tls = { cert = "a.pem", key = "a.key")" +
             (extra.empty() ? std::string() : ", " + std::string(extra)) + " }";
    };
    auto lines = lines_of(load(R"([services.a]
listeners = [
  { address = "127.0.0.1:8443", )" +
                               tls(R"(min-version = "1.2")") + R"( },
  { address = "127.0.0.1:8080" },
  { address = "[::1]:8080", h2c = true },
  { address = "unix:/run/w.sock" },
  { address = "127.0.0.1:9000", proxy-protocol-from = ["10.0.0.0/8"] },
  { address = "127.0.0.1:9443", )" +
                               tls(R"(alpn = ["http/1.1"])") + R"( },
  { address = "127.0.0.1:9444", )" +
                               tls(R"(session-timeout = "5m")") + R"( },
]
[services.b]
server-names = ["b.example"]
listeners = [
  { address = "127.0.0.1:8443", )" +
                               tls(R"(min-version = "1.3")") + R"( },
  { address = "127.0.0.1:8080", )" +
                               tls("") + R"( },
  { address = "[0::1]:8080" },
  { address = "unix:/run/w.sock", mode = "0666" },
  { address = "127.0.0.1:9000" },
  { address = "127.0.0.1:9443", )" +
                               tls("") + R"( },
  { address = "127.0.0.1:9444", )" +
                               tls("") + R"( },
]
)"));
    REQUIRE(lines.size() == 7);
    const std::string tail =
        "; services sharing a listener must agree on everything but certificates";
    CHECK(lines[0] == "weir.toml:14:3: services.b.listeners[0]: listener \"127.0.0.1:8443\" is "
                      "shared with service \"a\" (weir.toml:3:3), which sets tls.min-version = "
                      "\"1.2\"" +
                          tail);
    CHECK(lines[1] == "weir.toml:15:3: services.b.listeners[1]: listener \"127.0.0.1:8080\" is "
                      "shared with service \"a\" (weir.toml:4:3), which has no tls (plain HTTP)" +
                          tail);
    CHECK(lines[2] == "weir.toml:16:3: services.b.listeners[2]: listener \"[0::1]:8080\" is "
                      "shared with service \"a\" (weir.toml:5:3), which sets h2c = true" +
                          tail);
    CHECK(lines[3] == "weir.toml:17:3: services.b.listeners[3]: listener \"unix:/run/w.sock\" is "
                      "shared with service \"a\" (weir.toml:6:3), which sets mode = \"0660\"" +
                          tail);
    CHECK(lines[4] == "weir.toml:18:3: services.b.listeners[4]: listener \"127.0.0.1:9000\" is "
                      "shared with service \"a\" (weir.toml:7:3), which sets proxy-protocol-from "
                      "= [\"10.0.0.0/8\"]" +
                          tail);
    CHECK(lines[5] == "weir.toml:19:3: services.b.listeners[5]: listener \"127.0.0.1:9443\" is "
                      "shared with service \"a\" (weir.toml:8:3), which sets tls.alpn = "
                      "[\"http/1.1\"]" +
                          tail);
    CHECK(lines[6] == "weir.toml:20:3: services.b.listeners[6]: listener \"127.0.0.1:9444\" is "
                      "shared with service \"a\" (weir.toml:9:3), which sets tls.session-timeout "
                      "= \"5m\"" +
                          tail);
  }
  SUBCASE("the other direction: the first has tls, the later one does not") {
    auto lines = lines_of(load(R"([services.a]
listeners = [{ address = "127.0.0.1:8443", tls = { cert = "a.pem", key = "a.key" } }]
[services.b]
listeners = [{ address = "127.0.0.1:8443" }]
server-names = ["b.example"]
)"));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("services.b.listeners[0]: listener \"127.0.0.1:8443\" is shared with "
                        "service \"a\" (weir.toml:2:14), which has tls (HTTPS); services") !=
          std::string::npos);
  }
  SUBCASE("every service after the first needs server-names") {
    auto lines = lines_of(load(R"([services.a]
listeners = [{ address = "127.0.0.1:8080" }]
[services.b]
listeners = [{ address = "127.0.0.1:8080" }]
[services.c]
listeners = [{ address = "127.0.0.1:8080" }]
server-names = []
[services.d]
listeners = [{ address = "127.0.0.1:8080" }]
server-names = ["d.example"]
)"));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "weir.toml:4:14: services.b.listeners[0]: listener \"127.0.0.1:8080\" is "
                      "shared with service \"a\" (weir.toml:2:14), which is listed first and so "
                      "answers every host name no other service lists; this service has no "
                      "server-names, so it could never be chosen (add server-names = [\"NAME\", "
                      "...] to it)");
    CHECK(lines[1].rfind("weir.toml:6:14: services.c.listeners[0]: listener \"127.0.0.1:8080\" is "
                         "shared with service \"a\"",
                         0) == 0);
  }
  SUBCASE("a name belongs to one service per shared address") {
    auto lines = lines_of(load(R"([services.a]
listeners = [{ address = "127.0.0.1:8080" }, { address = "127.0.0.1:8081" }]
server-names = ["a.example", "shared.example"]
[services.b]
listeners = [{ address = "127.0.0.1:8080" }, { address = "127.0.0.1:8081" }]
server-names = ["b.example", "SHARED.example", "*.example"]
[services.c]
listeners = [{ address = "127.0.0.1:8081" }]
server-names = ["*.example", "a.example"]
[services.elsewhere]
listeners = [{ address = "127.0.0.1:9090" }]
server-names = ["a.example"]
)"));
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "weir.toml:6:30: services.b.server-names[1]: server name \"shared.example\" "
                      "is also listed by service \"a\" (weir.toml:3:30), which shares listener "
                      "\"127.0.0.1:8080\" with this service; a name may belong to one service "
                      "per listener");
    CHECK(lines[1] == "weir.toml:9:17: services.c.server-names[0]: server name \"*.example\" is "
                      "also listed by service \"b\" (weir.toml:6:48), which shares listener "
                      "\"127.0.0.1:8081\" with this service; a name may belong to one service "
                      "per listener");
    CHECK(lines[2] == "weir.toml:9:30: services.c.server-names[1]: server name \"a.example\" is "
                      "also listed by service \"a\" (weir.toml:3:17), which shares listener "
                      "\"127.0.0.1:8081\" with this service; a name may belong to one service "
                      "per listener");
  }
}

// --- dump round trip of the new keys -------------------------------------------------------------

TEST_CASE("dump round trip: upstream TLS, protocols, unix listeners, virtual hosts") {
  TempDir dir;
  const std::string text = R"([upstreams.plain]
discovery = { use = "static", targets = ["127.0.0.1:9001"] }
protocol = "h2"
proxy-protocol = "v1"
h2-max-concurrent-streams = 7
[upstreams.secure]
discovery = { use = "static", targets = ["127.0.0.1:9443"] }
protocol = "auto"
proxy-protocol = "v2"
tls = { verify = false, ca-file = "ca.pem", server-name = "API.internal", cert = "client.pem", key = "client.key", min-version = "1.3" }
[upstreams.defaults]
discovery = { use = "static", targets = ["127.0.0.1:9444"] }
tls = {}
[services.a]
listeners = [
  { address = "unix:/run/weir.sock", mode = 0o600, h2c = true },
  { address = "127.0.0.1:8443", proxy-protocol-from = ["10.0.0.0/8", "::1"], tls = { cert = "a.pem", key = "a.key", alpn = ["http/1.1", "h2"] } },
]
upstream = "plain"
trusted-proxies = ["10.0.0.0/8", "192.168.1.7/32", "::1"]
[services.a.limits]
h2-max-concurrent-streams = 10
h2-initial-window = "1MiB"
[services.b]
listeners = [{ address = "127.0.0.1:8443", proxy-protocol-from = ["::1/128", "10.0.0.0/8"], tls = { cert = "b.pem", key = "b.key", alpn = ["http/1.1", "h2"] } }, { address = "unix:/run/weir.sock", mode = "0600", h2c = true }]
upstream = "secure"
server-names = ["B.example", "*.b.example"]
)";
  auto first = load_string(text, dir.file(), {}, {});
  INFO(joined(first));
  REQUIRE(first.ok());
  const Config& c = *first.config;
  const std::string dump = dump_toml(c);
  INFO(dump);
  for (const std::string& expected : std::vector<std::string>{
           "[upstreams.plain]\n",
           "pool-size = 64\nprotocol = \"h2\"\nproxy-protocol = \"v1\"\n"
           "h2-max-concurrent-streams = 7\n# tls: none (plain TCP)\n",
           "protocol = \"auto\"\nproxy-protocol = \"v2\"\nh2-max-concurrent-streams = 100\n"
           "tls = { verify = false, ca-file = \"" +
               dir.path + "/ca.pem\", server-name = \"api.internal\", cert = \"" + dir.path +
               "/client.pem\", key = \"" + dir.path + "/client.key\", min-version = \"1.3\" }\n",
           "tls = { verify = true, min-version = \"1.2\" }\n",
           "  { address = \"unix:/run/weir.sock\", mode = \"0600\", h2c = true, "
           "proxy-protocol-from = [] },\n",
           "  { address = \"127.0.0.1:8443\", h2c = false, proxy-protocol-from = [\"10.0.0.0/8\", "
           "\"::1\"], tls = { certificates = [{ cert = \"" +
               dir.path + "/a.pem\"",
           "server-names = []\ntrusted-proxies = [\"10.0.0.0/8\", \"192.168.1.7/32\", \"::1\"]\n",
           "h2-max-concurrent-streams = 10\nh2-initial-window = 1048576\n",
           "server-names = [\"b.example\", \"*.b.example\"]\ntrusted-proxies = []\n",
       })
    CHECK(dump.find(expected) != std::string::npos);
  // The dump loads back to the same configuration, and dumps the same again.
  auto second = load_string(dump, "dump.toml", {}, {});
  INFO(joined(second));
  REQUIRE(second.ok());
  CHECK(dump_toml(*second.config) == dump);
  check_same(c, *second.config);
}
