// Validation of the Node tree into the typed model, environment and command-line overlays.
#include "internal.hpp"
#include "weir/config/model.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <tuple>
#include <unistd.h>

namespace weir::config {

namespace {

using detail::ParsedDocument;
using Keys = std::vector<std::string>;

const Keys kLogLevels{"trace", "debug", "info", "warn", "error"};
const Keys kLogFormats{"text", "json"};
const Keys kRootKeys{"system", "log", "upstreams", "services"};
const Keys kSystemKeys{"workers", "plugin-dirs", "shutdown-grace"};
const Keys kLogKeys{"level", "format", "output", "access-log"};
const Keys kUpstreamKeys{"discovery",        "lb",           "health",   "connect-timeout",
                         "response-timeout", "idle-timeout", "pool-size"};
const Keys kServiceKeys{"listeners", "upstream", "routes", "filters", "limits"};
const Keys kListenerKeys{"address", "tls"};
const Keys kTlsKeys{"cert",    "key",          "certificates", "min-version",     "max-version",
                    "ciphers", "ciphersuites", "groups",       "session-tickets", "session-timeout",
                    "alpn"};
const Keys kTlsCertificateKeys{"cert", "key"};
const Keys kTlsVersions{"1.2", "1.3"}; // in increasing order
const Keys kAlpnProtocols{"http/1.1"}; // what this release serves
const Keys kRouteKeys{"path-prefix", "path-exact", "upstream", "filters"};
const Keys kLimitsKeys{"max-request-line", "max-header-bytes",   "max-body",
                       "max-headers",      "header-timeout",     "keepalive-timeout",
                       "send-timeout",     "tunnel-idle-timeout"};

constexpr int64_t kMaxWorkers = 1024;

std::string join(const Keys& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty())
      out += ", ";
    out += item;
  }
  return out;
}

std::string quoted(std::string_view s) {
  return detail::toml_quote(s);
}

std::string type_name(const Node& n) {
  switch (n.type) {
  case Node::Type::None:
    return "nothing";
  case Node::Type::String:
    return "a string";
  case Node::Type::Integer:
    return "an integer";
  case Node::Type::Float:
    return "a float";
  case Node::Type::Boolean:
    return "a boolean";
  case Node::Type::Array:
    return "an array";
  case Node::Type::Table:
    return "a table";
  }
  return "a value";
}

bool is_name(std::string_view s) {
  return detail::is_bare_key(s); // [A-Za-z0-9_-]+
}

bool is_plugin_name(std::string_view s) {
  if (s.empty())
    return false;
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (!first && c == '-');
  };
  for (size_t i = 0; i < s.size(); ++i)
    if (!ok(s[i], i == 0))
      return false;
  return true;
}

std::optional<int64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 18)
    return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// Checks "ip:port" / "[ipv6]:port". On success returns "" and sets `canonical` (normalised
// address, for duplicate detection) and `port`; otherwise returns the error message.
std::string check_address(std::string_view addr, std::string& canonical, uint32_t& port) {
  const std::string example =
      "expected \"ip:port\" with an IPv4 address or a bracketed IPv6 address, like "
      "\"127.0.0.1:8080\" or \"[::1]:8080\"";
  std::string_view host, port_text;
  bool v6 = false;
  if (!addr.empty() && addr.front() == '[') {
    size_t close = addr.find(']');
    if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':')
      return "invalid listener address " + quoted(addr) + ": " + example;
    host = addr.substr(1, close - 1);
    port_text = addr.substr(close + 2);
    v6 = true;
  } else {
    size_t colon = addr.rfind(':');
    if (colon == std::string_view::npos)
      return "invalid listener address " + quoted(addr) + ": " + example;
    host = addr.substr(0, colon);
    port_text = addr.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return "invalid listener address " + quoted(addr) +
             ": IPv6 addresses must be in brackets, like \"[::1]:8080\"";
  }
  auto p = parse_decimal(port_text);
  if (!p || port_text.size() > 5 || *p > 65535)
    return "invalid port " + quoted(port_text) + " in listener address " + quoted(addr) +
           ": expected a number from 0 to 65535 (0 = any free port)";
  port = static_cast<uint32_t>(*p);
  std::string host_str(host);
  char buf[INET6_ADDRSTRLEN] = {};
  if (v6) {
    in6_addr a{};
    if (inet_pton(AF_INET6, host_str.c_str(), &a) != 1)
      return "invalid IPv6 address " + quoted(host) + " in listener address " + quoted(addr);
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
    canonical = "[" + std::string(buf) + "]:" + std::to_string(port);
  } else {
    in_addr a{};
    if (inet_pton(AF_INET, host_str.c_str(), &a) != 1)
      return "invalid IP address " + quoted(host) + " in listener address " + quoted(addr) +
             ": expected an IPv4 address like 127.0.0.1 or a bracketed IPv6 address like [::1] "
             "(host names are not allowed)";
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    canonical = std::string(buf) + ":" + std::to_string(port);
  }
  return "";
}

