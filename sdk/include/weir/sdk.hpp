// weir plugin SDK: a header-only C++20 layer over the C ABI (weir/abi.h and the per-kind headers).
//
// A plugin written with this header is a Config type, an Instance type and one macro:
//
//   #include <weir/sdk.hpp>
//
//   struct Config {                                      // built once per configured place
//     explicit Config(weir::sdk::ConfigReader& cfg) {
//       cfg.expect_only_keys({"greeting"});
//       greeting = cfg.get_string("greeting", "hello");
//     }
//     std::string greeting;
//   };
//
//   struct Hello {                                       // one per worker thread
//     Hello(weir::sdk::Host, const Config& c) : config(c) {}
//     weir::sdk::FilterResult on_response(weir::sdk::Http& http) {
//       http.response_headers().set("x-hello", config.greeting);
//       return weir::sdk::FilterResult::Continue;
//     }
//     const Config& config;
//   };
//
//   WEIR_SDK_PLUGIN("hello", "1.0.0", weir::sdk::filter_module<Config, Hello>("hello-header"))
//
// What the SDK does for the plugin:
//  - builds the C vtables (optional hooks the Instance does not define stay NULL, so the host skips
//    them), the module list and the descriptor (stamped with the WEIR_ABI_MAJOR/MINOR it was
//    compiled with), and exports the entry point through WEIR_PLUGIN_ENTRY;
//  - puts an exception barrier around every hook, timer and iteration callback: nothing unwinds
//    into the host. An escaped exception is logged through the host with its message and turned
//    into WEIR_ERROR (WEIR_ERROR_NOMEM for std::bad_alloc), WEIR_ERROR_CONFIG (config_new, also
//    reported at the module's node) or WEIR_FILTER_FAILED (filter hooks);
//  - reads configuration with precise errors (ConfigReader), wraps an exchange (Http, Headers),
//    logging (Host), timers (Timers), targets (Target, with the priority and metadata of ABI 1.2),
//    and the outbound operations of ABI 1.2 (Host::probe, Host::fetch, Host::dns_query: callbacks
//    behind the same barrier, their state freed on completion, cancellation or destruction of the
//    instance).
//
// Instance types per kind (hooks marked optional may be omitted; return types in brackets are all
// accepted, `void` meaning success):
//  - LB:        on_targets(const std::vector<Target>&) [void|weir_status_t] (Target::priority
//               and Target::metadata from ABI 1.2 hosts, else 0 and empty);
//               pick(const PickRequest&) -> std::optional<size_t> (nullopt: NOT_FOUND);
//               optional on_start(size_t), on_done(size_t, uint32_t status, uint64_t ns)
//  - DISCOVERY: start() [void|weir_status_t]; publish with Host::publish_targets (Target's
//               priority and metadata reach ABI 1.2 hosts); may ask DNS with Host::dns_query
//               (Host::can_resolve) and use Host::fetch on ABI 1.2 hosts
//  - HEALTH:    on_targets(const std::vector<Target>&) [void|weir_status_t];
//               optional on_observation(const Observation&) (timed_out and duration_ns from ABI
//               1.2 hosts); report with Host::report_health; check targets actively with
//               Host::probe (TCP/TLS connect) or Host::fetch (HTTP) on ABI 1.2 hosts
//               (Host::can_probe)
//  - FILTER:    optional on_request(Http&), on_response(Http&)
//               [void|FilterResult|weir_filter_result_t]
//  - CERTS:     start() [void|weir_status_t]; serve certificates with Host::install_certificate
//               and withdraw them with Host::remove_certificate (ABI 1.1 hosts); may use
//               Host::fetch (ABI 1.2 hosts)
// Constructors, the first that exists is used: Instance(Host, const Config&), Instance(const
// Config&), Instance(Host), Instance(). A Config type must be constructible from ConfigReader&
// (weir::sdk::NoConfig accepts no key besides `use`).
//
// The SDK uses no <format> and no fmt: log helpers concatenate their arguments with an
// std::ostringstream, and only when the host would log the level.
#pragma once

#include "weir/abi.h"
#include "weir/certs.h"
#include "weir/discovery.h"
#include "weir/filter.h"
#include "weir/health.h"
#include "weir/lb.h"

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

/// Version of this SDK header (independent of the ABI version, which is WEIR_ABI_MAJOR/MINOR).
#define WEIR_SDK_VERSION_MAJOR 0
#define WEIR_SDK_VERSION_MINOR 4

/// True when the host API table `api` has the function `field` (a later-minor host function is
/// present only when the host's struct_size covers it). Every function of ABI 1.0 is always
/// present.
#define WEIR_SDK_HOST_HAS(api, field)                                                              \
  ((api) != nullptr &&                                                                             \
   (api)->struct_size >= offsetof(weir_host_api_t, field) + sizeof((api)->field) &&                \
   (api)->field != nullptr)

namespace weir::sdk {

// ================================================================================================
// Strings and small utilities
// ================================================================================================

/// View of an ABI string. A NULL `data` gives an empty view.
[[nodiscard]] inline std::string_view view(weir_str_t s) noexcept {
  return s.data != nullptr ? std::string_view(s.data, s.len) : std::string_view();
}

/// ABI string viewing `s` (no copy: `s` must outlive the call it is passed to).
[[nodiscard]] inline weir_str_t str(std::string_view s) noexcept {
  return weir_str_t{s.data(), s.size()};
}

/// ASCII lower-casing (header names and keys are ASCII).
[[nodiscard]] constexpr char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality, as header names compare.
[[nodiscard]] constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) {
      return false;
    }
  }
  return true;
}

/// ASCII lower-cased copy.
[[nodiscard]] inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = ascii_lower(c);
  }
  return out;
}

/// True for a `tchar` of RFC 9110 section 5.6.2.
[[nodiscard]] constexpr bool is_token_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
  return extra.find(c) != std::string_view::npos;
}

/// True when `name` is a valid field name (an RFC 9110 token: non-empty, tchar only).
[[nodiscard]] constexpr bool is_header_name(std::string_view name) noexcept {
  if (name.empty()) {
    return false;
  }
  for (char c : name) {
    if (!is_token_char(c)) {
      return false;
    }
  }
  return true;
}

/// True when `value` may be sent as a field value: no CR, LF or NUL (RFC 9110 section 5.5).
[[nodiscard]] constexpr bool is_header_value(std::string_view value) noexcept {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

/// Edit distance (optimal string alignment: insertions, deletions, substitutions and adjacent
/// transpositions), ASCII case-insensitive.
[[nodiscard]] inline size_t edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size();
  const size_t m = b.size();
  std::vector<size_t> d((n + 1) * (m + 1));
  auto at = [m, &d](size_t i, size_t j) -> size_t& { return d[i * (m + 1) + j]; };
  for (size_t i = 0; i <= n; ++i) {
    at(i, 0) = i;
  }
  for (size_t j = 0; j <= m; ++j) {
    at(0, j) = j;
  }
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
      size_t best = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
          ascii_lower(a[i - 2]) == ascii_lower(b[j - 1])) {
        best = std::min(best, at(i - 2, j - 2) + 1);
      }
      at(i, j) = best;
    }
  }
  return at(n, m);
}

/// The closest candidate to `word`, or "" when none is close enough to be a likely typo.
[[nodiscard]] inline std::string did_you_mean(std::string_view word,
                                              std::span<const std::string_view> candidates) {
  const size_t limit = word.size() <= 4 ? 1 : (word.size() <= 8 ? 2 : 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (std::string_view c : candidates) {
    const size_t dist = edit_distance(word, c);
    if (dist < best_distance) {
      best_distance = dist;
      best = std::string(c);
    }
  }
  return best;
}

namespace detail {
/// Concatenate arguments with operator<<.
template <class... Args> std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
} // namespace detail

/// Concatenate any streamable arguments into a string (the SDK's fmt-free formatting).
template <class... Args> [[nodiscard]] std::string cat(const Args&... args) {
  return detail::concat(args...);
}

// ================================================================================================
// Host: the host API table plus the context of one plugin object
// ================================================================================================

/// Log levels of the ABI.
enum class LogLevel : weir_log_level_t {
  Trace = WEIR_LOG_TRACE,
  Debug = WEIR_LOG_DEBUG,
  Info = WEIR_LOG_INFO,
  Warn = WEIR_LOG_WARN,
  Error = WEIR_LOG_ERROR,
};

struct Target;

// --- outbound checks and requests (ABI 1.2): what Host::probe and Host::fetch take and give ------

/// What a connection probe does.
enum class ProbeKind : weir_probe_kind_t {
  Tcp = WEIR_PROBE_TCP, ///< open a connection (TCP, or a Unix socket), then close it
  Tls = WEIR_PROBE_TLS, ///< also complete a TLS handshake (the upstream group's TLS settings)
};

/// A connection probe (Host::probe). The host copies it when the probe starts.
struct ProbeRequest {
  std::string address;                  ///< as Target::address ("ip:port", "unix:/path", ...)
  ProbeKind kind = ProbeKind::Tcp;      ///< TCP connect, or connect plus TLS handshake
  std::chrono::milliseconds timeout{0}; ///< for the whole probe; 0 = the host's default (5s)
};

/// The outcome of a probe. The views are valid only during the completion callback.
struct ProbeResult {
  bool ok = false;          ///< connected (and, for TLS, the handshake completed)
  std::string_view error;   ///< why it failed ("connection refused", "timed out", ...); empty if ok
  uint64_t duration_ns = 0; ///< how long the probe took
};

/// An HTTP/1.1 request the host makes for the plugin (Host::fetch), one connection per request.
/// The host copies it when the request starts.
struct FetchRequest {
  std::string method;     ///< empty = "GET"
  std::string url;        ///< absolute "http://authority/path?query" or "https://..."
  std::string connect_to; ///< empty = the URL's host and port; else an address (as
                          ///< Target::address) to connect to instead; the Host header and the TLS
                          ///< server name still come from the URL
  /// Extra request headers, in order. Host, Content-Length, Transfer-Encoding and Connection are
  /// the host's (weir drops them from this list).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                     ///< sent with Content-Length when non-empty
  std::chrono::milliseconds timeout{0}; ///< whole exchange, connect included; 0 = 10s
  uint64_t max_body = 0;                ///< response body bytes kept; 0 = 65536
  uint32_t flags = 0;                   ///< WEIR_FETCH_UPSTREAM_TLS, WEIR_FETCH_NO_VERIFY
  std::string ca_file;                  ///< https: PEM file of trusted roots; empty = the system's
};

/// The outcome of a fetch. The views are valid only during the completion callback.
struct FetchResult {
  bool ok = false;        ///< a complete response was received (whatever its status)
  std::string_view error; ///< why it failed; empty if ok
  uint32_t status = 0;    ///< the final HTTP status (1xx skipped); 0 without a response
  std::vector<std::pair<std::string_view, std::string_view>> headers; ///< as received, in order
  std::string_view body;    ///< at most max_body bytes of the (de-chunked) body
  bool truncated = false;   ///< the body was longer than max_body
  uint64_t duration_ns = 0; ///< how long the exchange took

  /// The first header named `name` (ASCII case-insensitive); nullopt when absent.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept {
    for (const auto& [n, v] : headers) {
      if (iequals(n, name)) {
        return v;
      }
    }
    return std::nullopt;
  }
};

/// Completion of Host::probe: runs once on the control thread, never inside Host::probe.
using ProbeCallback = std::function<void(const ProbeResult&)>;
/// Completion of Host::fetch: runs once on the control thread, never inside Host::fetch.
using FetchCallback = std::function<void(const FetchResult&)>;

