// The typed, validated configuration model. Produced by load_file() and consumed by the core; it
// knows nothing of sockets.
#pragma once

#include "weir/config/node.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace weir::config {

using Duration = std::chrono::milliseconds;

// A reference to a plugin module: `{ use = "name", ...settings }`. `node` is the whole table
// (including `use`); the plugin validates the rest of it.
struct PluginRef {
  std::string use;
  Node node;
};

struct SystemConfig {
  uint32_t workers = 0;                 // 0 = one per core
  std::vector<std::string> plugin_dirs; // searched before WEIR_PLUGIN_PATH and the default
  Duration shutdown_grace{30000};       // SIGTERM: time in-flight requests get to finish
};

struct LogConfig {
  std::string level = "info";    // trace debug info warn error
  std::string format = "text";   // text json
  std::string output = "stdout"; // stdout stderr or a file path
  bool access_log = true;
};

// TLS towards the targets of one upstream group. Present only when `tls` is written; verification
// is on unless `verify = false` is written explicitly.
struct UpstreamTlsConfig {
  bool verify = true;
  std::string ca_file;     // PEM bundle of trusted roots; empty: the system's default roots
  std::string server_name; // SNI and the name the certificate must carry; empty: the target's
                           // host name as published (no SNI for an IP literal, whose address is
                           // then verified against the certificate's IP SANs)
  std::string cert;        // client certificate chain (mTLS), PEM; empty: none
  std::string key;         // its private key; set exactly when `cert` is
  std::string min_version = "1.2"; // "1.2" or "1.3"
  SourceLoc loc;
  std::string key_path; // "upstreams.api.tls"
};

struct UpstreamConfig {
  std::string name;
  SourceLoc loc;
  PluginRef discovery;
  PluginRef lb;                            // default { use = "round-robin" }
  std::vector<PluginRef> health;           // none by default; a target is used when all agree
  Duration connect_timeout{5000};          // 502 when exceeded
  Duration response_timeout{60000};        // time to the response head; 504 when exceeded
  std::optional<Duration> request_timeout; // the whole exchange upstream; none = no limit
  uint32_t max_tries = 3;                  // attempts per request, the first included
  std::optional<Duration> retry_timeout;   // no new attempt after this; none = no limit
  Duration idle_timeout{60000};            // pooled keep-alive connection idle time
  uint32_t pool_size = 64;                 // idle connections kept per target per worker
  std::optional<UpstreamTlsConfig> tls;    // absent: plain TCP (or a Unix socket)
  // "h1", "h2" (HTTP/2; over TLS via ALPN, else h2c with prior knowledge) or "auto" (ALPN picks
  // h2 or http/1.1; requires tls).
  std::string protocol = "h1";
  // "off", "v1" or "v2": send a PROXY protocol header on each new upstream connection.
  std::string proxy_protocol = "off";
  uint32_t h2_max_concurrent_streams = 100; // per HTTP/2 upstream connection (capped by the peer)
};

// One certificate chain and its private key (PEM files). Relative paths are resolved against the
// configuration file's directory when loading, so these are absolute or as written for "-".
struct TlsCertificate {
  std::string cert;     // PEM: the leaf first, then intermediates
  std::string key;      // PEM private key (RSA, ECDSA or Ed25519)
  SourceLoc loc;        // of the table (or of the listener's `tls` table for the shorthand)
  std::string key_path; // e.g. "services.web.listeners[0].tls.certificates[1]"
};

struct TlsConfig {
  // SNI chooses among these by the names in each certificate (exact names beat wildcards); the
  // first one answers clients without SNI or with an unknown name.
  std::vector<TlsCertificate> certificates;
  std::string min_version = "1.2"; // "1.2" or "1.3"
  std::string max_version = "1.3"; // "1.2" or "1.3", >= min_version
  // TLS 1.2 cipher list (OpenSSL syntax); the default is a forward-secret AEAD-only list.
  std::string ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  // TLS 1.3 cipher suites (OpenSSL syntax).
  std::string ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                             "TLS_CHACHA20_POLY1305_SHA256";
  std::string groups = "X25519:P-256:P-384";          // key exchange groups, in preference order
  bool session_tickets = true;                        // stateless resumption (keys rotate)
  Duration session_timeout{3600000};                  // lifetime of a resumable session
  std::vector<std::string> alpn = {"h2", "http/1.1"}; // offered, in preference order
  SourceLoc loc;
  std::string key_path; // "services.web.listeners[0].tls"
};

// An address range, as written ("10.0.0.0/8", "::1", "192.168.1.7/32"), validated.
struct Cidr {
  std::string text;
  SourceLoc loc;
};

struct ListenerConfig {
  std::string address; // "ip:port", "[ipv6]:port" or "unix:/absolute/path"
  // The normalised address ("[::1]:80" for "[0::1]:80"); listeners of several services with the
  // same key share one socket. "" for port 0: such a listener is never shared.
  std::string share_key;
  SourceLoc loc;
  std::optional<TlsConfig> tls; // absent: plain HTTP
  // Unix socket file permissions (only for unix: addresses), like 0660. The file is replaced at
  // start if it exists and is a socket; removed at exit.
  uint32_t mode = 0660;
  bool h2c = false; // also accept cleartext HTTP/2 with prior knowledge (plain listeners only)
  // PROXY protocol (v1 text or v2 binary, detected): required from connections whose address is
  // in `proxy_protocol_from`; a header from any other address is refused. Empty list = off.
  std::vector<Cidr> proxy_protocol_from;
};