// The absolute directory of the configuration file, against which relative paths in it are
// resolved; "" for a configuration that is not a file ("" or "-"), whose paths stay as written.
std::string config_dir(const std::string& source_name) {
  if (source_name.empty() || source_name == "-")
    return "";
  std::string file = source_name;
  if (file.front() != '/') {
    std::vector<char> buf(4096);
    while (::getcwd(buf.data(), buf.size()) == nullptr && errno == ERANGE)
      buf.resize(buf.size() * 2);
    if (buf[0] == '/') // otherwise no working directory: relative to wherever the file was found
      file = std::string(buf.data()) + "/" + file;
  }
  size_t slash = file.rfind('/');
  if (slash == std::string::npos)
    return "";
  return slash == 0 ? std::string("/") : file.substr(0, slash);
}

// `path` when absolute (or when `dir` is ""), otherwise `dir`/`path` without "." segments and
// doubled slashes. ".." is kept: collapsing it could change the file a symlink leads to.
std::string resolve_path(const std::string& dir, const std::string& path) {
  if (dir.empty() || path.front() == '/')
    return path;
  const std::string joined = dir + "/" + path;
  std::string out;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t end = joined.find('/', start);
    if (end == std::string::npos)
      end = joined.size();
    std::string_view segment(joined.data() + start, end - start);
    if (!segment.empty() && segment != ".") {
      out += '/';
      out += segment;
    }
    start = end + 1;
  }
  if (joined.front() != '/') // a relative directory (no working directory): keep it relative
    out.erase(0, 1);
  return out.empty() ? std::string(".") : out;
}

class Loader {
public:
  Loader(const ParsedDocument& doc, std::vector<Diagnostic>& errors) : doc_(doc), errors_(errors) {}

  Config load(const std::string& source_name) {
    Config cfg;
    cfg.source_path = source_name;
    config_dir_ = config_dir(source_name);
    const Node& root = doc_.root;
    const Node* upstreams = nullptr;
    const Node* services = nullptr;
    for (const auto& [key, value] : root.table) {
      if (key == "system")
        load_system(value, cfg.system);
      else if (key == "log")
        load_log(value, cfg.log);
      else if (key == "upstreams")
        upstreams = &value;
      else if (key == "services")
        services = &value;
      else
        unknown_key(root, key, value, kRootKeys);
    }
    bool upstreams_known = true;
    if (upstreams)
      upstreams_known = load_upstreams(*upstreams, cfg);
    if (!upstreams_known)
      check_references_ = false; // do not pile "unknown upstream" on top of a broken section
    if (!services)
      error(SourceLoc{source_name, 0, 0}, "services",
            "at least one service is required, like [services.web] with listeners = [{ address "
            "= \"0.0.0.0:8080\" }]");
    else
      load_services(*services, cfg);
    return cfg;
  }

private:
  // --- reporting ---------------------------------------------------------------------------
  void error(const SourceLoc& loc, std::string path, std::string message) {
    errors_.push_back(Diagnostic{loc, std::move(path), std::move(message)});
  }
  void error(const Node& n, std::string message) { error(n.loc, n.path, std::move(message)); }

  SourceLoc key_loc(const Node& n) const {
    auto it = doc_.key_locs.find(n.path);
    return it != doc_.key_locs.end() ? it->second : n.loc;
  }

  void unknown_key(const Node& table, const std::string& key, const Node& value,
                   const Keys& allowed) {
    std::string msg = "unknown key " + quoted(key);
    std::string suggestion = did_you_mean(key, allowed);
    if (!suggestion.empty())
      msg += " (did you mean " + quoted(suggestion) + "?)";
    else
      msg += " (allowed: " + join(allowed) + ")";
    error(key_loc(value), table.path, std::move(msg));
  }

  void type_error(const Node& n, std::string_view expected) {
    if (n.type == Node::Type::None)
      return; // already reported (e.g. a date)
    error(n, "expected " + std::string(expected) + ", got " + type_name(n));
  }

  // --- typed values ------------------------------------------------------------------------
  bool expect_table(const Node& n) {
    if (n.type == Node::Type::Table)
      return true;
    type_error(n, "a table");
    return false;
  }

  std::optional<int64_t> integer(const Node& n, int64_t lo, int64_t hi) {
    if (n.type != Node::Type::Integer) {
      type_error(n, "an integer");
      return std::nullopt;
    }
    if (n.integer < lo || n.integer > hi) {
      error(n, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + " (got " +
                   std::to_string(n.integer) + ")");
      return std::nullopt;
    }
    return n.integer;
  }