// --- DNS queries (ABI 1.2): what Host::dns_query takes and gives ---------------------------------

/// DNS record types a plugin may ask for (the RFC type codes). A record of a type this SDK does
/// not name (from a newer host) keeps its code: compare with static_cast<DnsType>(code).
enum class DnsType : weir_dns_type_t {
  A = WEIR_DNS_A,       ///< IPv4 address (RFC 1035)
  Ptr = WEIR_DNS_PTR,   ///< pointer to another name (RFC 1035; DNS-SD browsing, RFC 6763)
  Txt = WEIR_DNS_TXT,   ///< character-strings (RFC 1035; DNS-SD key=value pairs)
  Aaaa = WEIR_DNS_AAAA, ///< IPv6 address (RFC 3596)
  Srv = WEIR_DNS_SRV,   ///< service location: priority, weight, port, target (RFC 2782)
};

/// The usual name of a record type: "A", "AAAA", "SRV", "TXT", "PTR", or "TYPE<code>".
[[nodiscard]] inline std::string dns_type_name(DnsType type) {
  switch (type) {
  case DnsType::A:
    return "A";
  case DnsType::Ptr:
    return "PTR";
  case DnsType::Txt:
    return "TXT";
  case DnsType::Aaaa:
    return "AAAA";
  case DnsType::Srv:
    return "SRV";
  }
  return "TYPE" + std::to_string(static_cast<weir_dns_type_t>(type));
}

/// How a DNS query ended.
enum class DnsStatus {
  Ok,       ///< the servers answered; `records` may be empty (the name has no record of the type)
  NotFound, ///< the name does not exist (NXDOMAIN)
  Error,    ///< no usable answer: server failure, refused, timed out, malformed
};

/// One answer record. The views are valid only during the completion callback. Fields the
/// record's type does not use are empty / 0.
struct DnsRecord {
  DnsType type = DnsType::A;
  uint32_t ttl = 0;         ///< seconds, as received
  std::string_view name;    ///< the owner name, lowercase, without the trailing dot
  std::string_view address; ///< A, AAAA: the address as text ("10.0.0.1", "2001:db8::1")
  std::string_view target;  ///< SRV: the target host; PTR: the name pointed to (lowercase, no
                            ///< trailing dot; an SRV target "." arrives as "" or ".")
  uint16_t priority = 0;    ///< SRV
  uint16_t weight = 0;      ///< SRV
  uint16_t port = 0;        ///< SRV
  std::vector<std::string_view> txt; ///< TXT: the record's character-strings, in order
};

/// The outcome of a DNS query. The views are valid only during the completion callback.
struct DnsResult {
  DnsStatus status = DnsStatus::Error;
  std::string_view error; ///< why, when not Ok ("timed out", "server failure", ...); else empty
  std::vector<DnsRecord> records; ///< the answer's records of the asked type (CNAMEs followed),
                                  ///< in the order received
  uint32_t negative_ttl = 0; ///< NotFound or no records: how long the server says to remember it
                             ///< (seconds, the SOA minimum); 0 when unknown

  /// The servers answered (maybe with no record).
  [[nodiscard]] bool ok() const noexcept { return status == DnsStatus::Ok; }
  /// The name does not exist (NXDOMAIN).
  [[nodiscard]] bool not_found() const noexcept { return status == DnsStatus::NotFound; }
};

/// Completion of Host::dns_query: runs once on the control thread, never inside Host::dns_query.
using DnsCallback = std::function<void(const DnsResult&)>;

/// The host as one plugin object sees it: the API table and the object's context. Cheap to copy;
/// valid while the object (configuration or instance) that received the context lives.
class Host {
public:
  /// A host that logs nothing and refuses every request (for default-constructed members).
  Host() = default;
  /// Wrap the API table and the context handed to a `*_new` hook.
  Host(const weir_host_api_t* api, weir_host_ctx_t* ctx) noexcept : api_(api), ctx_(ctx) {}

  /// The raw API table (for functions the SDK does not wrap).
  [[nodiscard]] const weir_host_api_t* api() const noexcept { return api_; }
  /// The raw context handle.
  [[nodiscard]] weir_host_ctx_t* ctx() const noexcept { return ctx_; }

  /// True when a message at `level` would be logged.
  [[nodiscard]] bool log_enabled(LogLevel level) const noexcept {
    return api_ != nullptr && api_->log_enabled != nullptr &&
           api_->log_enabled(ctx_, static_cast<weir_log_level_t>(level)) != 0;
  }
  /// Log `msg` at `level` under the plugin's name.
  void log(LogLevel level, std::string_view msg) const noexcept {
    if (api_ != nullptr && api_->log != nullptr) {
      api_->log(ctx_, static_cast<weir_log_level_t>(level), str(msg));
    }
  }
  /// Log the concatenation of `args` at `level`, formatting only when the level is enabled.
  template <class... Args> void logf(LogLevel level, const Args&... args) const {
    if (log_enabled(level)) {
      log(level, detail::concat(args...));
    }
  }
  /// Log at TRACE level.
  template <class... Args> void trace(const Args&... args) const { logf(LogLevel::Trace, args...); }
  /// Log at DEBUG level.
  template <class... Args> void debug(const Args&... args) const { logf(LogLevel::Debug, args...); }
  /// Log at INFO level.
  template <class... Args> void info(const Args&... args) const { logf(LogLevel::Info, args...); }
  /// Log at WARN level.
  template <class... Args> void warn(const Args&... args) const { logf(LogLevel::Warn, args...); }
  /// Log at ERROR level.
  template <class... Args> void error(const Args&... args) const { logf(LogLevel::Error, args...); }

  /// Monotonic clock, nanoseconds.
  [[nodiscard]] uint64_t now_ns() const noexcept {
    return api_ != nullptr && api_->now_ns != nullptr ? api_->now_ns() : 0;
  }

  /// Publish the complete target set of a discovery instance (control thread only).
  weir_status_t publish_targets(std::span<const Target> targets) const;

  /// Report the health of a target (by id or address) of a health instance (control thread).
  weir_status_t report_health(std::string_view target_id, bool healthy,
                              std::string_view reason = {}) const noexcept {
    if (api_ == nullptr || api_->report_health == nullptr) {
      return WEIR_ERROR_UNSUPPORTED;
    }
    return api_->report_health(ctx_, str(target_id), healthy ? 1 : 0, str(reason));
  }

  /// True when the host can install and remove certificates (ABI 1.1 and later).
  [[nodiscard]] bool can_install_certificates() const noexcept {
    return WEIR_SDK_HOST_HAS(api_, install_certificate) &&
           WEIR_SDK_HOST_HAS(api_, remove_certificate);
  }

  /// Serve a certificate on every TLS listener from the next handshake on: `cert_pem` is the chain
  /// (leaf first, then intermediates), `key_pem` the leaf's unencrypted private key, both PEM text
  /// (copied by the host). The host takes the names from the certificate and replaces a
  /// certificate installed before with exactly the same names. Returns WEIR_OK,
  /// WEIR_ERROR_INVALID (bad PEM, key mismatch, no names: the host logs why), WEIR_ERROR_STATE
  /// (not a control-thread instance), or WEIR_ERROR_UNSUPPORTED from a host older than ABI 1.1.
  /// THREADING: control thread only (a certificate provider's hooks and timers).
  weir_status_t install_certificate(std::string_view cert_pem,
                                    std::string_view key_pem) const noexcept {
    if (!WEIR_SDK_HOST_HAS(api_, install_certificate)) {
      return WEIR_ERROR_UNSUPPORTED;
    }
    weir_certificate_t cert{};
    cert.struct_size = sizeof(weir_certificate_t);
    cert.cert_pem = str(cert_pem);
    cert.key_pem = str(key_pem);
    return api_->install_certificate(ctx_, &cert);
  }

  /// Stop serving the installed certificate(s) listing `name` ("*.example.test" names a wildcard
  /// certificate); configured certificates are never removed. Returns WEIR_OK,
  /// WEIR_ERROR_NOT_FOUND when no installed certificate lists the name, WEIR_ERROR_STATE, or
  /// WEIR_ERROR_UNSUPPORTED from a host older than ABI 1.1. THREADING: control thread only.
  weir_status_t remove_certificate(std::string_view name) const noexcept {
    if (!WEIR_SDK_HOST_HAS(api_, remove_certificate)) {
      return WEIR_ERROR_UNSUPPORTED;
    }
    return api_->remove_certificate(ctx_, str(name));
  }

  /// True when the host can run probes and fetches (ABI 1.2 and later: probe_start, fetch_start
  /// and request_cancel are all present).
  [[nodiscard]] bool can_probe() const noexcept {
    return WEIR_SDK_HOST_HAS(api_, probe_start) && WEIR_SDK_HOST_HAS(api_, fetch_start) &&
           WEIR_SDK_HOST_HAS(api_, request_cancel);
  }

  /// Ask the host to open a connection to `req.address` (and, for ProbeKind::Tls, to complete a
  /// TLS handshake with the upstream group's TLS settings), then close it. `done` runs exactly
  /// once with the outcome, on the control thread and never from inside this call, unless the
  /// request is cancelled first (cancel_request, cancel_all_requests, or the destruction of the
  /// instance, which cancels what is still running). Returns the request's id, or 0 when the
  /// probe could not start (a host older than ABI 1.2, an empty address, a caller that is not a
  /// control-thread instance: the host logs why); then `done` never runs.
  /// An exception thrown by `done` is logged and goes no further (the SDK's barrier).
  /// THREADING: control thread only, from an instance of a control-thread kind (health,
  /// discovery, certs). May throw std::bad_alloc.
  weir_request_id_t probe(const ProbeRequest& req, ProbeCallback done) const;

  /// Ask the host to make an HTTP/1.1 request (one connection, closed afterwards). `done` runs
  /// exactly once with the response or the failure, as for probe(). Returns the request's id, or
  /// 0 when it could not start (as for probe(), plus a URL that is not absolute http or https, a
  /// bad header, or WEIR_FETCH_UPSTREAM_TLS from an object that belongs to no upstream group).
  /// THREADING: as probe(). May throw std::bad_alloc.
  weir_request_id_t fetch(const FetchRequest& req, FetchCallback done) const;

  /// True when the host can answer DNS queries (ABI 1.2 and later: dns_query and request_cancel
  /// are present).
  [[nodiscard]] bool can_resolve() const noexcept {
    return WEIR_SDK_HOST_HAS(api_, dns_query) && WEIR_SDK_HOST_HAS(api_, request_cancel);
  }

  /// Ask the resolvers weir is configured with ([dns], default the system's) for the `type`
  /// records of `name` (a host name, or an SRV / DNS-SD name such as "_http._tcp.example.test";
  /// a trailing dot is allowed). `done` runs exactly once with the answer or the failure (after
  /// the host's timeout and tries), on the control thread and never from inside this call,
  /// unless the query is cancelled first (cancel_request, cancel_all_requests, or the
  /// destruction of the instance). The host does not cache: every call asks the servers. Returns
  /// the query's id, or 0 when it could not start (a host older than ABI 1.2, an empty or invalid
  /// name, an unsupported type, a caller that is not a control-thread instance: the host logs
  /// why); then `done` never runs. An exception thrown by `done` is logged and goes no further.
  /// THREADING: control thread only, from an instance of a control-thread kind (discovery,
  /// health, certs). May throw std::bad_alloc.
  weir_request_id_t dns_query(std::string_view name, DnsType type, DnsCallback done) const;

  /// Cancel a running probe, fetch or DNS query of this object: its callback will not run, and
  /// its state is freed now. Unknown or finished ids are ignored. THREADING: control thread only.
  void cancel_request(weir_request_id_t id) const noexcept;

