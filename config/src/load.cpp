// Validation of the Node tree into the typed model, environment and command-line overlays.
#include "internal.hpp"
#include "weir/config/model.hpp"

#include "weir/config/cidr.hpp"
#include "weir/config/regex.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <tuple>
#include <unistd.h>

namespace weir::config {

namespace {

using detail::ParsedDocument;
using Keys = std::vector<std::string>;

const Keys kLogLevels{"trace", "debug", "info", "warn", "error"};
const Keys kLogFormats{"text", "json"};
const Keys kRootKeys{"system", "log", "admin", "dns", "upstreams", "services"};
const Keys kAdminKeys{"listen"};
const Keys kDnsKeys{"servers", "timeout", "tries"};
const Keys kSystemKeys{"workers", "plugin-dirs", "shutdown-grace"};
const Keys kLogKeys{"level", "format", "output", "access-log"};
const Keys kUpstreamKeys{"discovery",
                         "lb",
                         "health",
                         "connect-timeout",
                         "response-timeout",
                         "request-timeout",
                         "idle-timeout",
                         "max-tries",
                         "retry-timeout",
                         "pool-size",
                         "tls",
                         "protocol",
                         "proxy-protocol",
                         "h2-max-concurrent-streams"};
const Keys kUpstreamTlsKeys{"verify", "ca-file", "server-name", "cert", "key", "min-version"};
const Keys kUpstreamProtocols{"h1", "h2", "auto"};
const Keys kProxyProtocolVersions{"off", "v1", "v2"};
const Keys kServiceKeys{"listeners", "upstream",     "routes",          "filters",
                        "limits",    "server-names", "trusted-proxies", "no-route"};
const Keys kNoRouteKeys{"status", "body", "content-type"};
const Keys kListenerKeys{"address", "tls", "mode", "h2c", "proxy-protocol-from"};
const Keys kTlsKeys{"cert",    "key",          "certificates", "min-version",     "max-version",
                    "ciphers", "ciphersuites", "groups",       "session-tickets", "session-timeout",
                    "alpn"};
const Keys kTlsCertificateKeys{"cert", "key"};
const Keys kTlsVersions{"1.2", "1.3"};       // in increasing order
const Keys kAlpnProtocols{"h2", "http/1.1"}; // what this release serves
const Keys kRouteKeys{"path-prefix",      "path-exact",      "path-regex", "host",
                      "methods",          "upstream",        "filters",    "connect-timeout",
                      "response-timeout", "request-timeout", "max-tries",  "retry-timeout"};
constexpr int64_t kMaxTries = 100;
const Keys kLimitsKeys{"max-request-line", "max-header-bytes",    "max-body",
                       "max-headers",      "header-timeout",      "keepalive-timeout",
                       "send-timeout",     "tunnel-idle-timeout", "h2-max-concurrent-streams",
                       "h2-initial-window"};

constexpr int64_t kMaxWorkers = 1024;
constexpr int64_t kMaxH2Streams = 10000;
constexpr uint64_t kMaxH2Window = 2147483647; // 2^31 - 1, the largest HTTP/2 flow-control window
constexpr uint32_t kMaxMode = 0777;
// sun_path holds the path and its terminating NUL.
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr std::string_view kUnixPrefix = "unix:";

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

bool is_unix_address(std::string_view addr) {
  return addr.substr(0, kUnixPrefix.size()) == kUnixPrefix;
}

// Checks "unix:/absolute/path"; returns "" or the error message.
std::string check_unix_address(std::string_view addr) {
  std::string_view path = addr.substr(kUnixPrefix.size());
  const std::string what = "invalid listener address " + quoted(addr) + ": ";
  if (path.empty() || path.front() != '/')
    return what + "the socket path must be absolute, like \"unix:/run/weir.sock\"";
  if (path.find('\0') != std::string_view::npos)
    return what + "the socket path must not contain a NUL character";
  if (path.back() == '/')
    return what + "the socket path must name a file, not a directory";
  if (path.size() > kMaxUnixPath)
    return what + "the socket path is " + std::to_string(path.size()) + " bytes long; at most " +
           std::to_string(kMaxUnixPath) + " fit in a Unix socket address (sun_path)";
  return "";
}

// Checks "ip:port" / "[ipv6]:port" / "unix:/path". On success returns "" and sets `canonical`
// (normalised address, for duplicate detection; a unix: address as written) and `port` (1 for a
// unix: address); otherwise returns the error message.
std::string check_address(std::string_view addr, std::string& canonical, uint32_t& port) {
  if (is_unix_address(addr)) {
    std::string problem = check_unix_address(addr);
    if (problem.empty()) {
      canonical = std::string(addr);
      port = 1;
    }
    return problem;
  }
  const std::string example =
      "expected \"ip:port\" with an IPv4 address or a bracketed IPv6 address, like "
      "\"127.0.0.1:8080\" or \"[::1]:8080\", or \"unix:/absolute/path\"";
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

// Lowercases `name` and checks it as a host name (no port); `wildcard` allows "*." as the whole
// first label. Returns "" or the problem, naming the value as written.
std::string check_host_name(std::string& name, bool wildcard) {
  const std::string written = name;
  if (name.empty())
    return "must not be empty";
  std::transform(name.begin(), name.end(), name.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  const std::string what = "invalid host name " + quoted(written) + ": ";
  if (name.size() > 253)
    return what + "it is " + std::to_string(name.size()) +
           " characters long; a host name has at most 253";
  if (name.find(':') != std::string::npos || name.front() == '[')
    return what + "a host name has no port (nor brackets)";
  std::string_view rest = name;
  if (wildcard && rest.substr(0, 2) == "*.") {
    rest.remove_prefix(2);
    if (rest.empty())
      return what + "a wildcard needs a domain after it, like \"*.example.com\"";
  }
  if (rest.find('*') != std::string_view::npos)
    return what +
           (wildcard ? "a wildcard is allowed only as the whole first label, like \"*.example.com\""
                     : "wildcards are not allowed here");
  for (char c : rest)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
      return what + "only letters, digits, \"-\" and \".\" are allowed";
  size_t start = 0;
  for (;;) {
    size_t dot = rest.find('.', start);
    size_t end = dot == std::string_view::npos ? rest.size() : dot;
    if (end == start)
      return what + "empty label (a leading, trailing or doubled \".\")";
    if (end - start > 63)
      return what + "a label is longer than 63 characters";
    if (dot == std::string_view::npos)
      break;
    start = dot + 1;
  }
  return "";
}

// `mode` as "0660".
std::string octal_mode(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

std::string loc_string(const SourceLoc& loc) {
  std::string out = loc.file;
  if (loc.line > 0)
    out += ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
  return out;
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

// Where an accepted listener was written, for the checks across services.
struct ListenerSite {
  std::string canonical; // normalised address; "" for port 0 (never shared)
  SourceLoc loc;         // the listener's table
  std::string path;      // "services.web.listeners[0]"
};

struct ServiceSites {
  std::vector<ListenerSite> listeners;                  // parallel to ServiceConfig::listeners
  std::vector<std::pair<SourceLoc, std::string>> names; // parallel to server_names: loc, path
  bool names_written = false; // server-names is written and not an empty array
};

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
      else if (key == "admin")
        load_admin(value, cfg.admin);
      else if (key == "dns")
        load_dns(value, cfg.dns);
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
      type_error(n, "an array of protocol names like [\"h2\", \"http/1.1\"]");
      return;
    }
    if (n.array.empty()) {
      error(n, "at least one protocol is required, like [\"h2\", \"http/1.1\"]");
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

  // A file weir reads at start (a PEM file towards upstreams): resolved like file_path(), and
  // opened once now so that a missing or unreadable file is reported with the other mistakes.
  std::optional<std::string> readable_file(const Node& n) {
    auto path = file_path(n);
    if (!path)
      return std::nullopt;
    int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      error(n, "cannot read " + quoted(*path) + ": " + std::strerror(errno));
      return std::nullopt;
    }
    struct stat st {};
    bool dir = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    ::close(fd);
    if (dir) {
      error(n, "cannot read " + quoted(*path) + ": it is a directory (expected a PEM file)");
      return std::nullopt;
    }
    return path;
  }

  // upstreams.NAME.tls: TLS towards the targets. `{}` is every default.
  std::optional<UpstreamTlsConfig> upstream_tls(const Node& n) {
    if (n.type != Node::Type::Table) {
      type_error(n, "a table like { verify = true } ({} for the defaults)");
      return std::nullopt;
    }
    UpstreamTlsConfig out;
    out.loc = n.loc;
    out.key_path = n.path;
    const Node* cert = nullptr;
    const Node* key = nullptr;
    for (const auto& [k, v] : n.table) {
      if (k == "verify") {
        if (auto b = boolean(v))
          out.verify = *b;
      } else if (k == "ca-file") {
        if (auto p = readable_file(v))
          out.ca_file = *p;
      } else if (k == "server-name") {
        if (auto name = string(v)) {
          in_addr a4{};
          in6_addr a6{};
          std::string problem;
          if (inet_pton(AF_INET, name->c_str(), &a4) == 1 ||
              inet_pton(AF_INET6, name->c_str(), &a6) == 1)
            problem = quoted(*name) +
                      " is an IP address; SNI carries only DNS names (leave server-name out to "
                      "have the target's address verified against the certificate)";
          else
            problem = check_host_name(*name, false);
          if (!problem.empty())
            error(v, std::move(problem));
          else
            out.server_name = std::move(*name);
        }
      } else if (k == "cert") {
        cert = &v;
      } else if (k == "key") {
        key = &v;
      } else if (k == "min-version") {
        if (auto ver = tls_version(v))
          out.min_version = *ver;
      } else {
        unknown_key(n, k, v, kUpstreamTlsKeys);
      }
    }
    if (cert && !key)
      error(n, "missing required key \"key\" (the PEM private key for the client certificate "
               "\"cert\")");
    if (key && !cert)
      error(n, "missing required key \"cert\" (the PEM client certificate chain for \"key\")");
    if (cert)
      if (auto p = readable_file(*cert))
        out.cert = *p;
    if (key)
      if (auto p = readable_file(*key))
        out.key = *p;
    return out;
  }

  // An array of address ranges, each checked where it is written.
  std::vector<Cidr> cidr_list(const Node& n) {
    std::vector<Cidr> out;
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of address ranges like [\"10.0.0.0/8\", \"::1\"]");
      return out;
    }
    for (const auto& item : n.array) {
      auto text = string(item);
      if (!text)
        continue;
      std::string why;
      if (!CidrRange::parse(*text, why)) {
        error(item, std::move(why));
        continue;
      }
      out.push_back(Cidr{std::move(*text), item.loc});
    }
    return out;
  }

  // Unix socket permissions: an integer (0o660 in TOML) or a string of octal digits ("0660").
  std::optional<uint32_t> file_mode(const Node& n) {
    int64_t v = 0;
    if (n.type == Node::Type::Integer) {
      v = n.integer;
      if (v < 0) {
        error(n, "must not be negative (got " + std::to_string(v) + ")");
        return std::nullopt;
      }
      if (v > kMaxMode) {
        std::string msg = "must be at most 0o777 (got " + std::to_string(v) + ")";
        // `mode = 660` is decimal 660; suggest the octal spelling when the digits make a mode.
        const std::string digits = std::to_string(v);
        if (digits.find_first_not_of("01234567") == std::string::npos && digits.size() <= 3)
          msg += "; a TOML integer without 0o is decimal: write 0o" + digits + " or \"0" + digits +
                 "\"";
        error(n, std::move(msg));
        return std::nullopt;
      }
      return static_cast<uint32_t>(v);
    }
    if (n.type != Node::Type::String) {
      type_error(n, "a file mode, like 0o660 or \"0660\"");
      return std::nullopt;
    }
    const std::string& s = n.string;
    if (s.empty() || s.size() > 6 || s.find_first_not_of("01234567") != std::string::npos) {
      error(n, "invalid mode " + quoted(s) + ": expected octal digits, like \"0660\"");
      return std::nullopt;
    }
    for (char c : s)
      v = v * 8 + (c - '0');
    if (v > kMaxMode) {
      error(n, "must be at most \"0777\" (got " + quoted(s) + ")");
      return std::nullopt;
    }
    return static_cast<uint32_t>(v);
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
      bool have_tls = false;
      const Node* protocol = nullptr;
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
          if (v.type == Node::Type::Array)
            u.health = plugin_list(v);
          else if (auto p = plugin(v))
            u.health.push_back(std::move(*p));
        } else if (key == "connect-timeout") {
          if (auto d = duration(v, false))
            u.connect_timeout = *d;
        } else if (key == "response-timeout") {
          if (auto d = duration(v, false))
            u.response_timeout = *d;
        } else if (key == "idle-timeout") {
          if (auto d = duration(v, false))
            u.idle_timeout = *d;
        } else if (key == "request-timeout") {
          if (auto d = duration(v, false))
            u.request_timeout = *d;
        } else if (key == "max-tries") {
          if (auto i = integer(v, 1, kMaxTries))
            u.max_tries = static_cast<uint32_t>(*i);
        } else if (key == "retry-timeout") {
          if (auto d = duration(v, false))
            u.retry_timeout = *d;
        } else if (key == "pool-size") {
          if (auto i = integer(v, 1, 65536))
            u.pool_size = static_cast<uint32_t>(*i);
        } else if (key == "tls") {
          have_tls = true;
          u.tls = upstream_tls(v);
        } else if (key == "protocol") {
          if (auto p = one_of(v, kUpstreamProtocols, "protocol")) {
            u.protocol = *p;
            protocol = &v;
          }
        } else if (key == "proxy-protocol") {
          if (auto p = one_of(v, kProxyProtocolVersions, "PROXY protocol version"))
            u.proxy_protocol = *p;
        } else if (key == "h2-max-concurrent-streams") {
          if (auto i = integer(v, 1, kMaxH2Streams))
            u.h2_max_concurrent_streams = static_cast<uint32_t>(*i);
        } else {
          unknown_key(value, key, v, kUpstreamKeys);
        }
      }
      if (protocol && u.protocol == "auto" && !have_tls)
        error(*protocol, "\"auto\" chooses h2 or http/1.1 by ALPN, which needs TLS: add tls = {} "
                         "(or a tls table with settings), or choose \"h1\" or \"h2\"");
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

  void load_listeners(const Node& n, ServiceConfig& out, ServiceSites& sites) {
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of listener tables like [{ address = \"0.0.0.0:8080\" }]");
      return;
    }
    if (n.array.empty()) {
      error(n, "at least one listener is required, like [{ address = \"0.0.0.0:8080\" }]");
      return;
    }
    std::map<std::string, SourceLoc> seen; // canonical address -> where this service lists it
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
      ListenerConfig listener;
      const Node* address = nullptr;
      const Node* tls_node = nullptr;
      const Node* mode = nullptr;
      const Node* h2c = nullptr;
      for (const auto& [key, v] : item.table) {
        if (key == "address") {
          address = &v;
        } else if (key == "tls") {
          tls_node = &v;
          listener.tls = tls(v);
        } else if (key == "mode") {
          mode = &v;
          if (auto m = file_mode(v))
            listener.mode = *m;
        } else if (key == "h2c") {
          h2c = &v;
          if (auto b = boolean(v))
            listener.h2c = *b;
        } else if (key == "proxy-protocol-from") {
          listener.proxy_protocol_from = cidr_list(v);
        } else {
          unknown_key(item, key, v, kListenerKeys);
        }
      }
      if (h2c && listener.h2c && tls_node)
        error(*h2c, "\"h2c\" (cleartext HTTP/2) is for listeners without tls: over TLS, HTTP/2 "
                    "is negotiated with ALPN; list \"h2\" in tls.alpn instead");
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
      if (tls_node && is_unix_address(*text))
        error(*tls_node, "tls is not available on a Unix socket listener (" + quoted(*text) +
                             "): local clients speak plain HTTP to it; use an ip:port address "
                             "for TLS");
      if (mode && !is_unix_address(*text))
        error(*mode, "\"mode\" sets the permissions of a Unix socket file; it applies only to "
                     "\"unix:/path\" addresses (this listener's address is " +
                         quoted(*text) + ")");
      if (port == 0)
        canonical.clear(); // every port-0 listener gets a port of its own: never shared
      if (!canonical.empty()) {
        auto [it, inserted] = seen.try_emplace(canonical, address->loc);
        if (!inserted) {
          error(*address,
                "listener address " + quoted(*text) + " is already listed by this service (line " +
                    std::to_string(it->second.line) + "); a service listens on an address once");
          continue;
        }
      }
      listener.address = *text;
      listener.share_key = canonical;
      listener.loc = item.loc;
      out.listeners.push_back(std::move(listener));
      sites.listeners.push_back(ListenerSite{std::move(canonical), item.loc, item.path});
    }
  }