  std::optional<std::string> string(const Node& n, bool allow_empty = false) {
    if (n.type != Node::Type::String) {
      type_error(n, "a string");
      return std::nullopt;
    }
    if (!allow_empty && n.string.empty()) {
      error(n, "must not be empty");
      return std::nullopt;
    }
    return n.string;
  }

  std::optional<bool> boolean(const Node& n) {
    if (n.type != Node::Type::Boolean) {
      type_error(n, "a boolean (true or false)");
      return std::nullopt;
    }
    return n.boolean;
  }

  std::optional<std::string> one_of(const Node& n, const Keys& allowed, std::string_view what) {
    if (n.type != Node::Type::String) {
      type_error(n, "a string (allowed: " + join(allowed) + ")");
      return std::nullopt;
    }
    if (std::find(allowed.begin(), allowed.end(), n.string) == allowed.end()) {
      error(n, "unknown " + std::string(what) + " " + quoted(n.string) +
                   " (allowed: " + join(allowed) + ")");
      return std::nullopt;
    }
    return n.string;
  }

  std::optional<Duration> duration(const Node& n, bool allow_zero) {
    if (n.type != Node::Type::String) {
      std::string msg = "expected a duration string like \"5s\", got " + type_name(n);
      if (n.type == Node::Type::Integer)
        msg += " (durations need a unit: write \"" + std::to_string(n.integer) +
               "ms\" for milliseconds or \"" + std::to_string(n.integer) + "s\" for seconds)";
      if (n.type != Node::Type::None)
        error(n, std::move(msg));
      return std::nullopt;
    }
    auto d = parse_duration(n.string);
    if (!d) {
      error(n, "invalid duration " + quoted(n.string) +
                   ": expected a number with a unit (ms, s, m, h, d), like \"250ms\", \"5s\" or "
                   "\"1m30s\"");
      return std::nullopt;
    }
    if (!allow_zero && d->count() == 0) {
      error(n, "must be greater than zero");
      return std::nullopt;
    }
    return d;
  }

  std::optional<uint64_t> size(const Node& n, bool allow_zero) {
    std::optional<uint64_t> v;
    if (n.type == Node::Type::Integer) {
      if (n.integer < 0) {
        error(n, "must not be negative (got " + std::to_string(n.integer) + ")");
        return std::nullopt;
      }
      v = static_cast<uint64_t>(n.integer);
    } else if (n.type == Node::Type::String) {
      v = parse_size(n.string);
      if (!v) {
        error(n, "invalid size " + quoted(n.string) +
                     ": expected a number of bytes with an optional unit (allowed units: B, KB, "
                     "KiB, MB, MiB, GB, GiB), like 65536 or \"64KiB\"");
        return std::nullopt;
      }
    } else {
      type_error(n, "a size (an integer number of bytes or a string like \"64KiB\")");
      return std::nullopt;
    }
    if (!allow_zero && *v == 0) {
      error(n, "must be greater than zero");
      return std::nullopt;
    }
    return v;
  }

  static Node default_plugin(std::string_view use, const std::string& path, const SourceLoc& loc) {
    Node use_node;
    use_node.type = Node::Type::String;
    use_node.string = std::string(use);
    use_node.loc = loc;
    use_node.path = detail::path_join(path, "use");
    Node table;
    table.type = Node::Type::Table;
    table.loc = loc;
    table.path = path;
    table.table.emplace_back("use", std::move(use_node));
    return table;
  }

  std::optional<PluginRef> plugin(const Node& n) {
    if (n.type != Node::Type::Table) {
      std::string msg = "expected a plugin table like { use = \"name\" }, got " + type_name(n);
      if (n.type == Node::Type::String && is_plugin_name(n.string))
        msg += " (write { use = " + quoted(n.string) + " })";
      if (n.type != Node::Type::None)
        error(n, std::move(msg));
      return std::nullopt;
    }
    const Node* use = n.get("use");
    if (!use) {
      error(n, "missing key \"use\" (the name of the plugin, like { use = \"static\" })");
      return std::nullopt;
    }
    if (use->type != Node::Type::String) {
      type_error(*use, "a plugin name string");
      return std::nullopt;
    }
    if (!is_plugin_name(use->string)) {
      error(*use, "invalid plugin name " + quoted(use->string) +
                      ": expected lowercase letters, digits and \"-\", not starting with \"-\"");
      return std::nullopt;
    }
    return PluginRef{use->string, n};
  }