  /// Cancel every probe, fetch and DNS query this object started through the SDK and that is
  /// still running. The SDK calls it when it destroys an instance (after the Instance's
  /// destructor); a plugin that does not use the SDK's module machinery calls it in its
  /// instance_destroy.
  void cancel_all_requests() const noexcept;

  /// Number of probes, fetches and DNS queries this object started through the SDK that have
  /// neither completed nor been cancelled.
  [[nodiscard]] size_t pending_requests() const noexcept;

private:
  const weir_host_api_t* api_ = nullptr;
  weir_host_ctx_t* ctx_ = nullptr;
};

namespace detail {
/// Log that `hook` was left by an exception. Never throws.
inline void log_exception(const Host& host, const char* hook, const char* what) noexcept {
  try {
    std::string msg = "uncaught exception in ";
    msg += hook;
    msg += ": ";
    msg += what != nullptr ? what : "(no message)";
    host.log(LogLevel::Error, msg);
  } catch (...) {
    host.log(LogLevel::Error, "uncaught exception in a plugin hook (message lost: out of memory)");
  }
}

/// Run `fn` (returning weir_status_t) behind the exception barrier.
template <class F> weir_status_t guard_status(const Host& host, const char* hook, F&& fn) noexcept {
  try {
    return std::forward<F>(fn)();
  } catch (const std::bad_alloc&) {
    log_exception(host, hook, "out of memory");
    return WEIR_ERROR_NOMEM;
  } catch (const std::exception& e) {
    log_exception(host, hook, e.what());
    return WEIR_ERROR;
  } catch (...) {
    log_exception(host, hook, "unknown exception (not derived from std::exception)");
    return WEIR_ERROR;
  }
}

/// Run `fn` (returning void) behind the exception barrier.
template <class F> void guard_void(const Host& host, const char* hook, F&& fn) noexcept {
  try {
    std::forward<F>(fn)();
  } catch (const std::exception& e) {
    log_exception(host, hook, e.what());
  } catch (...) {
    log_exception(host, hook, "unknown exception (not derived from std::exception)");
  }
}
} // namespace detail

// ================================================================================================
// Timers
// ================================================================================================

/// Owner of one-shot host timers whose callbacks are std::function objects. Pending timers are
/// cancelled when the Timers object is destroyed, so a member of an instance never outlives it.
/// A callback that throws is logged and ignored (the barrier also covers timers).
/// THREADING: use from the thread of the owning instance only (the host's timer rules).
class Timers {
public:
  /// Timers of the plugin object `host` (usually the instance's Host).
  explicit Timers(Host host) noexcept : host_(host) {}
  Timers(const Timers&) = delete;
  Timers& operator=(const Timers&) = delete;
  ~Timers() { cancel_all(); }

  /// Run `fn` once after `delay`. Returns the timer id, or 0 when the host could not start it.
  weir_timer_id_t after(std::chrono::milliseconds delay, std::function<void()> fn) {
    if (host_.api() == nullptr || host_.api()->timer_start == nullptr) {
      return 0;
    }
    auto entry = std::make_unique<Entry>();
    entry->owner = this;
    entry->fn = std::move(fn);
    Entry* raw = entry.get();
    entries_.push_back(std::move(entry));
    const uint64_t ms = delay.count() > 0 ? static_cast<uint64_t>(delay.count()) : 0;
    raw->id = host_.api()->timer_start(host_.ctx(), ms, &Timers::fire, raw);
    if (raw->id == 0) {
      erase(raw);
      return 0;
    }
    return raw->id;
  }

  /// Cancel a pending timer; unknown or fired ids are ignored.
  void cancel(weir_timer_id_t id) noexcept {
    for (auto& e : entries_) {
      if (e->id == id) {
        if (host_.api() != nullptr && host_.api()->timer_cancel != nullptr) {
          host_.api()->timer_cancel(host_.ctx(), id);
        }
        erase(e.get());
        return;
      }
    }
  }

  /// Cancel every pending timer.
  void cancel_all() noexcept {
    if (host_.api() != nullptr && host_.api()->timer_cancel != nullptr) {
      for (auto& e : entries_) {
        host_.api()->timer_cancel(host_.ctx(), e->id);
      }
    }
    entries_.clear();
  }

  /// Number of timers started and not yet fired or cancelled.
  [[nodiscard]] size_t pending() const noexcept { return entries_.size(); }

private:
  struct Entry {
    Timers* owner = nullptr;
    weir_timer_id_t id = 0;
    std::function<void()> fn;
  };

  void erase(Entry* e) noexcept {
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [e](const std::unique_ptr<Entry>& p) { return p.get() == e; });
    if (it != entries_.end()) {
      entries_.erase(it);
    }
  }

  static void fire(void* user) noexcept {
    auto* entry = static_cast<Entry*>(user);
    Timers* owner = entry->owner;
    detail::guard_void(owner->host_, "timer callback", [owner, entry] {
      std::function<void()> fn = std::move(entry->fn);
      owner->erase(entry); // the id is spent; the callback may start new timers
      if (fn) {
        fn();
      }
    });
  }

  Host host_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// ================================================================================================
// Outbound checks and requests (ABI 1.2)
// ================================================================================================

namespace detail {

/// A probe, fetch or DNS query started through Host that has neither completed nor been
/// cancelled.
struct PendingRequest {
  const weir_host_api_t* api = nullptr;
  weir_host_ctx_t* ctx = nullptr; ///< the object that started it
  weir_request_id_t id = 0;       ///< the host's id
  ProbeCallback on_probe;         ///< set for a probe
  FetchCallback on_fetch;         ///< set for a fetch
  DnsCallback on_dns;             ///< set for a DNS query
};

/// The running requests of every object of this plugin. The host gets a token, not a pointer, as
/// the callback's `user`: a completion the host delivers for a request that was cancelled (or
/// twice) finds nothing and is ignored instead of touching freed memory. Completions take their
/// entry out before calling back, so a callback may start or cancel requests. Locked, although
/// the ABI allows these calls on the control thread only, so that a misplaced call from a worker
/// thread cannot corrupt it.
class RequestRegistry {
public:
  static RequestRegistry& instance() noexcept {
    static RequestRegistry registry;
    return registry;
  }

  uint64_t next_token() noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    return ++last_token_;
  }
  void add(uint64_t token, PendingRequest&& req) {
    const std::lock_guard<std::mutex> lock(mutex_);
    pending_.emplace(token, std::move(req));
  }
  /// The request of `token`, removed; nullopt when unknown (cancelled or already completed).
  std::optional<PendingRequest> take(uint64_t token) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(token);
    if (it == pending_.end()) {
      return std::nullopt;
    }
    std::optional<PendingRequest> out(std::move(it->second));
    pending_.erase(it);
    return out;
  }
  /// The request `id` of `ctx` (or any request of `ctx` when id is 0), removed.
  std::optional<PendingRequest> take(weir_host_ctx_t* ctx, weir_request_id_t id) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->second.ctx == ctx && (id == 0 || it->second.id == id)) {
        std::optional<PendingRequest> out(std::move(it->second));
        pending_.erase(it);
        return out;
      }
    }
    return std::nullopt;
  }
  /// Number of running requests of `ctx`.
  size_t count(weir_host_ctx_t* ctx) noexcept {
    const std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<size_t>(std::count_if(pending_.begin(), pending_.end(),
                                             [ctx](const auto& p) { return p.second.ctx == ctx; }));
  }

private:
  std::mutex mutex_;
  uint64_t last_token_ = 0;
  std::unordered_map<uint64_t, PendingRequest> pending_;
};

inline void* token_to_user(uint64_t token) noexcept {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(token));
}
inline uint64_t user_to_token(void* user) noexcept {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(user));
}

/// True when a struct whose struct_size is `size` has the field at [offset, offset + len).
constexpr bool covers(uint32_t size, size_t offset, size_t len) noexcept {
  return size >= offset + len;
}

/// The C++ view of a probe result; only the fields the host's struct_size covers are read.
inline ProbeResult read_probe_result(const weir_probe_result_t* raw) {
  ProbeResult r;
  if (raw == nullptr ||
      !covers(raw->struct_size, offsetof(weir_probe_result_t, status), sizeof(raw->status))) {
    r.error = "the host delivered no result";
    return r;
  }
  r.ok = raw->status == WEIR_OK;
  if (covers(raw->struct_size, offsetof(weir_probe_result_t, error), sizeof(raw->error))) {
    r.error = view(raw->error);
  }
  if (covers(raw->struct_size, offsetof(weir_probe_result_t, duration_ns),
             sizeof(raw->duration_ns))) {
    r.duration_ns = raw->duration_ns;
  }
  if (!r.ok && r.error.empty()) {
    r.error = "failed";
  }
  return r;
}

/// The C++ view of a fetch result; only the fields the host's struct_size covers are read.
inline FetchResult read_fetch_result(const weir_fetch_result_t* raw) {
  FetchResult r;
  if (raw == nullptr ||
      !covers(raw->struct_size, offsetof(weir_fetch_result_t, status), sizeof(raw->status))) {
    r.error = "the host delivered no result";
    return r;
  }
  const uint32_t size = raw->struct_size;
  r.ok = raw->status == WEIR_OK;
  if (covers(size, offsetof(weir_fetch_result_t, error), sizeof(raw->error))) {
    r.error = view(raw->error);
  }
  if (covers(size, offsetof(weir_fetch_result_t, http_status), sizeof(raw->http_status))) {
    r.status = raw->http_status;
  }
  if (covers(size, offsetof(weir_fetch_result_t, header_count), sizeof(raw->header_count)) &&
      raw->headers != nullptr) {
    r.headers.reserve(raw->header_count);
    for (size_t i = 0; i < raw->header_count; ++i) {
      r.headers.emplace_back(view(raw->headers[2 * i]), view(raw->headers[2 * i + 1]));
    }
  }
  if (covers(size, offsetof(weir_fetch_result_t, body), sizeof(raw->body))) {
    r.body = view(raw->body);
  }
  if (covers(size, offsetof(weir_fetch_result_t, truncated), sizeof(raw->truncated))) {
    r.truncated = raw->truncated != 0;
  }
  if (covers(size, offsetof(weir_fetch_result_t, duration_ns), sizeof(raw->duration_ns))) {
    r.duration_ns = raw->duration_ns;
  }
  if (!r.ok && r.error.empty()) {
    r.error = "failed";
  }
  return r;
}