struct RouteConfig {
  std::optional<std::string> path_prefix; // prefix on a segment boundary
  std::optional<std::string> path_exact;
  std::optional<std::string> path_regex; // ECMAScript syntax, searched in the path
  std::vector<std::string> hosts;        // lowercase names or "*.example.com"; empty = any
  std::vector<std::string> methods;      // tokens as written (case-sensitive); empty = any
  std::string upstream;
  // Overrides of the upstream's values for requests of this route.
  std::optional<Duration> connect_timeout;
  std::optional<Duration> response_timeout;
  std::optional<Duration> request_timeout;
  std::optional<uint32_t> max_tries;
  std::optional<Duration> retry_timeout;
  std::vector<PluginRef> filters;
  SourceLoc loc;
};

struct LimitsConfig {
  uint32_t h2_max_concurrent_streams = 128; // per client HTTP/2 connection
  uint64_t h2_initial_window = 65535;       // per-stream receive window we advertise, bytes
  uint64_t max_request_line = 8192;         // 414 above
  uint64_t max_header_bytes = 32768;        // whole head; 431 above
  uint32_t max_headers = 100;               // 431 above
  uint64_t max_body = 0;                    // 0 = unlimited; 413 above
  Duration header_timeout{60000};           // time to receive a request head (slowloris)
  Duration keepalive_timeout{75000};        // idle client connection between requests
  Duration send_timeout{60000};             // a client that does not read
  Duration tunnel_idle_timeout{300000};     // an Upgrade (WebSocket) tunnel with no traffic
};

struct NoRouteResponse {
  uint32_t status = 404;
  std::string body = "404 Not Found\n";
  std::string content_type = "text/plain";
};

struct ServiceConfig {
  std::string name;
  SourceLoc loc;
  std::vector<ListenerConfig> listeners;
  std::string upstream; // default route; may be empty (then unmatched requests get 404)
  std::vector<RouteConfig> routes;
  std::vector<PluginRef> filters; // run for every route, before the route's own
  LimitsConfig limits;
  // Virtual hosts: names this service answers on a listener it shares with other services
  // (exact, or "*.example.com" for one label). A request is matched by Host / :authority
  // (without port); the first service listed on an address is the default for other names.
  std::vector<std::string> server_names;
  // X-Forwarded-For and Forwarded are trusted only from these peers: the client address used by
  // logs, filters and hashing is the rightmost address in the chain that is not in this list.
  std::vector<Cidr> trusted_proxies;
  // What a request that matches no route (and no default upstream) gets.
  NoRouteResponse no_route;
};

// The [admin] section: a small HTTP endpoint on the control thread (upstream states).
struct AdminConfig {
  std::string listen; // "ip:port"; "" = no admin endpoint
  SourceLoc loc;
};

// The [dns] section: the resolvers discovery plugins query (through the host).
struct DnsConfig {
  std::vector<std::string> servers; // "ip", "ip:port" or "[ipv6]:port"; empty = /etc/resolv.conf
  Duration timeout{2000};           // per try
  uint32_t tries = 2;               // per server
};

struct Config {
  std::string source_path;
  SystemConfig system;
  LogConfig log;
  AdminConfig admin;
  DnsConfig dns;
  std::vector<UpstreamConfig> upstreams; // in file order
  std::vector<ServiceConfig> services;   // in file order

  const UpstreamConfig* find_upstream(std::string_view name) const;
};

// Values given on the command line; they win over the environment, which wins over the file.
struct Overrides {
  std::optional<uint32_t> workers;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
};

// An environment variable weir reads.
struct EnvVar {
  std::string name;     // WEIR_WORKERS
  std::string key_path; // system.workers, or "" when it is not a config key
  std::string meaning;
};
const std::vector<EnvVar>& env_vars();

struct LoadResult {
  // With errors, the parts that loaded, a value in error left at its default: enough to check
  // the plugin tables too, so that one run reports every mistake. Absent when the TOML itself is
  // malformed. Only ok() makes it a configuration to run.
  std::optional<Config> config;
  std::vector<Diagnostic> errors; // every problem found, in file order
  bool ok() const { return config.has_value() && errors.empty(); }
};

// Parse and validate. `env` holds the process environment (only WEIR_* names are read).
LoadResult load_file(const std::string& path, const Overrides& cli,
                     const std::map<std::string, std::string>& env);
LoadResult load_string(std::string_view text, const std::string& source_name, const Overrides& cli,
                       const std::map<std::string, std::string>& env);

// The effective configuration with every default, as TOML that loads back to the same Config.
std::string dump_toml(const Config& config);

// "250ms", "5s", "1m", "1h", "1d" -> milliseconds; std::nullopt when malformed.
std::optional<Duration> parse_duration(std::string_view text);
// "64KiB", "1MiB", "512", "1GB" -> bytes; std::nullopt when malformed.
std::optional<uint64_t> parse_size(std::string_view text);
std::string format_duration(Duration d);

} // namespace weir::config