  // --- TLS -------------------------------------------------------------------------------
  // A certificate or key file: a non-empty string, resolved against the file's directory.
  std::optional<std::string> file_path(const Node& n) {
    auto s = string(n);
    if (!s)
      return std::nullopt;
    if (s->find('\0') != std::string::npos) {
      error(n, "must not contain a NUL character");
      return std::nullopt;
    }
    return resolve_path(config_dir_, *s);
  }

  // One certificate from `table` (a `certificates` element, or the `tls` table itself for the
  // shorthand) and its `cert` and `key` values, either of which may be missing.
  std::optional<TlsCertificate> certificate(const Node& table, const Node* cert, const Node* key) {
    if (!cert && !key) {
      error(table, "missing required keys \"cert\" and \"key\" (PEM files, like { cert = "
                   "\"server.pem\", key = \"server.key\" })");
      return std::nullopt;
    }
    if (!cert)
      error(table, "missing required key \"cert\" (the PEM certificate chain for \"key\")");
    if (!key)
      error(table, "missing required key \"key\" (the PEM private key for \"cert\")");
    auto cert_path = cert ? file_path(*cert) : std::nullopt;
    auto key_path = key ? file_path(*key) : std::nullopt;
    if (!cert_path || !key_path)
      return std::nullopt;
    return TlsCertificate{*cert_path, *key_path, table.loc, table.path};
  }

  void certificates(const Node& n, std::vector<TlsCertificate>& out) {
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of certificate tables like [{ cert = \"server.pem\", key = "
                    "\"server.key\" }]");
      return;
    }
    if (n.array.empty()) {
      error(n, "at least one certificate is required, like [{ cert = \"server.pem\", key = "
               "\"server.key\" }]");
      return;
    }
    for (const auto& item : n.array) {
      if (item.type != Node::Type::Table) {
        type_error(item,
                   "a certificate table like { cert = \"server.pem\", key = \"server.key\" }");
        continue;
      }
      const Node* cert = nullptr;
      const Node* key = nullptr;
      for (const auto& [k, v] : item.table) {
        if (k == "cert")
          cert = &v;
        else if (k == "key")
          key = &v;
        else
          unknown_key(item, k, v, kTlsCertificateKeys);
      }
      if (auto c = certificate(item, cert, key))
        out.push_back(std::move(*c));
    }
  }

  std::optional<std::string> tls_version(const Node& n) {
    if (n.type == Node::Type::Float) {
      // min-version = 1.2 without quotes
      std::string msg = "expected a string (allowed: " + join(kTlsVersions) + "), got a float";
      std::string text = node_to_toml(n);
      if (std::find(kTlsVersions.begin(), kTlsVersions.end(), text) != kTlsVersions.end())
        msg += " (write " + quoted(text) + ")";
      error(n, std::move(msg));
      return std::nullopt;
    }
    return one_of(n, kTlsVersions, "TLS version");
  }