  void server_names(const Node& n, ServiceConfig& out, ServiceSites& sites) {
    sites.names_written = true; // unless it is an empty array: no "needs server-names" cascade
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of host names like [\"example.com\", \"*.example.com\"]");
      return;
    }
    sites.names_written = !n.array.empty();
    for (const auto& item : n.array) {
      auto name = string(item, true);
      if (!name)
        continue;
      std::string problem = check_host_name(*name, true);
      if (!problem.empty()) {
        error(item, std::move(problem));
        continue;
      }
      if (std::find(out.server_names.begin(), out.server_names.end(), *name) !=
          out.server_names.end()) {
        error(item, "duplicate server name " + quoted(*name));
        continue;
      }
      out.server_names.push_back(std::move(*name));
      sites.names.emplace_back(item.loc, item.path);
    }
  }

  // How listener `a` differs from `b` in what listeners sharing an address must agree on, as
  // "sets KEY = VALUE" with a's value; "" when they agree.
  static std::string listener_difference(const ListenerConfig& a, const ListenerConfig& b) {
    if (a.tls.has_value() != b.tls.has_value())
      return a.tls ? "has tls (HTTPS)" : "has no tls (plain HTTP)";
    auto sets = [](std::string_view key, const std::string& value) {
      return "sets " + std::string(key) + " = " + value;
    };
    auto strings = [](const std::vector<std::string>& items) {
      std::string out = "[";
      for (const auto& item : items)
        out += (out.size() > 1 ? ", " : "") + quoted(item);
      return out + "]";
    };
    if (a.tls) {
      const TlsConfig& x = *a.tls;
      const TlsConfig& y = *b.tls;
      if (x.min_version != y.min_version)
        return sets("tls.min-version", quoted(x.min_version));
      if (x.max_version != y.max_version)
        return sets("tls.max-version", quoted(x.max_version));
      if (x.ciphers != y.ciphers)
        return sets("tls.ciphers", quoted(x.ciphers));
      if (x.ciphersuites != y.ciphersuites)
        return sets("tls.ciphersuites", quoted(x.ciphersuites));
      if (x.groups != y.groups)
        return sets("tls.groups", quoted(x.groups));
      if (x.session_tickets != y.session_tickets)
        return sets("tls.session-tickets", x.session_tickets ? "true" : "false");
      if (x.session_timeout != y.session_timeout)
        return sets("tls.session-timeout", quoted(format_duration(x.session_timeout)));
      if (x.alpn != y.alpn)
        return sets("tls.alpn", strings(x.alpn));
    }
    if (a.h2c != b.h2c)
      return sets("h2c", a.h2c ? "true" : "false");
    if (a.mode != b.mode)
      return sets("mode", quoted(octal_mode(a.mode)));
    // The same ranges, whatever their order and spelling ("::1" is "::1/128").
    auto ranges = [](const std::vector<Cidr>& list) {
      std::set<std::string> out;
      std::string ignored;
      for (const auto& c : list)
        if (auto r = CidrRange::parse(c.text, ignored))
          out.insert(r->to_string());
      return out;
    };
    if (ranges(a.proxy_protocol_from) != ranges(b.proxy_protocol_from)) {
      std::vector<std::string> texts;
      for (const auto& c : a.proxy_protocol_from)
        texts.push_back(c.text);
      return sets("proxy-protocol-from", strings(texts));
    }
    return "";
  }