/// The C++ view of a DNS result; only the fields the host's struct_size covers are read, and the
/// records are strided by the struct_size of the first (a newer host's longer records read
/// correctly; a record too short to hold its type is not read at all).
inline DnsResult read_dns_result(const weir_dns_result_t* raw) {
  DnsResult r;
  if (raw == nullptr ||
      !covers(raw->struct_size, offsetof(weir_dns_result_t, status), sizeof(raw->status))) {
    r.error = "the host delivered no result";
    return r;
  }
  const uint32_t size = raw->struct_size;
  if (raw->status == WEIR_OK) {
    r.status = DnsStatus::Ok;
  } else if (raw->status == WEIR_ERROR_NOT_FOUND) {
    r.status = DnsStatus::NotFound;
  } else {
    r.status = DnsStatus::Error;
  }
  if (covers(size, offsetof(weir_dns_result_t, error), sizeof(raw->error))) {
    r.error = view(raw->error);
  }
  if (covers(size, offsetof(weir_dns_result_t, count), sizeof(raw->count)) &&
      raw->records != nullptr && raw->count > 0) {
    const uint32_t stride = raw->records[0].struct_size;
    if (covers(stride, offsetof(weir_dns_record_t, type), sizeof(weir_dns_type_t))) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(raw->records);
      r.records.reserve(raw->count);
      for (size_t i = 0; i < raw->count; ++i) {
        weir_dns_record_t rec{}; // fields beyond the host's struct_size stay empty / 0
        std::memcpy(&rec, bytes + i * stride, std::min<size_t>(stride, sizeof(rec)));
        DnsRecord out;
        out.type = static_cast<DnsType>(rec.type);
        out.ttl = rec.ttl;
        out.name = view(rec.name);
        out.address = view(rec.address);
        out.target = view(rec.target);
        out.priority = rec.priority;
        out.weight = rec.weight;
        out.port = rec.port;
        if (rec.txt != nullptr && rec.txt_count > 0 &&
            covers(stride, offsetof(weir_dns_record_t, txt_count), sizeof(rec.txt_count))) {
          out.txt.reserve(rec.txt_count);
          for (size_t j = 0; j < rec.txt_count; ++j) {
            out.txt.push_back(view(rec.txt[j]));
          }
        }
        r.records.push_back(std::move(out));
      }
    }
  }
  if (covers(size, offsetof(weir_dns_result_t, negative_ttl), sizeof(raw->negative_ttl))) {
    r.negative_ttl = raw->negative_ttl;
  }
  if (r.status == DnsStatus::NotFound && r.error.empty()) {
    r.error = "no such name";
  } else if (r.status == DnsStatus::Error && r.error.empty()) {
    r.error = "failed";
  }
  return r;
}

/// weir_probe_cb of every probe started through Host.
inline void probe_done(void* user, const weir_probe_result_t* raw) noexcept {
  std::optional<PendingRequest> req = RequestRegistry::instance().take(user_to_token(user));
  if (!req) {
    return; // cancelled, or delivered twice: the callback already ran or never will
  }
  guard_void(Host(req->api, req->ctx), "probe callback", [&] {
    const ProbeResult result = read_probe_result(raw);
    if (req->on_probe) {
      req->on_probe(result);
    }
  });
}

/// weir_fetch_cb of every fetch started through Host.
inline void fetch_done(void* user, const weir_fetch_result_t* raw) noexcept {
  std::optional<PendingRequest> req = RequestRegistry::instance().take(user_to_token(user));
  if (!req) {
    return;
  }
  guard_void(Host(req->api, req->ctx), "fetch callback", [&] {
    const FetchResult result = read_fetch_result(raw);
    if (req->on_fetch) {
      req->on_fetch(result);
    }
  });
}

/// weir_dns_cb of every DNS query started through Host.
inline void dns_done(void* user, const weir_dns_result_t* raw) noexcept {
  std::optional<PendingRequest> req = RequestRegistry::instance().take(user_to_token(user));
  if (!req) {
    return;
  }
  guard_void(Host(req->api, req->ctx), "DNS callback", [&] {
    const DnsResult result = read_dns_result(raw);
    if (req->on_dns) {
      req->on_dns(result);
    }
  });
}

/// Keep `req` (started as `id` with `token`) until it completes or is cancelled. Should keeping it
/// fail (out of memory), the request is cancelled with the host before the exception goes on.
inline void track_request(uint64_t token, PendingRequest&& req) {
  const weir_host_api_t* api = req.api;
  weir_host_ctx_t* ctx = req.ctx;
  const weir_request_id_t id = req.id;
  try {
    RequestRegistry::instance().add(token, std::move(req));
  } catch (...) {
    api->request_cancel(ctx, id);
    throw;
  }
}

inline uint64_t timeout_ms(std::chrono::milliseconds t) noexcept {
  return t.count() > 0 ? static_cast<uint64_t>(t.count()) : 0;
}

} // namespace detail

inline weir_request_id_t Host::probe(const ProbeRequest& req, ProbeCallback done) const {
  if (!can_probe()) {
    return 0;
  }
  weir_probe_t raw{};
  raw.struct_size = sizeof(weir_probe_t);
  raw.address = str(req.address);
  raw.kind = static_cast<weir_probe_kind_t>(req.kind);
  raw.timeout_ms = detail::timeout_ms(req.timeout);
  detail::PendingRequest pending;
  pending.api = api_;
  pending.ctx = ctx_;
  pending.on_probe = std::move(done);
  const uint64_t token = detail::RequestRegistry::instance().next_token();
  pending.id = api_->probe_start(ctx_, &raw, &detail::probe_done, detail::token_to_user(token));
  if (pending.id == 0) {
    return 0;
  }
  const weir_request_id_t id = pending.id;
  detail::track_request(token, std::move(pending));
  return id;
}

inline weir_request_id_t Host::fetch(const FetchRequest& req, FetchCallback done) const {
  if (!can_probe()) {
    return 0;
  }
  std::vector<weir_str_t> headers;
  headers.reserve(2 * req.headers.size());
  for (const auto& [name, value] : req.headers) {
    headers.push_back(str(name));
    headers.push_back(str(value));
  }
  weir_fetch_t raw{};
  raw.struct_size = sizeof(weir_fetch_t);
  raw.method = str(req.method);
  raw.url = str(req.url);
  raw.connect_to = str(req.connect_to);
  raw.headers = headers.empty() ? nullptr : headers.data();
  raw.header_count = req.headers.size();
  raw.body = str(req.body);
  raw.timeout_ms = detail::timeout_ms(req.timeout);
  raw.max_body = req.max_body;
  raw.flags = req.flags;
  raw.ca_file = str(req.ca_file);
  detail::PendingRequest pending;
  pending.api = api_;
  pending.ctx = ctx_;
  pending.on_fetch = std::move(done);
  const uint64_t token = detail::RequestRegistry::instance().next_token();
  pending.id = api_->fetch_start(ctx_, &raw, &detail::fetch_done, detail::token_to_user(token));
  if (pending.id == 0) {
    return 0;
  }
  const weir_request_id_t id = pending.id;
  detail::track_request(token, std::move(pending));
  return id;
}

inline weir_request_id_t Host::dns_query(std::string_view name, DnsType type,
                                         DnsCallback done) const {
  if (!can_resolve()) {
    return 0;
  }
  detail::PendingRequest pending;
  pending.api = api_;
  pending.ctx = ctx_;
  pending.on_dns = std::move(done);
  const uint64_t token = detail::RequestRegistry::instance().next_token();
  pending.id = api_->dns_query(ctx_, str(name), static_cast<weir_dns_type_t>(type),
                               &detail::dns_done, detail::token_to_user(token));
  if (pending.id == 0) {
    return 0;
  }
  const weir_request_id_t id = pending.id;
  detail::track_request(token, std::move(pending));
  return id;
}

inline void Host::cancel_request(weir_request_id_t id) const noexcept {
  if (id == 0 || !WEIR_SDK_HOST_HAS(api_, request_cancel)) {
    return;
  }
  // Taken out first and destroyed after the host call, so that a callback object whose
  // destructor calls back into the SDK finds the registry unlocked.
  std::optional<detail::PendingRequest> req = detail::RequestRegistry::instance().take(ctx_, id);
  api_->request_cancel(ctx_, id);
}

inline void Host::cancel_all_requests() const noexcept {
  if (!WEIR_SDK_HOST_HAS(api_, request_cancel)) {
    return;
  }
  while (std::optional<detail::PendingRequest> req =
             detail::RequestRegistry::instance().take(ctx_, 0)) {
    api_->request_cancel(ctx_, req->id);
  }
}

inline size_t Host::pending_requests() const noexcept {
  return detail::RequestRegistry::instance().count(ctx_);
}

// ================================================================================================
// Targets
// ================================================================================================

/// One upstream target, owned (copied out of the ABI's weir_target_t).
struct Target {
  Target() = default;
  /// A target; `{"10.0.0.1:80", 5}` or `{"10.0.0.1:80", 1, true, "id"}`.
  Target(std::string address_, uint32_t weight_ = 1, bool healthy_ = true, std::string id_ = {})
      : address(std::move(address_)), weight(weight_), healthy(healthy_), id(std::move(id_)) {}

  std::string address; ///< "ip:port", "[ipv6]:port", "host:port" or "unix:/path"
  uint32_t weight = 1; ///< >= 1
  bool healthy = true; ///< host view; ignored when publishing
  std::string id;      ///< stable identity; empty means the address
  /// Lower is preferred: requests go to the lowest priority that has a healthy target (as SRV
  /// priorities); 0 for all = one group. ABI 1.2: a host older than 1.2 neither receives nor
  /// sends it (it reads 0).
  uint32_t priority = 0;
  /// Key/value pairs shown by weir's admin endpoint (e.g. DNS-SD TXT keys), in order. ABI 1.2, as
  /// `priority`.
  std::vector<std::pair<std::string, std::string>> metadata;

  /// The identity the host uses: `id`, or the address when `id` is empty.
  [[nodiscard]] std::string_view key() const noexcept { return id.empty() ? address : id; }
};