  // An OpenSSL list (ciphers, cipher suites, groups): OpenSSL checks the entries when the
  // listener is set up; here only that it is one word.
  std::optional<std::string> openssl_list(const Node& n) {
    auto s = string(n);
    if (!s)
      return std::nullopt;
    for (char c : *s) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) {
        error(n, "must not contain whitespace or control characters (separate the entries with "
                 "\":\")");
        return std::nullopt;
      }
    }
    return s;
  }

  void alpn(const Node& n, std::vector<std::string>& out) {
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of protocol names like [\"http/1.1\"]");
      return;
    }
    if (n.array.empty()) {
      error(n, "at least one protocol is required, like [\"http/1.1\"]");
      return;
    }
    std::vector<std::string> protocols;
    bool ok = true;
    for (const auto& item : n.array) {
      auto s = string(item);
      if (!s) {
        ok = false;
      } else if (std::find(kAlpnProtocols.begin(), kAlpnProtocols.end(), *s) ==
                 kAlpnProtocols.end()) {
        error(item, quoted(*s) +
                        " is not served by this release (allowed: " + join(kAlpnProtocols) + ")");
        ok = false;
      } else if (std::find(protocols.begin(), protocols.end(), *s) != protocols.end()) {
        error(item, "duplicate protocol " + quoted(*s));
        ok = false;
      } else {
        protocols.push_back(std::move(*s));
      }
    }
    if (ok)
      out = std::move(protocols);
  }

  std::optional<TlsConfig> tls(const Node& n) {
    if (n.type != Node::Type::Table) {
      type_error(n, "a table like { cert = \"server.pem\", key = \"server.key\" }");
      return std::nullopt;
    }
    TlsConfig out;
    out.loc = n.loc;
    out.key_path = n.path;
    const Node* cert = nullptr;
    const Node* key = nullptr;
    const Node* certs = nullptr;
    const Node* min_node = nullptr;
    const Node* max_node = nullptr;
    for (const auto& [k, v] : n.table) {
      if (k == "cert") {
        cert = &v;
      } else if (k == "key") {
        key = &v;
      } else if (k == "certificates") {
        certs = &v;
      } else if (k == "min-version") {
        if (auto s = tls_version(v)) {
          out.min_version = *s;
          min_node = &v;
        }
      } else if (k == "max-version") {
        if (auto s = tls_version(v)) {
          out.max_version = *s;
          max_node = &v;
        }
      } else if (k == "ciphers") {
        if (auto s = openssl_list(v))
          out.ciphers = *s;
      } else if (k == "ciphersuites") {
        if (auto s = openssl_list(v))
          out.ciphersuites = *s;
      } else if (k == "groups") {
        if (auto s = openssl_list(v))
          out.groups = *s;
      } else if (k == "session-tickets") {
        if (auto b = boolean(v))
          out.session_tickets = *b;
      } else if (k == "session-timeout") {
        if (auto d = duration(v, false))
          out.session_timeout = *d;
      } else if (k == "alpn") {
        alpn(v, out.alpn);
      } else {
        unknown_key(n, k, v, kTlsKeys);
      }
    }
    if (certs && (cert || key)) {
      error(*certs, "give either \"cert\" and \"key\" (one certificate) or \"certificates\" "
                    "(one or more), not both");
    } else if (certs) {
      certificates(*certs, out.certificates);
    } else if (cert || key) {
      if (auto c = certificate(n, cert, key))
        out.certificates.push_back(std::move(*c));
    } else {
      error(n, "missing \"cert\" and \"key\" (one certificate, like { cert = \"server.pem\", "
               "key = \"server.key\" }) or \"certificates\" (one or more, like certificates = "
               "[{ cert = \"a.pem\", key = \"a.key\" }])");
    }
    auto rank = [](const std::string& v) {
      return std::find(kTlsVersions.begin(), kTlsVersions.end(), v) - kTlsVersions.begin();
    };
    if (rank(out.max_version) < rank(out.min_version))
      error(max_node ? *max_node : *min_node, "must not be lower than min-version " +
                                                  quoted(out.min_version) + " (got " +
                                                  quoted(out.max_version) + ")");
    return out;
  }

  std::vector<PluginRef> plugin_list(const Node& n) {
    std::vector<PluginRef> out;
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of plugin tables like [{ use = \"name\" }]");
      return out;
    }
    for (const auto& item : n.array)
      if (auto p = plugin(item))
        out.push_back(std::move(*p));
    return out;
  }

  // --- sections ----------------------------------------------------------------------------
  void load_system(const Node& n, SystemConfig& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, value] : n.table) {
      if (key == "workers") {
        if (auto v = integer(value, 0, kMaxWorkers))
          out.workers = static_cast<uint32_t>(*v);
      } else if (key == "plugin-dirs") {
        if (value.type != Node::Type::Array) {
          type_error(value, "an array of directory strings");
          continue;
        }
        for (const auto& item : value.array)
          if (auto s = string(item))
            out.plugin_dirs.push_back(*s);
      } else if (key == "shutdown-grace") {
        if (auto d = duration(value, true))
          out.shutdown_grace = *d;
      } else {
        unknown_key(n, key, value, kSystemKeys);
      }
    }
  }

  void load_log(const Node& n, LogConfig& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, value] : n.table) {
      if (key == "level") {
        if (auto v = one_of(value, kLogLevels, "log level"))
          out.level = *v;
      } else if (key == "format") {
        if (auto v = one_of(value, kLogFormats, "log format"))
          out.format = *v;
      } else if (key == "output") {
        if (auto v = string(value))
          out.output = *v;
      } else if (key == "access-log") {
        if (auto v = boolean(value))
          out.access_log = *v;
      } else {
        unknown_key(n, key, value, kLogKeys);
      }
    }
  }

  bool check_name(const std::string& name, const Node& value, std::string_view what) {
    if (is_name(name))
      return true;
    error(key_loc(value), value.path,
          "invalid " + std::string(what) + " name " + quoted(name) +
              ": use only letters, digits, \"_\" and \"-\"");
    return false;
  }

  bool load_upstreams(const Node& n, Config& cfg) {
    if (!expect_table(n))
      return false;
    for (const auto& [name, value] : n.table) {
      check_name(name, value, "upstream");
      known_upstreams_.push_back(name); // even when broken, so references to it do not cascade
      if (!expect_table(value))
        continue;
      UpstreamConfig u;
      u.name = name;
      u.loc = value.loc;
      bool have_discovery = false;
      bool have_lb = false;
      for (const auto& [key, v] : value.table) {
        if (key == "discovery") {
          have_discovery = true;
          if (auto p = plugin(v))
            u.discovery = std::move(*p);
        } else if (key == "lb") {
          have_lb = true;
          if (auto p = plugin(v))
            u.lb = std::move(*p);
        } else if (key == "health") {
          if (auto p = plugin(v))
            u.health = std::move(*p);
        } else if (key == "connect-timeout") {
          if (auto d = duration(v, false))
            u.connect_timeout = *d;
        } else if (key == "response-timeout") {
          if (auto d = duration(v, false))
            u.response_timeout = *d;
        } else if (key == "idle-timeout") {
          if (auto d = duration(v, false))
            u.idle_timeout = *d;
        } else if (key == "pool-size") {
          if (auto i = integer(v, 1, 65536))
            u.pool_size = static_cast<uint32_t>(*i);
        } else {
          unknown_key(value, key, v, kUpstreamKeys);
        }
      }
      if (!have_discovery)
        error(value, "missing required key \"discovery\" (a plugin table like { use = "
                     "\"static\", targets = [\"127.0.0.1:9001\"] })");
      if (!have_lb) {
        std::string lb_path = detail::path_join(value.path, "lb");
        u.lb = PluginRef{"round-robin", default_plugin("round-robin", lb_path, value.loc)};
      }
      cfg.upstreams.push_back(std::move(u));
    }
    return true;
  }

  std::optional<std::string> upstream_ref(const Node& n) {
    auto name = string(n);
    if (!name)
      return std::nullopt;
    if (!check_references_ || std::find(known_upstreams_.begin(), known_upstreams_.end(), *name) !=
                                  known_upstreams_.end())
      return name;
    std::string msg = "unknown upstream " + quoted(*name);
    if (known_upstreams_.empty()) {
      msg += " (no upstreams are defined; add one with [upstreams." +
             (is_name(*name) ? *name : std::string("NAME")) + "])";
    } else {
      std::string suggestion = did_you_mean(*name, known_upstreams_);
      msg += " (";
      if (!suggestion.empty())
        msg += "did you mean " + quoted(suggestion) + "?; ";
      msg += "defined upstreams: " + join(known_upstreams_) + ")";
    }
    error(n, std::move(msg));
    return name; // keep the name: the config is rejected anyway
  }

  void load_listeners(const Node& n, const std::string& service, ServiceConfig& out) {
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of listener tables like [{ address = \"0.0.0.0:8080\" }]");
      return;
    }
    if (n.array.empty()) {
      error(n, "at least one listener is required, like [{ address = \"0.0.0.0:8080\" }]");
      return;
    }
    for (const auto& item : n.array) {
      if (item.type != Node::Type::Table) {
        std::string msg =
            "expected a listener table like { address = \"0.0.0.0:8080\" }, got " + type_name(item);
        if (item.type == Node::Type::String)
          msg += " (write { address = " + quoted(item.string) + " })";
        if (item.type != Node::Type::None)
          error(item, std::move(msg));
        continue;
      }
      const Node* address = nullptr;
      std::optional<TlsConfig> tls_config;
      for (const auto& [key, v] : item.table) {
        if (key == "address")
          address = &v;
        else if (key == "tls")
          tls_config = tls(v);
        else
          unknown_key(item, key, v, kListenerKeys);
      }
      if (!address) {
        error(item, "missing required key \"address\" (like \"0.0.0.0:8080\")");
        continue;
      }
      auto text = string(*address);
      if (!text)
        continue;
      std::string canonical;
      uint32_t port = 0;
      std::string problem = check_address(*text, canonical, port);
      if (!problem.empty()) {
        error(*address, std::move(problem));
        continue;
      }
      if (port != 0) {
        auto [it, inserted] = listeners_.try_emplace(canonical, service, address->loc);
        if (!inserted) {
          error(*address, "listener address " + quoted(*text) + " is already used by service " +
                              quoted(it->second.first) + " (line " +
                              std::to_string(it->second.second.line) + ")");
          continue;
        }
      }
      ListenerConfig listener;
      listener.address = *text;
      listener.loc = item.loc;
      listener.tls = std::move(tls_config);
      out.listeners.push_back(std::move(listener));
    }
  }

  void load_route(const Node& n, RouteConfig& out) {
    out.loc = n.loc;
    bool have_upstream = false;
    const Node* prefix = nullptr;
    const Node* exact = nullptr;
    for (const auto& [key, v] : n.table) {
      if (key == "path-prefix") {
        prefix = &v;
      } else if (key == "path-exact") {
        exact = &v;
      } else if (key == "upstream") {
        have_upstream = true;
        if (auto u = upstream_ref(v))
          out.upstream = *u;
      } else if (key == "filters") {
        out.filters = plugin_list(v);
      } else {
        unknown_key(n, key, v, kRouteKeys);
      }
    }
    auto path_value = [&](const Node& v) -> std::optional<std::string> {
      auto s = string(v);
      if (s && s->front() != '/') {
        error(v, "must start with \"/\" (got " + quoted(*s) + ")");
        return std::nullopt;
      }
      return s;
    };
    if (prefix && exact)
      error(*exact, "a route has either \"path-prefix\" or \"path-exact\", not both");
    else if (!prefix && !exact)
      error(n, "missing \"path-prefix\" or \"path-exact\" (exactly one is required)");
    if (prefix)
      out.path_prefix = path_value(*prefix);
    if (exact && !prefix)
      out.path_exact = path_value(*exact);
    if (!have_upstream)
      error(n, "missing required key \"upstream\"");
  }

  void load_limits(const Node& n, LimitsConfig& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, v] : n.table) {
      // Upper bounds: one header field must fit the parser's 64 KiB field limit, and a whole
      // head is read into one buffer of at most 1 MiB.
      if (key == "max-request-line") {
        if (auto s = size(v, false)) {
          if (*s > 65535)
            error(v, "must be at most 65535 bytes (64KiB - 1), got " + std::to_string(*s));
          else
            out.max_request_line = *s;
        }
      } else if (key == "max-header-bytes") {
        if (auto s = size(v, false)) {
          if (*s > 1048576)
            error(v, "must be at most 1048576 bytes (1MiB), got " + std::to_string(*s));
          else
            out.max_header_bytes = *s;
        }
      } else if (key == "max-body") {
        if (auto s = size(v, true))
          out.max_body = *s;
      } else if (key == "max-headers") {
        if (auto i = integer(v, 1, 65536))
          out.max_headers = static_cast<uint32_t>(*i);
      } else if (key == "header-timeout") {
        if (auto d = duration(v, false))
          out.header_timeout = *d;
      } else if (key == "keepalive-timeout") {
        if (auto d = duration(v, false))
          out.keepalive_timeout = *d;
      } else if (key == "send-timeout") {
        if (auto d = duration(v, false))
          out.send_timeout = *d;
      } else if (key == "tunnel-idle-timeout") {
        if (auto d = duration(v, false))
          out.tunnel_idle_timeout = *d;
      } else {
        unknown_key(n, key, v, kLimitsKeys);
      }
    }
  }

  void load_services(const Node& n, Config& cfg) {
    if (!expect_table(n))
      return;
    if (n.table.empty()) {
      error(key_loc(n), n.path, "at least one service is required, like [services.web]");
      return;
    }
    for (const auto& [name, value] : n.table) {
      check_name(name, value, "service");
      if (!expect_table(value))
        continue;
      ServiceConfig s;
      s.name = name;
      s.loc = value.loc;
      bool have_listeners = false;
      for (const auto& [key, v] : value.table) {
        if (key == "listeners") {
          have_listeners = true;
          load_listeners(v, name, s);
        } else if (key == "upstream") {
          if (auto u = upstream_ref(v))
            s.upstream = *u;
        } else if (key == "routes") {
          if (v.type != Node::Type::Array) {
            type_error(v, "an array of route tables ([[services." + name + ".routes]])");
            continue;
          }
          for (const auto& item : v.array) {
            if (item.type != Node::Type::Table) {
              type_error(item, "a route table");
              continue;
            }
            RouteConfig r;
            load_route(item, r);
            s.routes.push_back(std::move(r));
          }
        } else if (key == "filters") {
          s.filters = plugin_list(v);
        } else if (key == "limits") {
          load_limits(v, s.limits);
        } else {
          unknown_key(value, key, v, kServiceKeys);
        }
      }
      if (!have_listeners)
        error(value, "missing required key \"listeners\" (at least one, like listeners = [{ "
                     "address = \"0.0.0.0:8080\" }])");
      cfg.services.push_back(std::move(s));
    }
  }

  const ParsedDocument& doc_;
  std::vector<Diagnostic>& errors_;
  Keys known_upstreams_;
  bool check_references_ = true;
  std::map<std::string, std::pair<std::string, SourceLoc>> listeners_; // canonical -> service
  std::string config_dir_; // relative paths in the file are resolved against it
};