  // Virtual hosts: services may share a listener address; the first one listed is the default,
  // every other one needs server-names, and no name may be claimed twice on one address.
  void check_shared_listeners(const Config& cfg) {
    struct Use {
      size_t service;
      size_t listener;
    };
    std::map<std::string, std::vector<Use>> by_address; // each in file order
    for (size_t i = 0; i < cfg.services.size(); ++i)
      for (size_t j = 0; j < cfg.services[i].listeners.size(); ++j)
        if (!sites_[i].listeners[j].canonical.empty())
          by_address[sites_[i].listeners[j].canonical].push_back(Use{i, j});
    // (earlier service, later service) -> the first address they share, as the later one wrote it
    std::map<std::pair<size_t, size_t>, std::string> shared;
    for (const auto& [canonical, uses] : by_address) {
      if (uses.size() < 2)
        continue;
      const ServiceConfig& first = cfg.services[uses[0].service];
      const ListenerConfig& first_listener = first.listeners[uses[0].listener];
      const ListenerSite& first_site = sites_[uses[0].service].listeners[uses[0].listener];
      for (size_t k = 1; k < uses.size(); ++k) {
        const ServiceConfig& s = cfg.services[uses[k].service];
        const ListenerConfig& l = s.listeners[uses[k].listener];
        const ListenerSite& site = sites_[uses[k].service].listeners[uses[k].listener];
        const std::string shared_with = "listener " + quoted(l.address) +
                                        " is shared with service " + quoted(first.name) + " (" +
                                        loc_string(first_site.loc) + "), which ";
        std::string difference = listener_difference(first_listener, l);
        if (!difference.empty())
          error(site.loc, site.path,
                shared_with + difference +
                    "; services sharing a listener must agree on everything but certificates");
        if (!sites_[uses[k].service].names_written)
          error(site.loc, site.path,
                shared_with +
                    "is listed first and so answers every host name no other service lists; "
                    "this service has no server-names, so it could never be chosen (add "
                    "server-names = [\"NAME\", ...] to it)");
        for (size_t e = 0; e < k; ++e)
          shared.try_emplace({uses[e].service, uses[k].service}, l.address);
      }
    }
    std::set<std::pair<size_t, std::string>> reported; // (service, name)
    for (const auto& [pair, address] : shared) {
      const ServiceConfig& earlier = cfg.services[pair.first];
      const ServiceConfig& later = cfg.services[pair.second];
      for (size_t n = 0; n < later.server_names.size(); ++n) {
        const std::string& name = later.server_names[n];
        auto it = std::find(earlier.server_names.begin(), earlier.server_names.end(), name);
        if (it == earlier.server_names.end() || !reported.insert({pair.second, name}).second)
          continue;
        const auto& there =
            sites_[pair.first].names[static_cast<size_t>(it - earlier.server_names.begin())];
        const auto& here = sites_[pair.second].names[n];
        error(here.first, here.second,
              "server name " + quoted(name) + " is also listed by service " + quoted(earlier.name) +
                  " (" + loc_string(there.first) + "), which shares listener " + quoted(address) +
                  " with this service; a name may belong to one service per listener");
      }
    }
  }