namespace detail {
/// Size of weir_target_t in ABI 1.0 (the fields every host fills).
inline constexpr size_t target_v1_size = offsetof(weir_target_t, id) + sizeof(weir_str_t);

/// Copy the targets of a host array. Elements are strided by the struct_size the host stamped on
/// them (so an array built by a newer minor with a longer struct still reads correctly) and only
/// the fields the element declares are read (priority and metadata from ABI 1.2 hosts).
inline std::vector<Target> read_targets(const weir_target_t* targets, size_t n) {
  std::vector<Target> out;
  if (targets == nullptr || n == 0) {
    return out;
  }
  out.reserve(n);
  const auto* bytes = reinterpret_cast<const unsigned char*>(targets);
  const size_t stride =
      targets[0].struct_size >= target_v1_size ? targets[0].struct_size : sizeof(weir_target_t);
  const auto size =
      static_cast<uint32_t>(std::min<size_t>(stride, std::numeric_limits<uint32_t>::max()));
  const bool has_priority =
      covers(size, offsetof(weir_target_t, priority), sizeof(weir_target_t::priority));
  const bool has_metadata =
      covers(size, offsetof(weir_target_t, metadata_count), sizeof(weir_target_t::metadata_count));
  for (size_t i = 0; i < n; ++i) {
    weir_target_t t{};
    std::memcpy(&t, bytes + i * stride, std::min(stride, sizeof(weir_target_t)));
    Target c;
    c.address = std::string(view(t.address));
    c.weight = t.weight == 0 ? 1 : t.weight;
    c.healthy = t.healthy != 0;
    c.id = std::string(view(t.id));
    if (has_priority) {
      c.priority = t.priority;
    }
    if (has_metadata && t.metadata != nullptr) {
      c.metadata.reserve(t.metadata_count);
      for (size_t k = 0; k < t.metadata_count; ++k) {
        c.metadata.emplace_back(std::string(view(t.metadata[2 * k])),
                                std::string(view(t.metadata[2 * k + 1])));
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}
} // namespace detail

inline weir_status_t Host::publish_targets(std::span<const Target> targets) const {
  if (api_ == nullptr || api_->publish_targets == nullptr) {
    return WEIR_ERROR_UNSUPPORTED;
  }
  // Every metadata string of every target, in one array that does not move while `raw` points
  // into it (the host copies both before publish_targets returns).
  size_t metadata_total = 0;
  for (const Target& t : targets) {
    metadata_total += 2 * t.metadata.size();
  }
  std::vector<weir_str_t> metadata;
  metadata.reserve(metadata_total);
  std::vector<weir_target_t> raw;
  raw.reserve(targets.size());
  for (const Target& t : targets) {
    weir_target_t r{};
    r.struct_size = sizeof(weir_target_t);
    r.address = str(t.address);
    r.weight = t.weight == 0 ? 1 : t.weight;
    r.healthy = t.healthy ? 1 : 0;
    r.id = str(t.id);
    r.priority = t.priority;
    if (!t.metadata.empty()) {
      r.metadata = metadata.data() + metadata.size();
      r.metadata_count = t.metadata.size();
      for (const auto& [key, value] : t.metadata) {
        metadata.push_back(str(key));
        metadata.push_back(str(value));
      }
    }
    raw.push_back(r);
  }
  return api_->publish_targets(ctx_, raw.data(), raw.size());
}

// ================================================================================================
// Configuration
// ================================================================================================

/// Thrown by ConfigReader::fail() (after reporting) to abandon reading a configuration. The SDK
/// turns it into WEIR_ERROR_CONFIG without logging anything else. Deliberately not derived from
/// std::exception.
struct ConfigRejected {};

/// Readable name of a configuration type, with its article ("an integer").
[[nodiscard]] constexpr std::string_view config_type_name(weir_config_type_t t) noexcept {
  switch (t) {
  case WEIR_CONFIG_STRING:
    return "a string";
  case WEIR_CONFIG_INTEGER:
    return "an integer";
  case WEIR_CONFIG_FLOAT:
    return "a float";
  case WEIR_CONFIG_BOOLEAN:
    return "a boolean";
  case WEIR_CONFIG_ARRAY:
    return "an array";
  case WEIR_CONFIG_TABLE:
    return "a table";
  default:
    return "nothing";
  }
}

/// A view of one configuration node (the module's table, or anything below it) with typed getters.
///
/// Every getter that finds a value of the wrong type, out of range or malformed reports a precise
/// error at that value through api->config_error (the host adds file:line:column and the key path)
/// and returns the default (or nullopt), so a Config constructor can keep reading and report every
/// problem at once. The SDK fails config_new when any error was reported.
///
/// Getters named get_*(key, ...) read a key of this table: an absent key gives the default.
/// Getters named as_*(...) read this node itself. Valid only during config_new.
class ConfigReader {
public:
  /// A reader of `node` (the root of a module's table), with a fresh error count.
  ConfigReader(const weir_host_api_t* api, weir_host_ctx_t* ctx, const weir_config_node_t* node)
      : state_(std::make_shared<State>(State{api, ctx, 0})), node_(node), anchor_(node) {}

  // --- the node itself -------------------------------------------------------------------------

  /// False for an absent key (child() of a missing key).
  [[nodiscard]] bool present() const noexcept { return node_ != nullptr; }
  /// Same as present().
  explicit operator bool() const noexcept { return present(); }
  /// WEIR_CONFIG_* type of the node (WEIR_CONFIG_NONE when absent).
  [[nodiscard]] weir_config_type_t type() const noexcept {
    return node_ != nullptr ? api()->config_type(node_) : WEIR_CONFIG_NONE;
  }
  /// True when the node is a table.
  [[nodiscard]] bool is_table() const noexcept { return type() == WEIR_CONFIG_TABLE; }
  /// True when the node is an array.
  [[nodiscard]] bool is_array() const noexcept { return type() == WEIR_CONFIG_ARRAY; }
  /// Key path of the node, e.g. "upstreams.app.discovery.targets[1]".
  [[nodiscard]] std::string path() const {
    return node_ != nullptr && api()->config_path != nullptr
               ? std::string(view(api()->config_path(node_)))
               : std::string();
  }
  /// The raw node.
  [[nodiscard]] const weir_config_node_t* node() const noexcept { return node_; }
  /// The host, with the context of the configuration being built (for logging).
  [[nodiscard]] Host host() const noexcept { return Host(state_->api, state_->ctx); }

  // --- errors ----------------------------------------------------------------------------------

  /// Report a configuration error at this node (at the nearest present ancestor if absent).
  void error(std::string_view msg) const {
    ++state_->errors;
    if (api()->config_error != nullptr) {
      api()->config_error(state_->ctx, node_ != nullptr ? node_ : anchor_, str(msg));
    }
  }
  /// Report an error at this node and abandon reading (throws ConfigRejected).
  [[noreturn]] void fail(std::string_view msg) const {
    error(msg);
    throw ConfigRejected{};
  }
  /// Number of errors reported through this reader and every reader derived from it.
  [[nodiscard]] size_t error_count() const noexcept { return state_->errors; }
  /// True when no error was reported so far.
  [[nodiscard]] bool ok() const noexcept { return state_->errors == 0; }

  // --- structure -------------------------------------------------------------------------------

  /// Child of this table by key; not present() when absent (or when this is not a table).
  [[nodiscard]] ConfigReader child(std::string_view key) const {
    return derive(node_ != nullptr ? api()->config_get(node_, str(key)) : nullptr);
  }
  /// True when this table has `key`.
  [[nodiscard]] bool has(std::string_view key) const { return child(key).present(); }
  /// Elements of an array or keys of a table.
  [[nodiscard]] size_t size() const noexcept {
    return node_ != nullptr ? api()->config_size(node_) : 0;
  }
  /// Element `i` of this array.
  [[nodiscard]] ConfigReader at(size_t i) const {
    return derive(node_ != nullptr ? api()->config_at(node_, i) : nullptr);
  }
  /// Elements of this array (empty when not an array).
  [[nodiscard]] std::vector<ConfigReader> elements() const {
    std::vector<ConfigReader> out;
    if (type() != WEIR_CONFIG_ARRAY) {
      return out;
    }
    const size_t n = size();
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(at(i));
    }
    return out;
  }
  /// Visit the keys of this table in file order: fn(std::string_view key, ConfigReader value).
  /// An exception thrown by `fn` stops the visit and propagates (never through the host).
  template <class F> void each(F&& fn) const {
    if (type() != WEIR_CONFIG_TABLE) {
      return;
    }
    struct Ctx {
      const ConfigReader* self;
      std::remove_reference_t<F>* fn;
      std::exception_ptr error;
    } ctx{this, &fn, nullptr};
    api()->config_each(
        node_,
        [](void* user, weir_str_t key, const weir_config_node_t* value) -> int {
          auto* c = static_cast<Ctx*>(user);
          try {
            (*c->fn)(view(key), c->self->derive(value));
            return 0;
          } catch (...) {
            c->error = std::current_exception();
            return 1;
          }
        },
        &ctx);
    if (ctx.error) {
      std::rethrow_exception(ctx.error);
    }
  }
  /// Keys and values of this table, in file order.
  [[nodiscard]] std::vector<std::pair<std::string, ConfigReader>> entries() const {
    std::vector<std::pair<std::string, ConfigReader>> out;
    each(
        [&out](std::string_view k, const ConfigReader& v) { out.emplace_back(std::string(k), v); });
    return out;
  }
  /// Report every key of this table that is not in `allowed` (the key `use` is always allowed),
  /// each at its value, with a "did you mean" suggestion when one is close. Reports an error when
  /// this node is not a table. Returns true when every key was allowed.
  bool expect_only_keys(std::initializer_list<std::string_view> allowed) const {
    if (!expect_table()) {
      return false;
    }
    std::vector<std::string_view> candidates(allowed.begin(), allowed.end());
    candidates.emplace_back("use");
    bool all_known = true;
    each([&](std::string_view key, const ConfigReader& value) {
      if (std::find(candidates.begin(), candidates.end(), key) != candidates.end()) {
        return;
      }
      all_known = false;
      std::string msg = "unknown key '" + std::string(key) + "'";
      const std::string suggestion = did_you_mean(key, candidates);
      if (!suggestion.empty()) {
        msg += " (did you mean '" + suggestion + "'?)";
      } else if (allowed.size() == 0) {
        msg += " (this module takes no keys besides 'use')";
      } else {
        msg += " (expected one of: ";
        bool first = true;
        for (std::string_view a : allowed) {
          msg += first ? "" : ", ";
          msg += a;
          first = false;
        }
        msg += ")";
      }
      value.error(msg);
    });
    return all_known;
  }
  /// Report an error unless this node is a table.
  bool expect_table() const { return expect_type(WEIR_CONFIG_TABLE); }
  /// Report an error unless this node is an array.
  bool expect_array() const { return expect_type(WEIR_CONFIG_ARRAY); }

  // --- scalar reads of this node -----------------------------------------------------------------

  /// The node as a string.
  [[nodiscard]] std::optional<std::string> as_string() const {
    weir_str_t s{};
    if (!expect_type(WEIR_CONFIG_STRING) || api()->config_string(node_, &s) != WEIR_OK) {
      return std::nullopt;
    }
    return std::string(view(s));
  }
  /// The node as an integer within [min, max] (converted to T, which always fits).
  template <std::integral T = int64_t>
  [[nodiscard]] std::optional<T>
  as_int(std::type_identity_t<T> min = std::numeric_limits<T>::min(),
         std::type_identity_t<T> max = std::numeric_limits<T>::max()) const {
    int64_t v = 0;
    if (!expect_type(WEIR_CONFIG_INTEGER) || api()->config_int(node_, &v) != WEIR_OK) {
      return std::nullopt;
    }
    if (std::cmp_less(v, min) || std::cmp_greater(v, max)) {
      error(
          range_message(v, min, max, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
      return std::nullopt;
    }
    return static_cast<T>(v);
  }
  /// The node as a boolean.
  [[nodiscard]] std::optional<bool> as_bool() const {
    int v = 0;
    if (!expect_type(WEIR_CONFIG_BOOLEAN) || api()->config_bool(node_, &v) != WEIR_OK) {
      return std::nullopt;
    }
    return v != 0;
  }
  /// The node as a number (an integer converts) within [min, max].
  [[nodiscard]] std::optional<double>
  as_double(double min = -std::numeric_limits<double>::infinity(),
            double max = std::numeric_limits<double>::infinity()) const {
    const weir_config_type_t t = type();
    double v = 0;
    if (t != WEIR_CONFIG_FLOAT && t != WEIR_CONFIG_INTEGER) {
      error(cat("expected a number, got ", config_type_name(t)));
      return std::nullopt;
    }
    if (api()->config_float(node_, &v) != WEIR_OK) {
      error("expected a number");
      return std::nullopt;
    }
    if (!(v >= min && v <= max)) {
      error(range_message(v, min, max, -std::numeric_limits<double>::infinity(),
                          std::numeric_limits<double>::infinity()));
      return std::nullopt;
    }
    return v;
  }
  /// The node as a duration ("250ms", "5s", "1h", or an integer of milliseconds), in [min, max].
  [[nodiscard]] std::optional<std::chrono::milliseconds>
  as_duration(std::chrono::milliseconds min = std::chrono::milliseconds::zero(),
              std::chrono::milliseconds max = std::chrono::milliseconds::max()) const {
    const weir_config_type_t t = type();
    uint64_t ms = 0;
    if ((t != WEIR_CONFIG_STRING && t != WEIR_CONFIG_INTEGER) ||
        api()->config_duration_ms(node_, &ms) != WEIR_OK) {
      error(cat("expected a duration such as \"250ms\", \"5s\" or \"1h\" (or an integer of "
                "milliseconds), got ",
                describe()));
      return std::nullopt;
    }
    if (std::cmp_less(ms, min.count()) || std::cmp_greater(ms, max.count())) {
      error(range_message_ms(ms, min, max));
      return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
  }
  /// The node as an array of strings (each wrong element is reported).
  [[nodiscard]] std::optional<std::vector<std::string>> as_string_array() const {
    if (!expect_array()) {
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool good = true;
    for (const ConfigReader& e : elements()) {
      if (auto s = e.as_string()) {
        out.push_back(std::move(*s));
      } else {
        good = false;
      }
    }
    if (!good) {
      return std::nullopt;
    }
    return out;
  }

  // --- keyed getters (this node is a table) ------------------------------------------------------

  /// String at `key`, or `def` when absent or invalid.
  [[nodiscard]] std::string get_string(std::string_view key, std::string_view def) const {
    const ConfigReader c = child(key);
    if (!c) {
      return std::string(def);
    }
    auto v = c.as_string();
    return v ? std::move(*v) : std::string(def);
  }
  /// String at `key`; nullopt when absent (no error) or invalid (error reported).
  [[nodiscard]] std::optional<std::string> get_string(std::string_view key) const {
    const ConfigReader c = child(key);
    return c ? c.as_string() : std::nullopt;
  }
  /// String at `key`, reporting "missing required key" at this table when absent.
  [[nodiscard]] std::optional<std::string> require_string(std::string_view key) const {
    const ConfigReader c = child(key);
    if (!c) {
      error(cat("missing required key '", key, "' (a string)"));
      return std::nullopt;
    }
    return c.as_string();
  }
  /// Integer at `key` within [min, max], or `def` when absent or invalid.
  template <std::integral T>
  [[nodiscard]] T get_int(std::string_view key, T def,
                          std::type_identity_t<T> min = std::numeric_limits<T>::min(),
                          std::type_identity_t<T> max = std::numeric_limits<T>::max()) const {
    const ConfigReader c = child(key);
    if (!c) {
      return def;
    }
    return c.as_int<T>(min, max).value_or(def);
  }
  /// Boolean at `key`, or `def` when absent or invalid.
  [[nodiscard]] bool get_bool(std::string_view key, bool def) const {
    const ConfigReader c = child(key);
    return c ? c.as_bool().value_or(def) : def;
  }
  /// Number at `key` within [min, max], or `def` when absent or invalid.
  [[nodiscard]] double get_double(std::string_view key, double def,
                                  double min = -std::numeric_limits<double>::infinity(),
                                  double max = std::numeric_limits<double>::infinity()) const {
    const ConfigReader c = child(key);
    return c ? c.as_double(min, max).value_or(def) : def;
  }
  /// Duration at `key` within [min, max], or `def` when absent or invalid.
  [[nodiscard]] std::chrono::milliseconds
  get_duration(std::string_view key, std::chrono::milliseconds def,
               std::chrono::milliseconds min = std::chrono::milliseconds::zero(),
               std::chrono::milliseconds max = std::chrono::milliseconds::max()) const {
    const ConfigReader c = child(key);
    return c ? c.as_duration(min, max).value_or(def) : def;
  }
  /// Array of strings at `key`; empty when absent or invalid.
  [[nodiscard]] std::vector<std::string> get_string_array(std::string_view key) const {
    const ConfigReader c = child(key);
    if (!c) {
      return {};
    }
    return c.as_string_array().value_or(std::vector<std::string>{});
  }
  /// Sub-table at `key`; nullopt when absent (no error) or not a table (error reported).
  [[nodiscard]] std::optional<ConfigReader> get_table(std::string_view key) const {
    const ConfigReader c = child(key);
    if (!c || !c.expect_table()) {
      return std::nullopt;
    }
    return c;
  }
  /// Array at `key`; nullopt when absent (no error) or not an array (error reported).
  [[nodiscard]] std::optional<ConfigReader> get_array(std::string_view key) const {
    const ConfigReader c = child(key);
    if (!c || !c.expect_array()) {
      return std::nullopt;
    }
    return c;
  }
  /// Table of strings at `key` (name -> string), in file order; wrong values are reported.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>>
  get_string_table(std::string_view key) const {
    std::vector<std::pair<std::string, std::string>> out;
    if (auto t = get_table(key)) {
      t->each([&out](std::string_view k, const ConfigReader& v) {
        if (auto s = v.as_string()) {
          out.emplace_back(std::string(k), std::move(*s));
        }
      });
    }
    return out;
  }

private:
  struct State {
    const weir_host_api_t* api;
    weir_host_ctx_t* ctx;
    size_t errors;
  };

  ConfigReader(std::shared_ptr<State> state, const weir_config_node_t* node,
               const weir_config_node_t* anchor) noexcept
      : state_(std::move(state)), node_(node), anchor_(node != nullptr ? node : anchor) {}

  [[nodiscard]] ConfigReader derive(const weir_config_node_t* node) const {
    return ConfigReader(state_, node, anchor_);
  }
  [[nodiscard]] const weir_host_api_t* api() const noexcept { return state_->api; }

  /// Describe the node for an error: its type, plus the value of short scalars.
  [[nodiscard]] std::string describe() const {
    const weir_config_type_t t = type();
    std::string out(config_type_name(t));
    if (t == WEIR_CONFIG_STRING) {
      weir_str_t s{};
      if (api()->config_string(node_, &s) == WEIR_OK && s.len <= 40) {
        out += " \"" + std::string(view(s)) + "\"";
      }
    } else if (t == WEIR_CONFIG_INTEGER) {
      int64_t v = 0;
      if (api()->config_int(node_, &v) == WEIR_OK) {
        out += " (" + std::to_string(v) + ")";
      }
    }
    return out;
  }

  bool expect_type(weir_config_type_t want) const {
    const weir_config_type_t t = type();
    if (t == want) {
      return true;
    }
    error(cat("expected ", config_type_name(want), ", got ", config_type_name(t)));
    return false;
  }

  template <class V, class L>
  static std::string range_message(V v, L min, L max, L type_min, L type_max) {
    std::ostringstream os;
    bool below = false; // else above: one bound is named only when it is the one crossed
    if constexpr (std::is_integral_v<V> && std::is_integral_v<L>) {
      below = std::cmp_less(v, min);
    } else {
      below = v < min;
    }
    if (below && min != type_min && max == type_max) {
      os << "must be at least " << +min;
    } else if (!below && min == type_min && max != type_max) {
      os << "must be at most " << +max;
    } else {
      os << "must be between " << +min << " and " << +max;
    }
    os << ", got " << +v;
    return os.str();
  }

  static std::string range_message_ms(uint64_t v, std::chrono::milliseconds min,
                                      std::chrono::milliseconds max) {
    std::ostringstream os;
    if (max != std::chrono::milliseconds::max()) {
      os << "must be between " << min.count() << "ms and " << max.count() << "ms";
    } else {
      os << "must be at least " << min.count() << "ms";
    }
    os << ", got " << v << "ms";
    return os.str();
  }

  std::shared_ptr<State> state_;
  const weir_config_node_t* node_;   // the node read; NULL for an absent key
  const weir_config_node_t* anchor_; // node_, or the nearest present ancestor (for errors)
};

/// A Config type for modules that take no keys besides `use`.
struct NoConfig {
  /// Reports every key other than `use`.
  explicit NoConfig(ConfigReader& cfg) { cfg.expect_only_keys({}); }
};

// ================================================================================================
// HTTP exchange
// ================================================================================================

/// One header block (request or response) of an exchange. Names compare case-insensitively (the
/// host does it). A view: valid only during the hook that received the exchange.
class Headers {
public:
  /// View the block `which` (WEIR_HEADERS_REQUEST or WEIR_HEADERS_RESPONSE) of `http`.
  Headers(const weir_host_api_t* api, weir_http_t* http, weir_headers_which_t which) noexcept
      : api_(api), http_(http), which_(which) {}

  /// Value of the `index`-th header named `name`; nullopt when absent. The view is valid until
  /// the headers are next modified.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view name,
                                                    size_t index = 0) const noexcept {
    weir_str_t out{};
    if (api_->header_get(http_, which_, str(name), index, &out) != WEIR_OK) {
      return std::nullopt;
    }
    return view(out);
  }
  /// Every value of headers named `name`, in order (copied).
  [[nodiscard]] std::vector<std::string> get_all(std::string_view name) const {
    std::vector<std::string> out;
    for (size_t i = 0;; ++i) {
      auto v = get(name, i);
      if (!v) {
        break;
      }
      out.emplace_back(*v);
    }
    return out;
  }
  /// True when a header named `name` exists.
  [[nodiscard]] bool has(std::string_view name) const noexcept { return get(name).has_value(); }
  /// Replace every header named `name` with one header.
  weir_status_t set(std::string_view name, std::string_view value) const noexcept {
    return api_->header_set(http_, which_, str(name), str(value));
  }
  /// Append a header, keeping existing ones of the same name.
  weir_status_t add(std::string_view name, std::string_view value) const noexcept {
    return api_->header_add(http_, which_, str(name), str(value));
  }
  /// Remove every header named `name` (WEIR_OK even when none existed).
  weir_status_t remove(std::string_view name) const noexcept {
    return api_->header_remove(http_, which_, str(name));
  }
  /// Visit headers in order: fn(std::string_view name, std::string_view value), returning void, or
  /// bool where false stops the visit. Do not modify headers from `fn`. An exception thrown by
  /// `fn` stops the visit and propagates (never through the host).
  template <class F> void each(F&& fn) const {
    struct Ctx {
      std::remove_reference_t<F>* fn;
      std::exception_ptr error;
    } ctx{&fn, nullptr};
    api_->header_each(
        http_, which_,
        [](void* user, weir_str_t name, weir_str_t value) -> int {
          auto* c = static_cast<Ctx*>(user);
          try {
            if constexpr (std::is_same_v<
                              std::invoke_result_t<F&, std::string_view, std::string_view>, bool>) {
              return (*c->fn)(view(name), view(value)) ? 0 : 1;
            } else {
              (*c->fn)(view(name), view(value));
              return 0;
            }
          } catch (...) {
            c->error = std::current_exception();
            return 1;
          }
        },
        &ctx);
    if (ctx.error) {
      std::rethrow_exception(ctx.error);
    }
  }
  /// Which block this is.
  [[nodiscard]] weir_headers_which_t which() const noexcept { return which_; }

private:
  const weir_host_api_t* api_;
  weir_http_t* http_;
  weir_headers_which_t which_;
};

/// One HTTP exchange (the request and, once received, the response). A view: valid only during the
/// hook that received it.
class Http {
public:
  /// Wrap the exchange `http`.
  Http(const weir_host_api_t* api, weir_http_t* http) noexcept : api_(api), http_(http) {}

  /// Request method ("GET").
  [[nodiscard]] std::string_view method() const noexcept { return view(api_->http_method(http_)); }
  /// Normalized path, without the query.
  [[nodiscard]] std::string_view path() const noexcept { return view(api_->http_path(http_)); }
  /// Query string without the '?'; empty when none.
  [[nodiscard]] std::string_view query() const noexcept { return view(api_->http_query(http_)); }
  /// Host header as received.
  [[nodiscard]] std::string_view host() const noexcept { return view(api_->http_host(http_)); }
  /// Client address (without the port).
  [[nodiscard]] std::string_view client_ip() const noexcept {
    return view(api_->http_client_ip(http_));
  }
  /// Client port.
  [[nodiscard]] uint16_t client_port() const noexcept { return api_->http_client_port(http_); }
  /// Response status; 0 before a response exists.
  [[nodiscard]] uint32_t status() const noexcept { return api_->http_status(http_); }

  /// The request headers (as they will be sent upstream).
  [[nodiscard]] Headers request_headers() const noexcept {
    return Headers(api_, http_, WEIR_HEADERS_REQUEST);
  }
  /// The response headers (as they will be sent downstream).
  [[nodiscard]] Headers response_headers() const noexcept {
    return Headers(api_, http_, WEIR_HEADERS_RESPONSE);
  }
  /// The header block `which`.
  [[nodiscard]] Headers headers(weir_headers_which_t which) const noexcept {
    return Headers(api_, http_, which);
  }

  /// Answer the request locally (request-stage hooks only; return FilterResult::Responded).
  weir_status_t respond(uint32_t status, std::string_view body = {},
                        std::string_view content_type = "text/plain") const noexcept {
    return api_->http_respond(http_, status, str(content_type), str(body));
  }

  /// The raw exchange handle.
  [[nodiscard]] weir_http_t* raw() const noexcept { return http_; }
  /// The raw API table.
  [[nodiscard]] const weir_host_api_t* api() const noexcept { return api_; }

private:
  const weir_host_api_t* api_;
  weir_http_t* http_;
};

// ================================================================================================
// Per-kind request types
// ================================================================================================

/// What a filter hook returns.
enum class FilterResult : weir_filter_result_t {
  Continue = WEIR_FILTER_CONTINUE,   ///< go on with the next filter
  Responded = WEIR_FILTER_RESPONDED, ///< the hook answered through Http::respond
  Failed = WEIR_FILTER_FAILED,       ///< the hook failed; the host answers 500
};

/// One pick request of a load balancer.
struct PickRequest {
  std::optional<Http> http;          ///< the exchange, when there is a request
  uint32_t attempt = 0;              ///< 0 for the first try, then 1, 2, ... for retries
  std::span<const uint8_t> excluded; ///< flags, 1 = already tried; empty = none
  size_t n = 0;                      ///< number of targets in the current set

  /// True when target `i` was already tried for this request.
  [[nodiscard]] bool is_excluded(size_t i) const noexcept {
    return i < excluded.size() && excluded[i] != 0;
  }
};

/// A passive health observation (one proxied request's outcome).
struct Observation {
  std::string_view target_id;  ///< id (or address) of the target
  uint32_t status = 0;         ///< HTTP status, 0 when no response
  bool connect_failed = false; ///< the connection (or its TLS handshake) could not be made
  bool timed_out = false;      ///< no response head within the response timeout (ABI 1.2 hosts;
                               ///< always false from older hosts)
  uint64_t duration_ns = 0;    ///< from the start of the attempt to its end (ABI 1.2 hosts; 0
                               ///< from older hosts)
};

// ================================================================================================
// Module machinery
// ================================================================================================

namespace detail {

template <class C>
concept ConfigType = std::is_constructible_v<C, ConfigReader&>;

/// A configuration object as handed to the host.
template <class C> struct ConfigBox {
  ConfigBox(Host h, ConfigReader& reader) : host(h), value(reader) {}
  Host host;
  C value;
};

/// Construct an Instance from the first constructor it has.
template <class I, class C> I make_instance(Host host, const C& config) {
  if constexpr (std::is_constructible_v<I, Host, const C&>) {
    return I(host, config);
  } else if constexpr (std::is_constructible_v<I, const C&>) {
    return I(config);
  } else if constexpr (std::is_constructible_v<I, Host>) {
    return I(host);
  } else {
    static_assert(std::is_default_constructible_v<I>,
                  "an Instance needs a constructor (Host, const Config&), (const Config&), "
                  "(Host) or ()");
    return I();
  }
}

/// An instance object as handed to the host.
template <class I> struct InstanceBox {
  template <class C>
  InstanceBox(Host h, const C& config) : host(h), value(make_instance<I>(h, config)) {}
  Host host;
  I value;
  size_t target_count = 0; // LB: size of the last target set, to check picks
};

/// Map a hook's return value to weir_status_t.
template <class F> weir_status_t status_of(F&& fn) {
  using R = std::invoke_result_t<F>;
  if constexpr (std::is_void_v<R>) {
    std::forward<F>(fn)();
    return WEIR_OK;
  } else {
    return static_cast<weir_status_t>(std::forward<F>(fn)());
  }
}

/// Map a filter hook's return value to weir_filter_result_t.
template <class F> weir_filter_result_t filter_result_of(F&& fn) {
  using R = std::invoke_result_t<F>;
  if constexpr (std::is_void_v<R>) {
    std::forward<F>(fn)();
    return WEIR_FILTER_CONTINUE;
  } else {
    return static_cast<weir_filter_result_t>(std::forward<F>(fn)());
  }
}

template <class C>
weir_status_t config_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                         const weir_config_node_t* cfg, weir_plugin_config_t** out) noexcept {
  if (out != nullptr) {
    *out = nullptr;
  }
  if (api == nullptr || out == nullptr) {
    return WEIR_ERROR_INVALID;
  }
  if (api->abi_major != WEIR_ABI_MAJOR) {
    return WEIR_ERROR_UNSUPPORTED;
  }
  const Host host(api, ctx);
  std::optional<ConfigReader> reader;
  try {
    reader.emplace(api, ctx, cfg);
    auto box = std::make_unique<ConfigBox<C>>(host, *reader);
    if (!reader->ok()) {
      return WEIR_ERROR_CONFIG;
    }
    *out = reinterpret_cast<weir_plugin_config_t*>(box.release());
    return WEIR_OK;
  } catch (const ConfigRejected&) {
    if (reader && reader->ok()) {
      reader->error("configuration rejected");
    }
    return WEIR_ERROR_CONFIG;
  } catch (const std::bad_alloc&) {
    log_exception(host, "config_new", "out of memory");
    return WEIR_ERROR_NOMEM;
  } catch (const std::exception& e) {
    log_exception(host, "config_new", e.what());
    try {
      if (api->config_error != nullptr) {
        api->config_error(ctx, cfg, str(cat("plugin error: ", e.what())));
      }
    } catch (...) {
    }
    return WEIR_ERROR_CONFIG;
  } catch (...) {
    log_exception(host, "config_new", "unknown exception (not derived from std::exception)");
    if (api->config_error != nullptr) {
      api->config_error(ctx, cfg, str("plugin error: unknown exception"));
    }
    return WEIR_ERROR_CONFIG;
  }
}

template <class C> void config_destroy(weir_plugin_config_t* config) noexcept {
  auto* box = reinterpret_cast<ConfigBox<C>*>(config);
  if (box == nullptr) {
    return;
  }
  const Host host = box->host;
  guard_void(host, "config_destroy", [box] { delete box; });
}

template <class C, class I, class Handle>
weir_status_t instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                           const weir_plugin_config_t* config, Handle** out) noexcept {
  if (out != nullptr) {
    *out = nullptr;
  }
  if (api == nullptr || out == nullptr || config == nullptr) {
    return WEIR_ERROR_INVALID;
  }
  const Host host(api, ctx);
  return guard_status(host, "instance_new", [&]() -> weir_status_t {
    const auto* cbox = reinterpret_cast<const ConfigBox<C>*>(config);
    auto box = std::make_unique<InstanceBox<I>>(host, cbox->value);
    *out = reinterpret_cast<Handle*>(box.release());
    return WEIR_OK;
  });
}

/// True for the instances of the control-thread kinds, which may start probes and fetches.
template <class Handle>
inline constexpr bool is_control_instance = std::is_same_v<Handle, weir_health_instance_t> ||
                                            std::is_same_v<Handle, weir_discovery_instance_t> ||
                                            std::is_same_v<Handle, weir_certs_instance_t>;

template <class I, class Handle> void instance_destroy(Handle* inst) noexcept {
  auto* box = reinterpret_cast<InstanceBox<I>*>(inst);
  if (box == nullptr) {
    return;
  }
  const Host host = box->host;
  guard_void(host, "instance_destroy", [box] { delete box; });
  if constexpr (is_control_instance<Handle>) {
    // Probes and fetches the Instance left running: their callbacks would reach a dead object.
    host.cancel_all_requests();
  }
}

template <class I, class Handle> InstanceBox<I>* unbox(Handle* inst) noexcept {
  return reinterpret_cast<InstanceBox<I>*>(inst);
}

/// True when `name` is a valid module name: [a-z0-9-]+.
constexpr bool valid_module_name(const char* name) noexcept {
  if (name == nullptr || *name == '\0') {
    return false;
  }
  for (const char* p = name; *p != '\0'; ++p) {
    const char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return false;
    }
  }
  return true;
}

constexpr bool same_cstr(const char* a, const char* b) noexcept {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

/// True when no two modules share kind and name.
template <size_t N> constexpr bool unique_modules(const weir_module_t (&mods)[N]) noexcept {
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = i + 1; j < N; ++j) {
      if (mods[i].kind == mods[j].kind && same_cstr(mods[i].name, mods[j].name)) {
        return false;
      }
    }
  }
  return true;
}

consteval void check_module_name(const char* name) {
  if (!valid_module_name(name)) {
    throw std::invalid_argument("weir module names must match [a-z0-9-]+"); // compile error
  }
}

// --- hook detection --------------------------------------------------------------------------

template <class I>
concept HasLbOnStart = requires(I& i, size_t idx) {
  i.on_start(idx);
};
template <class I>
concept HasLbOnDone = requires(I& i, size_t idx, uint32_t s, uint64_t d) {
  i.on_done(idx, s, d);
};
template <class I>
concept HasOnRequest = requires(I& i, Http& h) {
  i.on_request(h);
};
template <class I>
concept HasOnResponse = requires(I& i, Http& h) {
  i.on_response(h);
};
template <class I>
concept HasOnObservation = requires(I& i, const Observation& o) {
  i.on_observation(o);
};

} // namespace detail

// --- kind: load balancer -------------------------------------------------------------------------

/// Requirements on a load balancer Instance.
template <class I>
concept LbInstance = requires(I& i, const std::vector<Target>& t, const PickRequest& r) {
  i.on_targets(t);
  { i.pick(r) } -> std::convertible_to<std::optional<size_t>>;
};

/// The C vtable of a load balancer module made of Config C and Instance I.
template <class C, class I> struct LbModule {
  static_assert(detail::ConfigType<C>,
                "Config must be constructible from weir::sdk::ConfigReader&");
  static_assert(LbInstance<I>, "an LB Instance needs on_targets(const std::vector<Target>&) and "
                               "pick(const PickRequest&) -> std::optional<size_t>");
  using Box = detail::InstanceBox<I>;

  static weir_status_t on_targets(weir_lb_instance_t* inst, const weir_target_t* targets,
                                  size_t n) noexcept {
    Box* box = detail::unbox<I>(inst);
    return detail::guard_status(box->host, "on_targets", [&] {
      const std::vector<Target> copy = detail::read_targets(targets, n);
      const weir_status_t st = detail::status_of([&] { return box->value.on_targets(copy); });
      box->target_count = n;
      return st;
    });
  }

  static weir_status_t pick(weir_lb_instance_t* inst, const weir_lb_pick_t* req,
                            size_t* out) noexcept {
    Box* box = detail::unbox<I>(inst);
    if (req == nullptr || out == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    return detail::guard_status(box->host, "pick", [&]() -> weir_status_t {
      PickRequest r;
      if (req->http != nullptr) {
        r.http.emplace(box->host.api(), req->http);
      }
      r.attempt = req->attempt;
      r.n = req->n;
      if (req->excluded != nullptr) {
        r.excluded = std::span<const uint8_t>(req->excluded, req->n);
      }
      const std::optional<size_t> chosen = box->value.pick(r);
      if (!chosen) {
        return WEIR_ERROR_NOT_FOUND;
      }
      if (*chosen >= box->target_count || *chosen >= req->n) {
        box->host.error("pick returned index ", *chosen, " outside the target set of ",
                        box->target_count);
        return WEIR_ERROR;
      }
      *out = *chosen;
      return WEIR_OK;
    });
  }

  static void on_start(weir_lb_instance_t* inst, size_t index) noexcept {
    if constexpr (detail::HasLbOnStart<I>) {
      Box* box = detail::unbox<I>(inst);
      detail::guard_void(box->host, "on_start", [&] { box->value.on_start(index); });
    }
  }

  static void on_done(weir_lb_instance_t* inst, size_t index, uint32_t status,
                      uint64_t duration_ns) noexcept {
    if constexpr (detail::HasLbOnDone<I>) {
      Box* box = detail::unbox<I>(inst);
      detail::guard_void(box->host, "on_done",
                         [&] { box->value.on_done(index, status, duration_ns); });
    }
  }

  /// The vtable (static storage, constant-initialized).
  static constexpr weir_lb_vtable_t vtable = {
      .struct_size = sizeof(weir_lb_vtable_t),
      .config_new = &detail::config_new<C>,
      .config_destroy = &detail::config_destroy<C>,
      .instance_new = &detail::instance_new<C, I, weir_lb_instance_t>,
      .instance_destroy = &detail::instance_destroy<I, weir_lb_instance_t>,
      .on_targets = &on_targets,
      .pick = &pick,
      .on_start = detail::HasLbOnStart<I> ? &on_start : nullptr,
      .on_done = detail::HasLbOnDone<I> ? &on_done : nullptr,
  };
};

/// A load balancer module named `name` ([a-z0-9-]+, checked at compile time).
template <class C, class I> consteval weir_module_t lb_module(const char* name) {
  detail::check_module_name(name);
  return weir_module_t{sizeof(weir_module_t), WEIR_KIND_LB, name, &LbModule<C, I>::vtable};
}

// --- kind: discovery ---------------------------------------------------------------------------

/// Requirements on a discovery Instance.
template <class I>
concept DiscoveryInstance = requires(I& i) {
  i.start();
};

/// The C vtable of a discovery module made of Config C and Instance I.
template <class C, class I> struct DiscoveryModule {
  static_assert(detail::ConfigType<C>,
                "Config must be constructible from weir::sdk::ConfigReader&");
  static_assert(DiscoveryInstance<I>, "a discovery Instance needs start()");
  using Box = detail::InstanceBox<I>;

  static weir_status_t start(weir_discovery_instance_t* inst) noexcept {
    Box* box = detail::unbox<I>(inst);
    return detail::guard_status(
        box->host, "start", [&] { return detail::status_of([&] { return box->value.start(); }); });
  }

  /// The vtable (static storage, constant-initialized).
  static constexpr weir_discovery_vtable_t vtable = {
      .struct_size = sizeof(weir_discovery_vtable_t),
      .config_new = &detail::config_new<C>,
      .config_destroy = &detail::config_destroy<C>,
      .instance_new = &detail::instance_new<C, I, weir_discovery_instance_t>,
      .instance_destroy = &detail::instance_destroy<I, weir_discovery_instance_t>,
      .start = &start,
  };
};

/// A discovery module named `name`.
template <class C, class I> consteval weir_module_t discovery_module(const char* name) {
  detail::check_module_name(name);
  return weir_module_t{sizeof(weir_module_t), WEIR_KIND_DISCOVERY, name,
                       &DiscoveryModule<C, I>::vtable};
}

// --- kind: health ------------------------------------------------------------------------------

/// Requirements on a health Instance.
template <class I>
concept HealthInstance = requires(I& i, const std::vector<Target>& t) {
  i.on_targets(t);
};

/// The C vtable of a health module made of Config C and Instance I.
template <class C, class I> struct HealthModule {
  static_assert(detail::ConfigType<C>,
                "Config must be constructible from weir::sdk::ConfigReader&");
  static_assert(HealthInstance<I>,
                "a health Instance needs on_targets(const std::vector<Target>&)");
  using Box = detail::InstanceBox<I>;

  static weir_status_t on_targets(weir_health_instance_t* inst, const weir_target_t* targets,
                                  size_t n) noexcept {
    Box* box = detail::unbox<I>(inst);
    return detail::guard_status(box->host, "on_targets", [&] {
      const std::vector<Target> copy = detail::read_targets(targets, n);
      return detail::status_of([&] { return box->value.on_targets(copy); });
    });
  }

  static void on_observation(weir_health_instance_t* inst,
                             const weir_health_observation_t* obs) noexcept {
    if constexpr (detail::HasOnObservation<I>) {
      Box* box = detail::unbox<I>(inst);
      if (obs == nullptr) {
        return;
      }
      detail::guard_void(box->host, "on_observation", [&] {
        Observation o;
        o.target_id = view(obs->target_id);
        o.status = obs->status;
        o.connect_failed = obs->connect_failed != 0;
        if (detail::covers(obs->struct_size, offsetof(weir_health_observation_t, timed_out),
                           sizeof(obs->timed_out))) {
          o.timed_out = obs->timed_out != 0;
        }
        if (detail::covers(obs->struct_size, offsetof(weir_health_observation_t, duration_ns),
                           sizeof(obs->duration_ns))) {
          o.duration_ns = obs->duration_ns;
        }
        box->value.on_observation(o);
      });
    }
  }

  /// The vtable (static storage, constant-initialized).
  static constexpr weir_health_vtable_t vtable = {
      .struct_size = sizeof(weir_health_vtable_t),
      .config_new = &detail::config_new<C>,
      .config_destroy = &detail::config_destroy<C>,
      .instance_new = &detail::instance_new<C, I, weir_health_instance_t>,
      .instance_destroy = &detail::instance_destroy<I, weir_health_instance_t>,
      .on_targets = &on_targets,
      .on_observation = detail::HasOnObservation<I> ? &on_observation : nullptr,
  };
};

/// A health module named `name`.
template <class C, class I> consteval weir_module_t health_module(const char* name) {
  detail::check_module_name(name);
  return weir_module_t{sizeof(weir_module_t), WEIR_KIND_HEALTH, name, &HealthModule<C, I>::vtable};
}

// --- kind: filter ------------------------------------------------------------------------------

/// Requirements on a filter Instance: at least one of the two hooks.
template <class I>
concept FilterInstance = detail::HasOnRequest<I> || detail::HasOnResponse<I>;

/// The C vtable of a filter module made of Config C and Instance I.
template <class C, class I> struct FilterModule {
  static_assert(detail::ConfigType<C>,
                "Config must be constructible from weir::sdk::ConfigReader&");
  static_assert(FilterInstance<I>, "a filter Instance needs on_request(Http&) and/or "
                                   "on_response(Http&)");
  using Box = detail::InstanceBox<I>;

  template <class F>
  static weir_filter_result_t guard(const Host& host, const char* hook, F&& fn) noexcept {
    try {
      return std::forward<F>(fn)();
    } catch (const std::exception& e) {
      detail::log_exception(host, hook, e.what());
    } catch (...) {
      detail::log_exception(host, hook, "unknown exception (not derived from std::exception)");
    }
    return WEIR_FILTER_FAILED;
  }

  static weir_filter_result_t on_request(weir_filter_instance_t* inst, weir_http_t* http) noexcept {
    if constexpr (detail::HasOnRequest<I>) {
      Box* box = detail::unbox<I>(inst);
      return guard(box->host, "on_request", [&] {
        Http h(box->host.api(), http);
        return detail::filter_result_of([&] { return box->value.on_request(h); });
      });
    } else {
      return WEIR_FILTER_CONTINUE;
    }
  }

  static weir_filter_result_t on_response(weir_filter_instance_t* inst,
                                          weir_http_t* http) noexcept {
    if constexpr (detail::HasOnResponse<I>) {
      Box* box = detail::unbox<I>(inst);
      return guard(box->host, "on_response", [&] {
        Http h(box->host.api(), http);
        return detail::filter_result_of([&] { return box->value.on_response(h); });
      });
    } else {
      return WEIR_FILTER_CONTINUE;
    }
  }

  /// The vtable (static storage, constant-initialized).
  static constexpr weir_filter_vtable_t vtable = {
      .struct_size = sizeof(weir_filter_vtable_t),
      .config_new = &detail::config_new<C>,
      .config_destroy = &detail::config_destroy<C>,
      .instance_new = &detail::instance_new<C, I, weir_filter_instance_t>,
      .instance_destroy = &detail::instance_destroy<I, weir_filter_instance_t>,
      .on_request = detail::HasOnRequest<I> ? &on_request : nullptr,
      .on_response = detail::HasOnResponse<I> ? &on_response : nullptr,
  };
};

/// A filter module named `name`.
template <class C, class I> consteval weir_module_t filter_module(const char* name) {
  detail::check_module_name(name);
  return weir_module_t{sizeof(weir_module_t), WEIR_KIND_FILTER, name, &FilterModule<C, I>::vtable};
}

// --- kind: certificates ------------------------------------------------------------------------

/// Requirements on a certificate provider Instance.
template <class I>
concept CertsInstance = requires(I& i) {
  i.start();
};

/// The C vtable of a certificate provider module made of Config C and Instance I.
template <class C, class I> struct CertsModule {
  static_assert(detail::ConfigType<C>,
                "Config must be constructible from weir::sdk::ConfigReader&");
  static_assert(CertsInstance<I>, "a certs Instance needs start()");
  using Box = detail::InstanceBox<I>;

  static weir_status_t start(weir_certs_instance_t* inst) noexcept {
    Box* box = detail::unbox<I>(inst);
    return detail::guard_status(
        box->host, "start", [&] { return detail::status_of([&] { return box->value.start(); }); });
  }

  /// The vtable (static storage, constant-initialized).
  static constexpr weir_certs_vtable_t vtable = {
      .struct_size = sizeof(weir_certs_vtable_t),
      .config_new = &detail::config_new<C>,
      .config_destroy = &detail::config_destroy<C>,
      .instance_new = &detail::instance_new<C, I, weir_certs_instance_t>,
      .instance_destroy = &detail::instance_destroy<I, weir_certs_instance_t>,
      .start = &start,
  };
};

/// A certificate provider module named `name`.
template <class C, class I> consteval weir_module_t certs_module(const char* name) {
  detail::check_module_name(name);
  return weir_module_t{sizeof(weir_module_t), WEIR_KIND_CERTS, name, &CertsModule<C, I>::vtable};
}

} // namespace weir::sdk

/// Define the plugin: its descriptor (stamped with the WEIR_ABI_MAJOR/MINOR this file is compiled
/// with), its module list (the remaining arguments, made with weir::sdk::*_module<Config,
/// Instance>("name")) and the exported entry point (WEIR_PLUGIN_ENTRY of abi.h). Use once per
/// plugin, at namespace scope. Everything is constant-initialized: the entry neither allocates nor
/// has side effects.
///
///   WEIR_SDK_PLUGIN("lb-round-robin", "0.1.0",
///                   weir::sdk::lb_module<weir::sdk::NoConfig, RoundRobin>("round-robin"))
#define WEIR_SDK_PLUGIN(plugin_name, plugin_version, ...)                                          \
  namespace {                                                                                      \
  constexpr weir_module_t weir_sdk_modules_[] = {__VA_ARGS__};                                     \
  static_assert(::weir::sdk::detail::unique_modules(weir_sdk_modules_),                            \
                "two modules of the same kind share a name");                                      \
  constexpr weir_plugin_descriptor_t weir_sdk_descriptor_ = {sizeof(weir_plugin_descriptor_t),     \
                                                             WEIR_ABI_MAJOR,                       \
                                                             WEIR_ABI_MINOR,                       \
                                                             plugin_name,                          \
                                                             plugin_version,                       \
                                                             weir_sdk_modules_,                    \
                                                             std::size(weir_sdk_modules_)};        \
  }                                                                                                \
  WEIR_PLUGIN_ENTRY {                                                                              \
    return &weir_sdk_descriptor_;                                                                  \
  }