// --- overlays ----------------------------------------------------------------------------------

void apply_workers(std::string_view text, const std::string& origin, Config& cfg,
                   std::vector<Diagnostic>& errors) {
  auto v = parse_decimal(text);
  if (!v || *v > kMaxWorkers) {
    errors.push_back({SourceLoc{origin, 0, 0}, "system.workers",
                      "invalid value " + quoted(text) + ": expected an integer from 0 to " +
                          std::to_string(kMaxWorkers) + " (0 = one per core)"});
    return;
  }
  cfg.system.workers = static_cast<uint32_t>(*v);
}

void apply_enum(std::string_view text, const std::string& origin, const char* key,
                const Keys& allowed, std::string& target, std::vector<Diagnostic>& errors) {
  if (std::find(allowed.begin(), allowed.end(), text) == allowed.end()) {
    errors.push_back({SourceLoc{origin, 0, 0}, key,
                      "invalid value " + quoted(text) + " (allowed: " + join(allowed) + ")"});
    return;
  }
  target = std::string(text);
}

void apply_overlays(const Overrides& cli, const std::map<std::string, std::string>& env,
                    Config& cfg, std::vector<Diagnostic>& errors) {
  // Environment first, then the command line on top of it.
  auto env_value = [&](const char* name) -> const std::string* {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty())
      return nullptr; // empty means unset
    return &it->second;
  };
  if (const auto* v = env_value("WEIR_WORKERS"))
    apply_workers(*v, "env:WEIR_WORKERS", cfg, errors);
  if (const auto* v = env_value("WEIR_LOG_LEVEL"))
    apply_enum(*v, "env:WEIR_LOG_LEVEL", "log.level", kLogLevels, cfg.log.level, errors);
  if (const auto* v = env_value("WEIR_LOG_FORMAT"))
    apply_enum(*v, "env:WEIR_LOG_FORMAT", "log.format", kLogFormats, cfg.log.format, errors);

  if (cli.workers)
    apply_workers(std::to_string(*cli.workers), "cli:--workers", cfg, errors);
  if (cli.log_level)
    apply_enum(*cli.log_level, "cli:--log-level", "log.level", kLogLevels, cfg.log.level, errors);
  if (cli.log_format)
    apply_enum(*cli.log_format, "cli:--log-format", "log.format", kLogFormats, cfg.log.format,
               errors);
}