  void load_route(const Node& n, RouteConfig& out) {
    out.loc = n.loc;
    bool have_upstream = false;
    const Node* prefix = nullptr;
    const Node* exact = nullptr;
    const Node* regex = nullptr;
    for (const auto& [key, v] : n.table) {
      if (key == "path-prefix") {
        prefix = &v;
      } else if (key == "path-exact") {
        exact = &v;
      } else if (key == "path-regex") {
        regex = &v;
      } else if (key == "host") {
        route_hosts(v, out);
      } else if (key == "methods") {
        route_methods(v, out);
      } else if (key == "connect-timeout") {
        out.connect_timeout = duration(v, false);
      } else if (key == "response-timeout") {
        out.response_timeout = duration(v, false);
      } else if (key == "request-timeout") {
        out.request_timeout = duration(v, false);
      } else if (key == "retry-timeout") {
        out.retry_timeout = duration(v, false);
      } else if (key == "max-tries") {
        if (auto i = integer(v, 1, kMaxTries))
          out.max_tries = static_cast<uint32_t>(*i);
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
    int paths = (prefix ? 1 : 0) + (exact ? 1 : 0) + (regex ? 1 : 0);
    if (paths > 1) {
      const Node& second = exact && prefix ? *exact : *regex;
      error(second, "a route has at most one of \"path-prefix\", \"path-exact\" and "
                    "\"path-regex\"");
    } else if (paths == 0 && !has_key(n, "host") && !has_key(n, "methods")) {
      error(n, "a route needs something to match: \"path-prefix\", \"path-exact\", "
               "\"path-regex\", \"host\" or \"methods\"");
    }
    if (paths <= 1) {
      if (prefix)
        out.path_prefix = path_value(*prefix);
      if (exact)
        out.path_exact = path_value(*exact);
      if (regex) {
        if (auto r = string(*regex)) {
          std::string problem = check_regex(*r);
          if (problem.empty())
            out.path_regex = std::move(*r);
          else
            error(*regex, "invalid regular expression " + quoted(*r) + ": " + problem);
        }
      }
    }
    if (!have_upstream)
      error(n, "missing required key \"upstream\"");
  }

  static bool has_key(const Node& n, std::string_view key) {
    for (const auto& [k, v] : n.table)
      if (k == key)
        return true;
    return false;
  }

  // `host` of a route: one name or an array of names ("*.example.com" allowed).
  void route_hosts(const Node& n, RouteConfig& out) {
    std::vector<const Node*> items;
    if (n.type == Node::Type::Array) {
      for (const auto& item : n.array)
        items.push_back(&item);
      if (items.empty())
        error(n, "must not be empty (leave \"host\" out to match every host)");
    } else if (n.type == Node::Type::String) {
      items.push_back(&n);
    } else {
      type_error(n, "a host name or an array of host names like [\"example.com\", "
                    "\"*.example.com\"]");
      return;
    }
    for (const Node* item : items) {
      auto name = string(*item, true);
      if (!name)
        continue;
      std::string problem = check_host_name(*name, true);
      if (!problem.empty())
        error(*item, std::move(problem));
      else
        out.hosts.push_back(std::move(*name));
    }
  }

  // `methods` of a route: an array of method names (HTTP tokens, case-sensitive).
  void route_methods(const Node& n, RouteConfig& out) {
    if (n.type != Node::Type::Array) {
      type_error(n, "an array of methods like [\"GET\", \"HEAD\"]");
      return;
    }
    if (n.array.empty())
      error(n, "must not be empty (leave \"methods\" out to match every method)");
    for (const auto& item : n.array) {
      auto m = string(item);
      if (!m)
        continue;
      bool token = std::all_of(m->begin(), m->end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
      });
      if (!token)
        error(item, "invalid method " + quoted(*m) + ": a method is a token like \"GET\"");
      else
        out.methods.push_back(std::move(*m));
    }
  }

  void load_no_route(const Node& n, NoRouteResponse& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, v] : n.table) {
      if (key == "status") {
        if (auto i = integer(v, 200, 599))
          out.status = static_cast<uint32_t>(*i);
      } else if (key == "body") {
        if (auto b = string(v, true))
          out.body = std::move(*b);
      } else if (key == "content-type") {
        if (auto t = string(v, true)) {
          if (t->find_first_of("\r\n") != std::string::npos)
            error(v, "must not contain a line break");
          else
            out.content_type = std::move(*t);
        }
      } else {
        unknown_key(n, key, v, kNoRouteKeys);
      }
    }
  }

  void load_dns(const Node& n, DnsConfig& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, v] : n.table) {
      if (key == "servers") {
        if (v.type != Node::Type::Array) {
          type_error(v, "an array of addresses like [\"127.0.0.1:53\", \"[::1]:5353\"]");
          continue;
        }
        for (const auto& item : v.array) {
          auto a = string(item);
          if (!a)
            continue;
          // A bare IP means port 53.
          std::string with_port = *a;
          if (with_port.find(':') == std::string::npos ||
              (with_port.front() != '[' && with_port.find(':') != with_port.rfind(':')))
            with_port = with_port.find(':') == std::string::npos ? with_port + ":53"
                                                                 : "[" + with_port + "]:53";
          std::string canonical;
          uint32_t port = 0;
          std::string problem = check_address(with_port, canonical, port);
          if (problem.empty() && is_unix_address(with_port))
            problem = "a DNS server is an IP address with an optional port";
          if (!problem.empty())
            error(item, std::move(problem));
          else
            out.servers.push_back(with_port);
        }
      } else if (key == "timeout") {
        if (auto d = duration(v, false))
          out.timeout = *d;
      } else if (key == "tries") {
        if (auto i = integer(v, 1, 10))
          out.tries = static_cast<uint32_t>(*i);
      } else {
        unknown_key(n, key, v, kDnsKeys);
      }
    }
  }

  void load_admin(const Node& n, AdminConfig& out) {
    if (!expect_table(n))
      return;
    for (const auto& [key, v] : n.table) {
      if (key == "listen") {
        auto a = string(v);
        if (!a)
          continue;
        std::string canonical;
        uint32_t port = 0;
        std::string problem = check_address(*a, canonical, port);
        if (problem.empty() && is_unix_address(*a))
          problem = "the admin endpoint listens on TCP only: expected \"ip:port\" like "
                    "\"127.0.0.1:9901\"";
        if (!problem.empty()) {
          error(v, std::move(problem));
          continue;
        }
        out.listen = std::move(*a);
        out.loc = v.loc;
      } else {
        unknown_key(n, key, v, kAdminKeys);
      }
    }
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
      } else if (key == "h2-max-concurrent-streams") {
        if (auto i = integer(v, 1, kMaxH2Streams))
          out.h2_max_concurrent_streams = static_cast<uint32_t>(*i);
      } else if (key == "h2-initial-window") {
        if (auto sz = size(v, false)) {
          if (*sz > kMaxH2Window)
            error(v, "must be at most " + std::to_string(kMaxH2Window) +
                         " bytes (2GiB - 1, the largest HTTP/2 window), got " +
                         std::to_string(*sz));
          else
            out.h2_initial_window = *sz;
        }
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
      ServiceSites sites;
      s.name = name;
      s.loc = value.loc;
      bool have_listeners = false;
      for (const auto& [key, v] : value.table) {
        if (key == "listeners") {
          have_listeners = true;
          load_listeners(v, s, sites);
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
        } else if (key == "server-names") {
          server_names(v, s, sites);
        } else if (key == "trusted-proxies") {
          s.trusted_proxies = cidr_list(v);
        } else if (key == "no-route") {
          load_no_route(v, s.no_route);
        } else {
          unknown_key(value, key, v, kServiceKeys);
        }
      }
      if (!have_listeners)
        error(value, "missing required key \"listeners\" (at least one, like listeners = [{ "
                     "address = \"0.0.0.0:8080\" }])");
      cfg.services.push_back(std::move(s));
      sites_.push_back(std::move(sites));
    }
    check_shared_listeners(cfg);
  }

  const ParsedDocument& doc_;
  std::vector<Diagnostic>& errors_;
  Keys known_upstreams_;
  bool check_references_ = true;
  std::vector<ServiceSites> sites_; // parallel to Config::services
  std::string config_dir_;          // relative paths in the file are resolved against it
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
  sort_diagnostics(errors, source_name);
  result.errors = std::move(errors);
  if (doc.syntax_ok)
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