void sort_errors(std::vector<Diagnostic>& errors, const std::string& source_name) {
  auto group = [&](const Diagnostic& d) {
    if (d.loc.file.rfind("env:", 0) == 0)
      return 1;
    if (d.loc.file.rfind("cli:", 0) == 0)
      return 2;
    return d.loc.file == source_name ? 0 : 3;
  };
  std::stable_sort(errors.begin(), errors.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    return std::make_tuple(group(a), a.loc.line, a.loc.column) <
           std::make_tuple(group(b), b.loc.line, b.loc.column);
  });
}

} // namespace

const UpstreamConfig* Config::find_upstream(std::string_view name) const {
  for (const auto& u : upstreams)
    if (u.name == name)
      return &u;
  return nullptr;
}

const std::vector<EnvVar>& env_vars() {
  static const std::vector<EnvVar> vars{
      {"WEIR_CONFIG", "", "path of the configuration file (when --config is not given)"},
      {"WEIR_WORKERS", "system.workers",
       "number of worker threads, 0 = one per core (overrides the file; --workers overrides it)"},
      {"WEIR_LOG_LEVEL", "log.level",
       "log level: trace, debug, info, warn or error (overrides the file; --log-level overrides "
       "it)"},
      {"WEIR_LOG_FORMAT", "log.format",
       "log format: text or json (overrides the file; --log-format overrides it)"},
      {"WEIR_PLUGIN_PATH", "",
       "colon-separated plugin directories, searched after system.plugin-dirs and before the "
       "built-in plugin directory"},
  };
  return vars;
}

LoadResult load_string(std::string_view text, const std::string& source_name, const Overrides& cli,
                       const std::map<std::string, std::string>& env) {
  LoadResult result;
  ParsedDocument doc = detail::parse_toml(text, source_name);
  std::vector<Diagnostic> errors = doc.errors;
  Config cfg;
  if (doc.syntax_ok) {
    Loader loader(doc, errors);
    cfg = loader.load(source_name);
  }
  apply_overlays(cli, env, cfg, errors);
  sort_errors(errors, source_name);
  result.errors = std::move(errors);
  if (result.errors.empty())
    result.config = std::move(cfg);
  return result;
}

LoadResult load_file(const std::string& path, const Overrides& cli,
                     const std::map<std::string, std::string>& env) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        err = errno;
        break;
      }
    }
    ::close(fd);
  }
  if (err != 0) {
    LoadResult result;
    result.errors.push_back(
        Diagnostic{SourceLoc{path, 0, 0}, "",
                   "cannot read the configuration file: " + std::string(std::strerror(err))});
    return result;
  }
  return load_string(text, path, cli, env);
}

} // namespace weir::config
