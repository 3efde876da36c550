// weir plugin SDK: a fake host for unit-testing plugins without weir (header-only, C++20).
//
// It implements every function of weir_host_api_t in memory, loads a plugin either from a linked
// entry function or from a built shared object (dlopen, the way a third party tests its binary),
// and drives modules of every kind:
//
//   weir::testing::FakeHost host;
//   auto plugin = host.load_library("build/lb-round-robin.so");       // or host.load(&entry)
//   auto cfg = host.configure(plugin.module(WEIR_KIND_LB, "round-robin"),
//                             FakeConfig::table({{"use", "round-robin"}}), "upstreams.app.lb");
//   REQUIRE(cfg.ok());
//   auto lb = cfg.lb();
//   lb.set_targets({{"10.0.0.1:80", 5}, {"10.0.0.2:80"}});
//   auto index = lb.pick();
//
// Everything the plugin tells the host is recorded for assertions: configuration errors with their
// key path, log lines, published target sets, health reports, installed and removed certificates,
// timers (fired manually with fire_due()), probes, fetches and DNS queries (ABI 1.2: they stay
// pending until the test completes them with complete_probe() / complete_fetch() / fail_fetch() /
// answer_dns() / fail_dns()), local responses and header edits (FakeHttp), and API misuse (calls
// the real host would refuse or that break the ABI rules, e.g. reading the configuration after
// config_new).
//
//   auto health = cfg.health();
//   health.set_targets({{"10.0.0.1:80"}});
//   host.fire_due(5000);                                  // the checker's timer starts a probe
//   auto probes = host.pending_probes();
//   host.complete_probe(probes.at(0).id, false, "connection refused");
//
//   auto dns = cfg.discovery();                           // a discovery plugin asks DNS
//   dns.start();
//   auto query = host.pending_dns().at(0);                // name, type (WEIR_DNS_A, ...)
//   host.answer_dns(query.id, {FakeDnsRecord::a("10.0.0.1", 30)});
//   host.fail_dns(other.id, WEIR_ERROR, "timed out");     // or WEIR_ERROR_NOT_FOUND (NXDOMAIN)
//
// Single-threaded. A FakeHost must outlive every plugin, configuration and instance it made.
// Only the C ABI headers are used, so it also tests plugins not written with sdk.hpp. Link with
// ${CMAKE_DL_LIBS} (the CMake target weir::sdk_testing does it).
#pragma once

#include "weir/abi.h"
#include "weir/certs.h"
#include "weir/discovery.h"
#include "weir/filter.h"
#include "weir/health.h"
#include "weir/lb.h"

#include <dlfcn.h>

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::testing {

namespace detail {
inline std::string_view sv(weir_str_t s) noexcept {
  return s.data != nullptr ? std::string_view(s.data, s.len) : std::string_view();
}
inline weir_str_t ws(std::string_view s) noexcept {
  return weir_str_t{s.data(), s.size()};
}
inline char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
inline bool ieq(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}
inline bool token(std::string_view s) noexcept {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}
inline bool field_value(std::string_view s) noexcept {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}
inline bool bare_key(std::string_view k) noexcept {
  if (k.empty()) {
    return false;
  }
  for (char c : k) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}
inline const char* kind_name(weir_kind_t k) noexcept {
  switch (k) {
  case WEIR_KIND_LB:
    return "lb";
  case WEIR_KIND_DISCOVERY:
    return "discovery";
  case WEIR_KIND_HEALTH:
    return "health";
  case WEIR_KIND_FILTER:
    return "filter";
  case WEIR_KIND_CERTS:
    return "certs";
  default:
    return "unknown";
  }
}
/// The head every vtable starts with.
struct VtableHead {
  WEIR_VTABLE_HEAD;
};
} // namespace detail

// ================================================================================================
// Configuration values
// ================================================================================================

/// An in-memory configuration value (a TOML value) used to build a plugin's configuration:
///
///   FakeConfig::table({{"use", "static"},
///                      {"targets", FakeConfig::array({"127.0.0.1:9001",
///                                  FakeConfig::table({{"address", "127.0.0.1:9002"},
///                                                     {"weight", 2}})})}})
///
/// Strings, integers, floats and booleans convert implicitly.
class FakeValue {
public:
  /// The TOML type of the value.
  enum class Type { String, Integer, Float, Boolean, Array, Table };

  /// A string.
  FakeValue(const char* s) : type_(Type::String), string_(s) {}
  /// A string.
  FakeValue(std::string s) : type_(Type::String), string_(std::move(s)) {}
  /// A string.
  FakeValue(std::string_view s) : type_(Type::String), string_(s) {}
  /// An integer.
  template <std::integral T>
  requires(!std::same_as<T, bool>) FakeValue(T v)
      : type_(Type::Integer), integer_(static_cast<int64_t>(v)) {}
  /// A boolean.
  FakeValue(bool b) : type_(Type::Boolean), boolean_(b) {}
  /// A float.
  template <std::floating_point T>
  FakeValue(T v) : type_(Type::Float), floating_(static_cast<double>(v)) {}

  /// A table; keys keep the given order (TOML file order).
  static FakeValue table(std::initializer_list<std::pair<std::string, FakeValue>> entries) {
    return table(std::vector<std::pair<std::string, FakeValue>>(entries));
  }
  /// A table from a vector.
  static FakeValue table(std::vector<std::pair<std::string, FakeValue>> entries) {
    FakeValue v(Type::Table);
    v.entries_ = std::move(entries);
    return v;
  }
  /// An array.
  static FakeValue array(std::initializer_list<FakeValue> items) {
    return array(std::vector<FakeValue>(items));
  }
  /// An array from a vector.
  static FakeValue array(std::vector<FakeValue> items) {
    FakeValue v(Type::Array);
    v.items_ = std::move(items);
    return v;
  }

  /// The value's type.
  [[nodiscard]] Type type() const noexcept { return type_; }
  /// String payload.
  [[nodiscard]] const std::string& string() const noexcept { return string_; }
  /// Integer payload.
  [[nodiscard]] int64_t integer() const noexcept { return integer_; }
  /// Float payload.
  [[nodiscard]] double floating() const noexcept { return floating_; }
  /// Boolean payload.
  [[nodiscard]] bool boolean() const noexcept { return boolean_; }
  /// Array elements.
  [[nodiscard]] const std::vector<FakeValue>& items() const noexcept { return items_; }
  /// Table entries in order.
  [[nodiscard]] const std::vector<std::pair<std::string, FakeValue>>& entries() const noexcept {
    return entries_;
  }

private:
  explicit FakeValue(Type t) : type_(t) {}

  Type type_;
  std::string string_;
  int64_t integer_ = 0;
  double floating_ = 0;
  bool boolean_ = false;
  std::vector<FakeValue> items_;
  std::vector<std::pair<std::string, FakeValue>> entries_;
};

/// The builder name used in tests: FakeConfig::table(...), FakeConfig::array(...).
using FakeConfig = FakeValue;

// ================================================================================================
// Targets, records
// ================================================================================================

/// A target as a test hands it to a load balancer or health checker, or as a plugin published it.
struct FakeTarget {
  FakeTarget() = default;
  /// A target; `{"10.0.0.1:80", 5}`, `{"10.0.0.1:80", 1, false, "id"}` or, with the fields of
  /// ABI 1.2, `{"10.0.0.1:80", 1, true, "id", 10, {{"key", "value"}}}`.
  FakeTarget(std::string address_, uint32_t weight_ = 1, bool healthy_ = true, std::string id_ = {},
             uint32_t priority_ = 0,
             std::vector<std::pair<std::string, std::string>> metadata_ = {})
      : address(std::move(address_)), weight(weight_), healthy(healthy_), id(std::move(id_)),
        priority(priority_), metadata(std::move(metadata_)) {}

  std::string address;
  uint32_t weight = 1;
  bool healthy = true;
  std::string id;
  uint32_t priority = 0; ///< ABI 1.2; 0 from a plugin built for an older minor
  std::vector<std::pair<std::string, std::string>> metadata; ///< ABI 1.2: key, value, in order

  friend bool operator==(const FakeTarget&, const FakeTarget&) = default;
};

/// A configuration error reported by a plugin.
struct FakeConfigError {
  std::string path;    ///< key path of the node, e.g. "upstreams.app.discovery.targets[1]"
  std::string message; ///< the plugin's message
};

/// A log line.
struct FakeLog {
  std::string source; ///< name of the plugin object ("round-robin#2", "static/config")
  weir_log_level_t level = WEIR_LOG_INFO;
  std::string message;
};

/// A health report (api->report_health).
struct FakeHealthReport {
  std::string source;
  std::string target_id;
  bool healthy = false;
  std::string reason;
};

/// A certificate a plugin installed (api->install_certificate). The fake host does not parse it:
/// it only checks that both texts look like PEM (a "-----BEGIN CERTIFICATE-----" block and a
/// "PRIVATE KEY-----" block), so tests can pass any well-marked text.
struct FakeCertificate {
  std::string source;   ///< the plugin object that installed it ("cert-installer#1")
  std::string cert_pem; ///< the chain, as given
  std::string key_pem;  ///< the key, as given
};

/// A certificate removal a plugin asked for (api->remove_certificate).
struct FakeCertificateRemoval {
  std::string source; ///< the plugin object that asked
  std::string name;   ///< the name, as given
};

// ================================================================================================
// HTTP exchange
// ================================================================================================

/// An ordered header block with case-insensitive names.
class FakeHeaders {
public:
  FakeHeaders() = default;
  /// Headers in order.
  FakeHeaders(std::initializer_list<std::pair<std::string, std::string>> list) : list_(list) {}

  /// Value of the `index`-th header named `name`.
  [[nodiscard]] std::optional<std::string> get(std::string_view name, size_t index = 0) const {
    for (const auto& [n, v] : list_) {
      if (detail::ieq(n, name) && index-- == 0) {
        return v;
      }
    }
    return std::nullopt;
  }
  /// Every value of `name`, in order.
  [[nodiscard]] std::vector<std::string> get_all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : list_) {
      if (detail::ieq(n, name)) {
        out.push_back(v);
      }
    }
    return out;
  }
  /// Number of headers named `name`.
  [[nodiscard]] size_t count(std::string_view name) const {
    return static_cast<size_t>(std::count_if(
        list_.begin(), list_.end(), [name](const auto& h) { return detail::ieq(h.first, name); }));
  }
  /// True when a header named `name` exists.
  [[nodiscard]] bool has(std::string_view name) const { return count(name) != 0; }
  /// Replace every `name` header by one, at the position of the first (or at the end).
  void set(std::string_view name, std::string_view value) {
    auto it = std::find_if(list_.begin(), list_.end(),
                           [name](const auto& h) { return detail::ieq(h.first, name); });
    if (it == list_.end()) {
      list_.emplace_back(std::string(name), std::string(value));
      return;
    }
    it->first = std::string(name);
    it->second = std::string(value);
    const auto first = it - list_.begin();
    list_.erase(std::remove_if(list_.begin() + first + 1, list_.end(),
                               [name](const auto& h) { return detail::ieq(h.first, name); }),
                list_.end());
  }
  /// Append a header.
  void add(std::string_view name, std::string_view value) {
    list_.emplace_back(std::string(name), std::string(value));
  }
  /// Remove every `name` header.
  void remove(std::string_view name) {
    list_.erase(std::remove_if(list_.begin(), list_.end(),
                               [name](const auto& h) { return detail::ieq(h.first, name); }),
                list_.end());
  }
  /// Remove everything.
  void clear() { list_.clear(); }
  /// All headers in order (names as last written).
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& all() const noexcept {
    return list_;
  }
  /// Number of headers.
  [[nodiscard]] size_t size() const noexcept { return list_.size(); }

private:
  std::vector<std::pair<std::string, std::string>> list_;
};

/// A response a filter sent with api->http_respond.
struct FakeLocalResponse {
  uint32_t status = 0;
  std::string content_type;
  std::string body;
};

/// One HTTP exchange. Fill the request fields, hand it to a filter or load balancer, then inspect
/// the headers and `local_response`. Pass `handle()` where the ABI wants a weir_http_t*.
class FakeHttp {
public:
  /// Which hook stage the exchange is in (set by FakeFilter; Any allows everything).
  enum class Stage { Any, Request, Response };

  std::string method = "GET";
  std::string path = "/";
  std::string query;
  std::string host = "example.test";
  std::string client_ip = "192.0.2.10";
  uint16_t client_port = 40000;
  uint32_t status = 0; ///< response status, 0 before a response exists
  FakeHeaders request_headers;
  FakeHeaders response_headers;
  std::optional<FakeLocalResponse> local_response; ///< set by api->http_respond
  Stage stage = Stage::Any;
  std::vector<std::string> misuse; ///< ABI rule violations seen on this exchange

  /// The handle to pass to ABI functions.
  [[nodiscard]] weir_http_t* handle() noexcept { return reinterpret_cast<weir_http_t*>(this); }
  /// The exchange behind a handle.
  static FakeHttp* from(weir_http_t* h) noexcept { return reinterpret_cast<FakeHttp*>(h); }

  /// Simulate an upstream response: status and headers.
  FakeHttp& upstream_response(uint32_t code, FakeHeaders headers = {}) {
    status = code;
    response_headers = std::move(headers);
    return *this;
  }
  /// The header block `which`.
  FakeHeaders* headers(weir_headers_which_t which) noexcept {
    if (which == WEIR_HEADERS_REQUEST) {
      return &request_headers;
    }
    if (which == WEIR_HEADERS_RESPONSE) {
      return &response_headers;
    }
    return nullptr;
  }
};

// ================================================================================================
// Outbound checks and requests (ABI 1.2)
// ================================================================================================

/// What became of a probe or fetch a plugin started.
enum class FakeRequestState {
  Pending,   ///< running: waiting for the test to complete it
  Completed, ///< completed by the test (complete_probe, complete_fetch, fail_fetch)
  Cancelled, ///< cancelled by the plugin (request_cancel)
  Abandoned, ///< its object was destroyed while it ran, so the host cancelled it (as weir does)
};

/// A connection probe a plugin started (api->probe_start), as the host copied it.
struct FakeProbe {
  weir_request_id_t id = 0;
  std::string source;                      ///< the plugin object that started it ("tcp#3")
  std::string address;                     ///< as given
  weir_probe_kind_t kind = WEIR_PROBE_TCP; ///< WEIR_PROBE_TCP or WEIR_PROBE_TLS
  uint64_t timeout_ms = 0;                 ///< as given (0 means the host's default, 5000)
  uint64_t started_ns = 0;                 ///< the fake clock when it started
  FakeRequestState state = FakeRequestState::Pending;
};

/// An HTTP request a plugin started (api->fetch_start), as the host copied it.
struct FakeFetch {
  weir_request_id_t id = 0;
  std::string source;      ///< the plugin object that started it
  std::string method;      ///< as given ("" means GET)
  std::string url;         ///< as given
  std::string connect_to;  ///< as given ("" means the URL's host and port)
  FakeHeaders headers;     ///< the extra request headers, in order, without those weir drops
                           ///< (Host, Content-Length, Transfer-Encoding, Connection: the host's)
  std::string body;        ///< the request body
  uint64_t timeout_ms = 0; ///< as given (0 means the host's default, 10000)
  uint64_t max_body = 0;   ///< as given (0 means 65536)
  uint32_t flags = 0;      ///< WEIR_FETCH_*
  std::string ca_file;     ///< as given
  uint64_t started_ns = 0; ///< the fake clock when it started
  FakeRequestState state = FakeRequestState::Pending;

  /// The method the host would send: `method`, or "GET" when empty.
  [[nodiscard]] std::string effective_method() const { return method.empty() ? "GET" : method; }
};

/// A DNS query a plugin started (api->dns_query), as the host copied it.
struct FakeDnsQuery {
  weir_request_id_t id = 0;
  std::string source;                ///< the plugin object that started it
  std::string name;                  ///< as given (a trailing dot kept)
  weir_dns_type_t type = WEIR_DNS_A; ///< WEIR_DNS_A, WEIR_DNS_AAAA, WEIR_DNS_SRV, ...
  uint64_t started_ns = 0;           ///< the fake clock when it started
  FakeRequestState state = FakeRequestState::Pending;
};

/// One answer record a test hands to answer_dns(). The host's rules are applied when it is
/// delivered: `name` and `target` are lowercased and lose a trailing dot, and an empty `name`
/// becomes the query's name.
struct FakeDnsRecord {
  weir_dns_type_t type = WEIR_DNS_A;
  uint32_t ttl = 300; ///< seconds
  std::string name;   ///< owner; empty = the query's name
  std::string address;
  std::string target;
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::vector<std::string> txt;

  /// An A record.
  static FakeDnsRecord a(std::string address, uint32_t ttl = 300, std::string name = {}) {
    FakeDnsRecord r;
    r.type = WEIR_DNS_A;
    r.address = std::move(address);
    r.ttl = ttl;
    r.name = std::move(name);
    return r;
  }
  /// An AAAA record.
  static FakeDnsRecord aaaa(std::string address, uint32_t ttl = 300, std::string name = {}) {
    FakeDnsRecord r = a(std::move(address), ttl, std::move(name));
    r.type = WEIR_DNS_AAAA;
    return r;
  }
  /// An SRV record (RFC 2782 field order).
  static FakeDnsRecord srv(uint16_t priority, uint16_t weight, uint16_t port, std::string target,
                           uint32_t ttl = 300, std::string name = {}) {
    FakeDnsRecord r;
    r.type = WEIR_DNS_SRV;
    r.priority = priority;
    r.weight = weight;
    r.port = port;
    r.target = std::move(target);
    r.ttl = ttl;
    r.name = std::move(name);
    return r;
  }
  /// A PTR record pointing to `target`.
  static FakeDnsRecord ptr(std::string target, uint32_t ttl = 300, std::string name = {}) {
    FakeDnsRecord r;
    r.type = WEIR_DNS_PTR;
    r.target = std::move(target);
    r.ttl = ttl;
    r.name = std::move(name);
    return r;
  }
  /// A TXT record of the character-strings `strings`.
  static FakeDnsRecord text(std::vector<std::string> strings, uint32_t ttl = 300,
                            std::string name = {}) {
    FakeDnsRecord r;
    r.type = WEIR_DNS_TXT;
    r.txt = std::move(strings);
    r.ttl = ttl;
    r.name = std::move(name);
    return r;
  }
};

/// A passive observation as the host delivers it to a health checker (FakeHealth::observe).
struct FakeObservation {
  std::string target_id;       ///< id (or address) of the target
  uint32_t status = 0;         ///< HTTP status, 0 when no response was received
  bool connect_failed = false; ///< the connection (or its TLS handshake) could not be made
  bool timed_out = false;      ///< no response head within the response timeout (ABI 1.2)
  uint64_t duration_ns = 0;    ///< from the start of the attempt to its end (ABI 1.2)
  /// struct_size stamped on the observation: 0 means sizeof(weir_health_observation_t); use
  /// offsetof(weir_health_observation_t, timed_out) to act as a host older than ABI 1.2.
  uint32_t struct_size = 0;
};

// ================================================================================================
// The host
// ================================================================================================

class FakeHost;
class FakePlugin;
class FakeConfigured;

namespace detail {

/// A configuration node handed to the plugin (weir_config_node_t*).
struct FakeNode {
  FakeHost* host = nullptr;
  weir_config_type_t type = WEIR_CONFIG_NONE;
  std::string string;
  int64_t integer = 0;
  double floating = 0;
  bool boolean = false;
  std::vector<std::unique_ptr<FakeNode>> items;
  std::vector<std::pair<std::string, std::unique_ptr<FakeNode>>> entries;
  std::string path;
};

/// A plugin object's context (weir_host_ctx_t*).
struct FakeCtx {
  FakeHost* host = nullptr;
  std::string name;
  weir_kind_t kind = 0;
  bool is_config = false;
  bool alive = true;
  std::vector<std::vector<FakeTarget>> published;
};

struct FakeTimer {
  weir_timer_id_t id;
  FakeCtx* ctx;
  uint64_t due_ns;
  weir_timer_cb cb;
  void* user;
};

/// What a running request is.
enum class FakeRequestKind { Probe, Fetch, Dns };

/// A running probe, fetch or DNS query: where to deliver its result.
struct FakeRequestSlot {
  weir_request_id_t id;
  FakeCtx* ctx;
  weir_probe_cb probe_cb; ///< set for a probe
  weir_fetch_cb fetch_cb; ///< set for a fetch
  void* user;
  weir_dns_cb dns_cb = nullptr; ///< set for a DNS query

  [[nodiscard]] FakeRequestKind kind() const noexcept {
    return probe_cb != nullptr
               ? FakeRequestKind::Probe
               : (fetch_cb != nullptr ? FakeRequestKind::Fetch : FakeRequestKind::Dns);
  }
};

/// A DNS name as the host reports it: lowercase, without the trailing dot.
inline std::string dns_normal(std::string_view name) {
  if (!name.empty() && name.back() == '.' && name != ".") {
    name.remove_suffix(1);
  }
  std::string out(name);
  for (char& c : out) {
    c = lower(c);
  }
  return out;
}

/// Why the host would refuse `name` for a query (empty when it is acceptable): empty, longer than
/// 253 characters, an empty label or a label longer than 63 bytes (a "\." or "\DDD" escape
/// counting as one byte, as in RFC 1035 presentation format), or a control character.
inline std::string dns_name_problem(std::string_view name) {
  if (!name.empty() && name.back() == '.' && (name.size() < 2 || name[name.size() - 2] != '\\')) {
    name.remove_suffix(1);
  }
  if (name.empty()) {
    return "empty name";
  }
  size_t label = 0;
  size_t total = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      return "control character in name";
    }
    if (c == '.') {
      if (label == 0) {
        return "empty label in name";
      }
      label = 0;
      ++total;
      continue;
    }
    if (c == '\\' && i + 1 < name.size()) {
      const auto digit = [&name](size_t k) { return name[k] >= '0' && name[k] <= '9'; };
      const bool decimal = i + 3 < name.size() && digit(i + 1) && digit(i + 2) && digit(i + 3);
      i += decimal ? 3 : 1;
    }
    ++label;
    ++total;
    if (label > 63) {
      return "label longer than 63 bytes";
    }
  }
  if (label == 0) {
    return "empty label in name";
  }
  if (total > 253) {
    return "name longer than 253 characters";
  }
  return {};
}

/// A loaded library (or a linked entry) kept alive by everything made from it.
struct Library {
  void* handle = nullptr;
  ~Library() {
    if (handle != nullptr) {
      dlclose(handle);
    }
  }
};

} // namespace detail

/// A module as found in a plugin (or made directly with sdk.hpp's *_module functions).
struct FakeModule {
  weir_module_t module{};
  std::shared_ptr<detail::Library> library; ///< NULL for linked entries
};

/// A loaded plugin: its descriptor, the modules it offers, and the checks the host would do.
class FakePlugin {
public:
  /// The descriptor returned by the entry point.
  [[nodiscard]] const weir_plugin_descriptor_t* descriptor() const noexcept { return descriptor_; }

  /// The module of `kind` named `name`; throws std::out_of_range when absent.
  [[nodiscard]] FakeModule module(weir_kind_t kind, std::string_view name) const {
    if (descriptor_ != nullptr && descriptor_->modules != nullptr) {
      for (size_t i = 0; i < descriptor_->module_count; ++i) {
        const weir_module_t& m = descriptor_->modules[i];
        if (m.kind == kind && m.name != nullptr && name == m.name) {
          return FakeModule{m, library_};
        }
      }
    }
    throw std::out_of_range("plugin has no " + std::string(detail::kind_name(kind)) +
                            " module named '" + std::string(name) + "'");
  }

  /// What the host would refuse in this plugin (empty when it is loadable): ABI version, descriptor
  /// and module fields, module names, vtable sizes and missing required hooks.
  [[nodiscard]] std::vector<std::string> problems() const {
    std::vector<std::string> out;
    const weir_plugin_descriptor_t* d = descriptor_;
    if (d == nullptr) {
      out.emplace_back("entry point returned NULL");
      return out;
    }
    if (d->abi_major != WEIR_ABI_MAJOR) {
      out.push_back("built for ABI major " + std::to_string(d->abi_major) + ", host has " +
                    std::to_string(WEIR_ABI_MAJOR));
    } else if (d->abi_minor > WEIR_ABI_MINOR) {
      out.push_back("built for ABI " + std::to_string(d->abi_major) + "." +
                    std::to_string(d->abi_minor) + ", newer than the host's " +
                    std::to_string(WEIR_ABI_MAJOR) + "." + std::to_string(WEIR_ABI_MINOR));
    }
    if (d->struct_size < offsetof(weir_plugin_descriptor_t, module_count) + sizeof(size_t)) {
      out.emplace_back("descriptor struct_size too small");
      return out;
    }
    if (d->name == nullptr || *d->name == '\0') {
      out.emplace_back("descriptor has no name");
    }
    if (d->version == nullptr) {
      out.emplace_back("descriptor has no version");
    }
    if (d->module_count > 0 && d->modules == nullptr) {
      out.emplace_back("descriptor lists modules but modules is NULL");
      return out;
    }
    for (size_t i = 0; i < d->module_count; ++i) {
      const weir_module_t& m = d->modules[i];
      const std::string where =
          "module " + std::to_string(i) + " ('" + std::string(m.name ? m.name : "(null)") + "')";
      if (m.struct_size < sizeof(weir_module_t)) {
        out.push_back(where + ": struct_size too small");
        continue;
      }
      if (m.name == nullptr || *m.name == '\0' ||
          std::string_view(m.name).find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") !=
              std::string_view::npos) {
        out.push_back(where + ": name must match [a-z0-9-]+");
      }
      for (size_t j = 0; j < i; ++j) {
        const weir_module_t& o = d->modules[j];
        if (o.kind == m.kind && o.name != nullptr && m.name != nullptr &&
            std::strcmp(o.name, m.name) == 0) {
          out.push_back(where + ": duplicate module name");
        }
      }
      for (const std::string& p : vtable_problems(m)) {
        out.push_back(where + ": " + p);
      }
    }
    return out;
  }

  /// Problems of one module's vtable (kind, size, required hooks).
  static std::vector<std::string> vtable_problems(const weir_module_t& m) {
    std::vector<std::string> out;
    if (m.vtable == nullptr) {
      out.emplace_back("vtable is NULL");
      return out;
    }
    const auto* head = static_cast<const detail::VtableHead*>(m.vtable);
    auto need = [&](bool present, const char* hook) {
      if (!present) {
        out.push_back(std::string("required hook '") + hook + "' is NULL");
      }
    };
    auto check_size = [&](size_t size) {
      if (head->struct_size < size) {
        out.push_back("vtable struct_size " + std::to_string(head->struct_size) +
                      " is smaller than " + std::to_string(size));
        return false;
      }
      return true;
    };
    need(head->config_new != nullptr, "config_new");
    need(head->config_destroy != nullptr, "config_destroy");
    switch (m.kind) {
    case WEIR_KIND_LB: {
      const auto* vt = static_cast<const weir_lb_vtable_t*>(m.vtable);
      if (check_size(offsetof(weir_lb_vtable_t, on_start))) {
        need(vt->instance_new != nullptr, "instance_new");
        need(vt->instance_destroy != nullptr, "instance_destroy");
        need(vt->on_targets != nullptr, "on_targets");
        need(vt->pick != nullptr, "pick");
      }
      break;
    }
    case WEIR_KIND_DISCOVERY: {
      const auto* vt = static_cast<const weir_discovery_vtable_t*>(m.vtable);
      if (check_size(sizeof(weir_discovery_vtable_t))) {
        need(vt->instance_new != nullptr, "instance_new");
        need(vt->instance_destroy != nullptr, "instance_destroy");
        need(vt->start != nullptr, "start");
      }
      break;
    }
    case WEIR_KIND_HEALTH: {
      const auto* vt = static_cast<const weir_health_vtable_t*>(m.vtable);
      if (check_size(offsetof(weir_health_vtable_t, on_observation))) {
        need(vt->instance_new != nullptr, "instance_new");
        need(vt->instance_destroy != nullptr, "instance_destroy");
        need(vt->on_targets != nullptr, "on_targets");
      }
      break;
    }
    case WEIR_KIND_FILTER: {
      const auto* vt = static_cast<const weir_filter_vtable_t*>(m.vtable);
      if (check_size(offsetof(weir_filter_vtable_t, on_request))) {
        need(vt->instance_new != nullptr, "instance_new");
        need(vt->instance_destroy != nullptr, "instance_destroy");
      }
      break;
    }
    case WEIR_KIND_CERTS: {
      const auto* vt = static_cast<const weir_certs_vtable_t*>(m.vtable);
      if (check_size(sizeof(weir_certs_vtable_t))) {
        need(vt->instance_new != nullptr, "instance_new");
        need(vt->instance_destroy != nullptr, "instance_destroy");
        need(vt->start != nullptr, "start");
      }
      break;
    }
    default:
      out.push_back("unknown kind " + std::to_string(m.kind));
    }
    return out;
  }

private:
  friend class FakeHost;
  const weir_plugin_descriptor_t* descriptor_ = nullptr;
  std::shared_ptr<detail::Library> library_;
};

/// The fake host. See the file comment.
class FakeHost {
public:
  FakeHost() {
    api_.struct_size = sizeof(weir_host_api_t);
    api_.abi_major = WEIR_ABI_MAJOR;
    api_.abi_minor = WEIR_ABI_MINOR;
    api_.log = &FakeHost::api_log;
    api_.log_enabled = &FakeHost::api_log_enabled;
    api_.config_type = &FakeHost::api_config_type;
    api_.config_get = &FakeHost::api_config_get;
    api_.config_at = &FakeHost::api_config_at;
    api_.config_size = &FakeHost::api_config_size;
    api_.config_each = &FakeHost::api_config_each;
    api_.config_string = &FakeHost::api_config_string;
    api_.config_int = &FakeHost::api_config_int;
    api_.config_float = &FakeHost::api_config_float;
    api_.config_bool = &FakeHost::api_config_bool;
    api_.config_duration_ms = &FakeHost::api_config_duration_ms;
    api_.config_error = &FakeHost::api_config_error;
    api_.config_path = &FakeHost::api_config_path;
    api_.timer_start = &FakeHost::api_timer_start;
    api_.timer_cancel = &FakeHost::api_timer_cancel;
    api_.now_ns = &FakeHost::api_now_ns;
    api_.publish_targets = &FakeHost::api_publish_targets;
    api_.report_health = &FakeHost::api_report_health;
    api_.http_method = &FakeHost::api_http_method;
    api_.http_path = &FakeHost::api_http_path;
    api_.http_query = &FakeHost::api_http_query;
    api_.http_host = &FakeHost::api_http_host;
    api_.http_client_ip = &FakeHost::api_http_client_ip;
    api_.http_client_port = &FakeHost::api_http_client_port;
    api_.http_status = &FakeHost::api_http_status;
    api_.header_get = &FakeHost::api_header_get;
    api_.header_set = &FakeHost::api_header_set;
    api_.header_add = &FakeHost::api_header_add;
    api_.header_remove = &FakeHost::api_header_remove;
    api_.header_each = &FakeHost::api_header_each;
    api_.http_respond = &FakeHost::api_http_respond;
    api_.install_certificate = &FakeHost::api_install_certificate;
    api_.remove_certificate = &FakeHost::api_remove_certificate;
    api_.probe_start = &FakeHost::api_probe_start;
    api_.fetch_start = &FakeHost::api_fetch_start;
    api_.request_cancel = &FakeHost::api_request_cancel;
    api_.dns_query = &FakeHost::api_dns_query;
    current() = this;
    verbose_ = std::getenv("WEIR_FAKE_HOST_VERBOSE") != nullptr;
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;
  ~FakeHost() {
    if (current() == this) {
      current() = nullptr;
    }
  }

  // --- the API table -----------------------------------------------------------------------------

  /// The API table handed to plugins.
  [[nodiscard]] const weir_host_api_t* api() const noexcept { return &api_; }
  /// The API table, mutable (e.g. to simulate another host ABI version or a missing function).
  [[nodiscard]] weir_host_api_t& api_table() noexcept { return api_; }

  // --- loading -----------------------------------------------------------------------------------

  /// A plugin whose entry point is linked into the test (e.g. &weir_plugin_entry).
  FakePlugin load(weir_plugin_entry_fn entry) {
    FakePlugin p;
    p.descriptor_ = entry != nullptr ? entry() : nullptr;
    return p;
  }

  /// A built plugin shared object, loaded with dlopen as weir does. Throws std::runtime_error when
  /// the file cannot be loaded or exports no entry point. Check problems() before use.
  FakePlugin load_library(const std::string& path) {
    auto lib = std::make_shared<detail::Library>();
    lib->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib->handle == nullptr) {
      const char* err = dlerror();
      throw std::runtime_error("cannot load " + path + ": " + (err ? err : "unknown error"));
    }
    void* sym = dlsym(lib->handle, WEIR_PLUGIN_ENTRY_SYMBOL);
    if (sym == nullptr) {
      throw std::runtime_error(path + " does not export " WEIR_PLUGIN_ENTRY_SYMBOL);
    }
    FakePlugin p;
    p.library_ = lib;
    p.descriptor_ = std::bit_cast<weir_plugin_entry_fn>(sym)();
    return p;
  }

  // --- configuration -----------------------------------------------------------------------------

  /// Run the module's config_new on `cfg`, whose node gets the key path `path` (children get
  /// "path.key" and "path.key[i]"). Errors are recorded (config_errors()). See FakeConfigured.
  FakeConfigured configure(const FakeModule& module, const FakeValue& cfg,
                           const std::string& path = "test");
  /// Same, for a module value made directly (weir::sdk::filter_module<C, I>("name")).
  FakeConfigured configure(const weir_module_t& module, const FakeValue& cfg,
                           const std::string& path = "test");

  /// Every configuration error reported so far.
  [[nodiscard]] const std::vector<FakeConfigError>& config_errors() const noexcept {
    return config_errors_;
  }
  /// True when an error was reported at exactly `path` whose message contains `message_part`.
  [[nodiscard]] bool has_config_error(std::string_view path, std::string_view message_part) const {
    return std::any_of(config_errors_.begin(), config_errors_.end(), [&](const FakeConfigError& e) {
      return e.path == path && e.message.find(message_part) != std::string::npos;
    });
  }
  /// The errors as "path: message" lines (for assertion messages).
  [[nodiscard]] std::string config_errors_text() const {
    std::string out;
    for (const auto& e : config_errors_) {
      out += e.path + ": " + e.message + "\n";
    }
    return out;
  }

  // --- logs --------------------------------------------------------------------------------------

  /// Every log line, in order.
  [[nodiscard]] const std::vector<FakeLog>& logs() const noexcept { return logs_; }
  /// True when a line at `level` (any level when nullopt) contains `part`.
  [[nodiscard]] bool logged(std::string_view part,
                            std::optional<weir_log_level_t> level = std::nullopt) const {
    return std::any_of(logs_.begin(), logs_.end(), [&](const FakeLog& l) {
      return (!level || l.level == *level) && l.message.find(part) != std::string::npos;
    });
  }
  /// Lowest level reported as enabled by log_enabled (default: TRACE, everything).
  void set_log_level(weir_log_level_t level) noexcept { min_level_ = level; }
  /// The log lines as text (for assertion messages).
  [[nodiscard]] std::string logs_text() const {
    std::string out;
    for (const auto& l : logs_) {
      out += "[" + std::to_string(l.level) + "] " + l.source + ": " + l.message + "\n";
    }
    return out;
  }

  // --- time and timers ---------------------------------------------------------------------------

  /// The fake monotonic clock, nanoseconds.
  [[nodiscard]] uint64_t now_ns() const noexcept { return now_ns_; }
  /// Advance the clock by `advance_ms`, firing every timer that falls due on the way, in due order.
  /// While a callback runs the clock reads its due time, so a timer it starts is due relative to
  /// that moment (and fires in this same call if that is within the advance). Returns the number
  /// of callbacks run.
  size_t fire_due(uint64_t advance_ms = 0) {
    const uint64_t target = now_ns_ + advance_ms * 1'000'000u;
    size_t fired = 0;
    for (;;) {
      auto it = std::min_element(timers_.begin(), timers_.end(),
                                 [](const detail::FakeTimer& a, const detail::FakeTimer& b) {
                                   return a.due_ns != b.due_ns ? a.due_ns < b.due_ns : a.id < b.id;
                                 });
      if (it == timers_.end() || it->due_ns > target) {
        now_ns_ = target;
        return fired;
      }
      const detail::FakeTimer t = *it;
      timers_.erase(it);
      now_ns_ = std::max(now_ns_, t.due_ns);
      ++fired;
      t.cb(t.user);
    }
  }
  /// Timers started and neither fired nor cancelled.
  [[nodiscard]] size_t pending_timers() const noexcept { return timers_.size(); }
  /// Delay until the next pending timer is due, in ms (nullopt when none).
  [[nodiscard]] std::optional<uint64_t> next_timer_in_ms() const {
    if (timers_.empty()) {
      return std::nullopt;
    }
    uint64_t due = std::numeric_limits<uint64_t>::max();
    for (const auto& t : timers_) {
      due = std::min(due, t.due_ns);
    }
    return due > now_ns_ ? (due - now_ns_ + 999'999u) / 1'000'000u : 0;
  }

  // --- discovery and health ----------------------------------------------------------------------

  /// Every target set published by any discovery instance, in order.
  [[nodiscard]] const std::vector<std::vector<FakeTarget>>& published() const noexcept {
    return published_;
  }
  /// Every health report, in order.
  [[nodiscard]] const std::vector<FakeHealthReport>& health_reports() const noexcept {
    return health_reports_;
  }

  // --- certificates (ABI 1.1) --------------------------------------------------------------------

  /// Every certificate installed so far (calls that returned WEIR_OK), in order.
  [[nodiscard]] const std::vector<FakeCertificate>& certificate_installs() const noexcept {
    return certificate_installs_;
  }
  /// Every removal asked for (calls that returned WEIR_OK), in order.
  [[nodiscard]] const std::vector<FakeCertificateRemoval>& certificate_removals() const noexcept {
    return certificate_removals_;
  }
  /// Make the next install_certificate calls return `status` (WEIR_OK: accept and record, the
  /// default; anything else: refuse without recording, as the real host refuses a bad
  /// certificate).
  void set_install_certificate_status(weir_status_t status) noexcept { install_status_ = status; }
  /// Make the next remove_certificate calls return `status` (WEIR_OK by default; e.g.
  /// WEIR_ERROR_NOT_FOUND as the real host answers for a name no installed certificate lists).
  void set_remove_certificate_status(weir_status_t status) noexcept { remove_status_ = status; }

  // --- outbound checks and requests (ABI 1.2) ----------------------------------------------------

  /// Every probe started (probe_start returned an id), in order, with what became of it.
  [[nodiscard]] const std::vector<FakeProbe>& probes() const noexcept { return probes_; }
  /// Every fetch started (fetch_start returned an id), in order, with what became of it.
  [[nodiscard]] const std::vector<FakeFetch>& fetches() const noexcept { return fetches_; }
  /// The probes still running, in start order (copies).
  [[nodiscard]] std::vector<FakeProbe> pending_probes() const {
    std::vector<FakeProbe> out;
    std::copy_if(probes_.begin(), probes_.end(), std::back_inserter(out),
                 [](const FakeProbe& p) { return p.state == FakeRequestState::Pending; });
    return out;
  }
  /// The fetches still running, in start order (copies).
  [[nodiscard]] std::vector<FakeFetch> pending_fetches() const {
    std::vector<FakeFetch> out;
    std::copy_if(fetches_.begin(), fetches_.end(), std::back_inserter(out),
                 [](const FakeFetch& f) { return f.state == FakeRequestState::Pending; });
    return out;
  }
  /// Number of probes, fetches and DNS queries still running.
  [[nodiscard]] size_t pending_requests() const noexcept { return slots_.size(); }

  /// Finish the running probe `id`: connected when `ok`, else failed with `error` (e.g.
  /// "connection refused"; empty gives "connection refused"). The plugin's callback runs now,
  /// with duration_ns = the fake time since the probe started. Returns false, calling nothing,
  /// when `id` is not a running probe (never started, completed, cancelled or abandoned).
  bool complete_probe(weir_request_id_t id, bool ok = true, std::string_view error = {}) {
    const auto slot = take_slot(id, detail::FakeRequestKind::Probe);
    if (!slot) {
      return false;
    }
    FakeProbe& record = probe_record(id);
    record.state = FakeRequestState::Completed;
    const std::string err =
        ok ? std::string() : std::string(error.empty() ? "connection refused" : error);
    weir_probe_result_t r{};
    r.struct_size = sizeof(r);
    r.status = ok ? WEIR_OK : WEIR_ERROR;
    r.error = detail::ws(err);
    r.duration_ns = now_ns_ - record.started_ns;
    slot->probe_cb(slot->user, &r);
    return true;
  }
  /// Finish the running fetch `id` with a complete response: `status`, `headers` and `body`. The
  /// body is cut to the request's max_body (0 = 65536), which sets `truncated` as the host does;
  /// `truncated` forces the flag. The callback runs now; false when `id` is not a running fetch.
  bool complete_fetch(weir_request_id_t id, uint32_t status, const FakeHeaders& headers = {},
                      std::string_view body = {}, bool truncated = false) {
    return finish_fetch(id, WEIR_OK, {}, status, headers, body, truncated);
  }
  /// Finish the running fetch `id` without a (complete) response: WEIR_ERROR, `error` (e.g.
  /// "connection refused", "timed out"; empty gives "connection refused") and HTTP status 0.
  bool fail_fetch(weir_request_id_t id, std::string_view error = {}) {
    return finish_fetch(id, WEIR_ERROR, error.empty() ? "connection refused" : error, 0, {}, {},
                        false);
  }
  /// Why each probe_start / fetch_start / dns_query was refused for what it asked (an empty
  /// address, a URL that is not absolute http(s), a bad header, an invalid name, an unsupported
  /// record type, ...): it returned 0, as the real host does after logging. Calls that break the
  /// ABI rules (wrong caller, NULL or short struct, NULL callback) go to misuse().
  [[nodiscard]] const std::vector<std::string>& request_refusals() const noexcept {
    return refusals_;
  }
  /// While set, probe_start, fetch_start and dns_query return 0 (a host that cannot start them),
  /// recorded in request_refusals().
  void set_refuse_requests(bool refuse) noexcept { refuse_requests_ = refuse; }

  // --- DNS queries (ABI 1.2) ---------------------------------------------------------------------

  /// Every DNS query started (dns_query returned an id), in order, with what became of it.
  [[nodiscard]] const std::vector<FakeDnsQuery>& dns_queries() const noexcept {
    return dns_queries_;
  }
  /// The DNS queries still running, in start order (copies).
  [[nodiscard]] std::vector<FakeDnsQuery> pending_dns() const {
    std::vector<FakeDnsQuery> out;
    std::copy_if(dns_queries_.begin(), dns_queries_.end(), std::back_inserter(out),
                 [](const FakeDnsQuery& q) { return q.state == FakeRequestState::Pending; });
    return out;
  }
  /// Answer the running DNS query `id` (status WEIR_OK) with `records` (none: the name exists but
  /// has no record of the type) and `negative_ttl` (seconds; the SOA minimum of an empty answer,
  /// 0 = unknown). The records are delivered as given (the type is not checked against the
  /// query's, so tests can send odd answers), with the host's normalization of names (see
  /// FakeDnsRecord). The callback runs now; false when `id` is not a running DNS query.
  bool answer_dns(weir_request_id_t id, const std::vector<FakeDnsRecord>& records,
                  uint32_t negative_ttl = 0) {
    return finish_dns(id, WEIR_OK, {}, records, negative_ttl);
  }
  /// Finish the running DNS query `id` without an answer: `status` WEIR_ERROR_NOT_FOUND (the name
  /// does not exist, NXDOMAIN; `error` defaults to "no such name") or WEIR_ERROR (server failure,
  /// refused, timed out, malformed; `error` defaults to "server failure", pass "timed out" for a
  /// timeout). Throws std::invalid_argument for any other status (the ABI allows no other). The
  /// callback runs now; false when `id` is not a running DNS query.
  bool fail_dns(weir_request_id_t id, weir_status_t status = WEIR_ERROR,
                std::string_view error = {}, uint32_t negative_ttl = 0) {
    if (status != WEIR_ERROR && status != WEIR_ERROR_NOT_FOUND) {
      throw std::invalid_argument("fail_dns: status must be WEIR_ERROR or WEIR_ERROR_NOT_FOUND");
    }
    if (error.empty()) {
      error = status == WEIR_ERROR_NOT_FOUND ? "no such name" : "server failure";
    }
    return finish_dns(id, status, error, {}, negative_ttl);
  }

  // --- misuse ------------------------------------------------------------------------------------

  /// Calls that break the ABI rules (e.g. config functions after config_new, timers left pending
  /// at destroy, publishing from a non-discovery object). A correct plugin leaves this empty.
  [[nodiscard]] const std::vector<std::string>& misuse() const noexcept { return misuse_; }

  /// Forget recorded errors, logs, reports, misuse and finished probes, fetches and DNS queries
  /// (not timers, nor the requests still running).
  void clear_records() {
    config_errors_.clear();
    logs_.clear();
    published_.clear();
    health_reports_.clear();
    certificate_installs_.clear();
    certificate_removals_.clear();
    misuse_.clear();
    refusals_.clear();
    std::erase_if(probes_, [](const FakeProbe& p) { return p.state != FakeRequestState::Pending; });
    std::erase_if(fetches_,
                  [](const FakeFetch& f) { return f.state != FakeRequestState::Pending; });
    std::erase_if(dns_queries_,
                  [](const FakeDnsQuery& q) { return q.state != FakeRequestState::Pending; });
  }

  // --- used by the drivers -----------------------------------------------------------------------

  /// A new context for a plugin object (kept until the host is destroyed).
  detail::FakeCtx* new_ctx(std::string name, weir_kind_t kind, bool is_config) {
    auto ctx = std::make_unique<detail::FakeCtx>();
    ctx->host = this;
    ctx->name = std::move(name);
    ctx->kind = kind;
    ctx->is_config = is_config;
    contexts_.push_back(std::move(ctx));
    return contexts_.back().get();
  }
  /// Mark a context dead (its object was destroyed), drop its pending timers, and cancel its
  /// running probes, fetches and DNS queries (Abandoned; weir does the same, so it is not misuse).
  void retire_ctx(detail::FakeCtx* ctx) {
    ctx->alive = false;
    for (auto it = slots_.begin(); it != slots_.end();) {
      if (it->ctx == ctx) {
        set_state(it->id, FakeRequestState::Abandoned);
        it = slots_.erase(it);
      } else {
        ++it;
      }
    }
    const auto before = timers_.size();
    timers_.erase(std::remove_if(timers_.begin(), timers_.end(),
                                 [ctx](const detail::FakeTimer& t) { return t.ctx == ctx; }),
                  timers_.end());
    if (timers_.size() != before) {
      add_misuse(ctx->name + ": destroyed with " + std::to_string(before - timers_.size()) +
                 " timer(s) still pending (cancel them in instance_destroy)");
    }
  }
  /// Record an ABI rule violation.
  void add_misuse(std::string what) {
    if (verbose_) {
      std::fprintf(stderr, "[fake-host] misuse: %s\n", what.c_str());
    }
    misuse_.push_back(std::move(what));
  }
  /// Count of objects made, for naming.
  size_t next_serial() noexcept { return ++serial_; }
  /// The host to which the clock belongs (now_ns has no context argument).
  static FakeHost*& current() noexcept {
    static FakeHost* host = nullptr;
    return host;
  }

private:
  friend class FakeConfigured;

  // --- building config trees ---------------------------------------------------------------------
  std::unique_ptr<detail::FakeNode> build(const FakeValue& v, std::string path) {
    auto n = std::make_unique<detail::FakeNode>();
    n->host = this;
    n->path = std::move(path);
    switch (v.type()) {
    case FakeValue::Type::String:
      n->type = WEIR_CONFIG_STRING;
      n->string = v.string();
      break;
    case FakeValue::Type::Integer:
      n->type = WEIR_CONFIG_INTEGER;
      n->integer = v.integer();
      break;
    case FakeValue::Type::Float:
      n->type = WEIR_CONFIG_FLOAT;
      n->floating = v.floating();
      break;
    case FakeValue::Type::Boolean:
      n->type = WEIR_CONFIG_BOOLEAN;
      n->boolean = v.boolean();
      break;
    case FakeValue::Type::Array:
      n->type = WEIR_CONFIG_ARRAY;
      for (size_t i = 0; i < v.items().size(); ++i) {
        n->items.push_back(build(v.items()[i], n->path + "[" + std::to_string(i) + "]"));
      }
      break;
    case FakeValue::Type::Table:
      n->type = WEIR_CONFIG_TABLE;
      for (const auto& [k, child] : v.entries()) {
        std::string p = n->path.empty() ? "" : n->path + ".";
        p += detail::bare_key(k) ? k : "\"" + k + "\"";
        n->entries.emplace_back(k, build(child, std::move(p)));
      }
      break;
    }
    return n;
  }

  // --- API implementation ------------------------------------------------------------------------
  static detail::FakeCtx* ctx_of(weir_host_ctx_t* c) noexcept {
    return reinterpret_cast<detail::FakeCtx*>(c);
  }
  static const detail::FakeNode* node_of(const weir_config_node_t* n) noexcept {
    return reinterpret_cast<const detail::FakeNode*>(n);
  }
  static const weir_config_node_t* handle_of(const detail::FakeNode* n) noexcept {
    return reinterpret_cast<const weir_config_node_t*>(n);
  }
  /// Check that a config function is used during config_new.
  static const detail::FakeNode* live(const weir_config_node_t* n, const char* fn) noexcept {
    const detail::FakeNode* node = node_of(n);
    if (node != nullptr && node->host->configuring_ == 0) {
      node->host->add_misuse(std::string(fn) + " called outside config_new (node " + node->path +
                             ")");
    }
    return node;
  }

  static void api_log(weir_host_ctx_t* c, weir_log_level_t level, weir_str_t msg) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    FakeHost* h = ctx != nullptr ? ctx->host : current();
    if (h == nullptr) {
      return;
    }
    if (ctx != nullptr && !ctx->alive) {
      h->add_misuse("log from a destroyed object (" + ctx->name + ")");
    }
    h->logs_.push_back(
        FakeLog{ctx != nullptr ? ctx->name : "(no ctx)", level, std::string(detail::sv(msg))});
    if (h->verbose_) {
      std::fprintf(stderr, "[fake-host] log %u %s: %s\n", level, h->logs_.back().source.c_str(),
                   h->logs_.back().message.c_str());
    }
  }
  static int api_log_enabled(weir_host_ctx_t* c, weir_log_level_t level) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    FakeHost* h = ctx != nullptr ? ctx->host : current();
    return h != nullptr && level >= h->min_level_ ? 1 : 0;
  }
  static weir_config_type_t api_config_type(const weir_config_node_t* n) noexcept {
    const detail::FakeNode* node = live(n, "config_type");
    return node != nullptr ? node->type : WEIR_CONFIG_NONE;
  }
  static const weir_config_node_t* api_config_get(const weir_config_node_t* n,
                                                  weir_str_t key) noexcept {
    const detail::FakeNode* node = live(n, "config_get");
    if (node == nullptr || node->type != WEIR_CONFIG_TABLE) {
      return nullptr;
    }
    for (const auto& [k, child] : node->entries) {
      if (k == detail::sv(key)) {
        return handle_of(child.get());
      }
    }
    return nullptr;
  }
  static const weir_config_node_t* api_config_at(const weir_config_node_t* n,
                                                 size_t index) noexcept {
    const detail::FakeNode* node = live(n, "config_at");
    if (node == nullptr || node->type != WEIR_CONFIG_ARRAY || index >= node->items.size()) {
      return nullptr;
    }
    return handle_of(node->items[index].get());
  }
  static size_t api_config_size(const weir_config_node_t* n) noexcept {
    const detail::FakeNode* node = live(n, "config_size");
    if (node == nullptr) {
      return 0;
    }
    if (node->type == WEIR_CONFIG_ARRAY) {
      return node->items.size();
    }
    return node->type == WEIR_CONFIG_TABLE ? node->entries.size() : 0;
  }
  static void api_config_each(const weir_config_node_t* n, weir_config_key_cb cb,
                              void* user) noexcept {
    const detail::FakeNode* node = live(n, "config_each");
    if (node == nullptr || node->type != WEIR_CONFIG_TABLE || cb == nullptr) {
      return;
    }
    for (const auto& [k, child] : node->entries) {
      if (cb(user, detail::ws(k), handle_of(child.get())) != 0) {
        return;
      }
    }
  }
  static weir_status_t api_config_string(const weir_config_node_t* n, weir_str_t* out) noexcept {
    const detail::FakeNode* node = live(n, "config_string");
    if (node == nullptr || out == nullptr || node->type != WEIR_CONFIG_STRING) {
      return WEIR_ERROR_INVALID;
    }
    *out = detail::ws(node->string);
    return WEIR_OK;
  }
  static weir_status_t api_config_int(const weir_config_node_t* n, int64_t* out) noexcept {
    const detail::FakeNode* node = live(n, "config_int");
    if (node == nullptr || out == nullptr || node->type != WEIR_CONFIG_INTEGER) {
      return WEIR_ERROR_INVALID;
    }
    *out = node->integer;
    return WEIR_OK;
  }
  static weir_status_t api_config_float(const weir_config_node_t* n, double* out) noexcept {
    const detail::FakeNode* node = live(n, "config_float");
    if (node == nullptr || out == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    if (node->type == WEIR_CONFIG_FLOAT) {
      *out = node->floating;
      return WEIR_OK;
    }
    if (node->type == WEIR_CONFIG_INTEGER) {
      *out = static_cast<double>(node->integer);
      return WEIR_OK;
    }
    return WEIR_ERROR_INVALID;
  }
  static weir_status_t api_config_bool(const weir_config_node_t* n, int* out) noexcept {
    const detail::FakeNode* node = live(n, "config_bool");
    if (node == nullptr || out == nullptr || node->type != WEIR_CONFIG_BOOLEAN) {
      return WEIR_ERROR_INVALID;
    }
    *out = node->boolean ? 1 : 0;
    return WEIR_OK;
  }
  /// "250ms", "5s", "1m30s", "1h", "2d" or a non-negative integer of milliseconds.
  static std::optional<uint64_t> parse_duration_ms(std::string_view s) noexcept {
    if (s.empty()) {
      return std::nullopt;
    }
    uint64_t total = 0;
    size_t i = 0;
    while (i < s.size()) {
      uint64_t n = 0;
      const size_t start = i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (n > (std::numeric_limits<uint64_t>::max() - 9) / 10) {
          return std::nullopt;
        }
        n = n * 10 + static_cast<uint64_t>(s[i] - '0');
        ++i;
      }
      if (i == start) {
        return std::nullopt;
      }
      uint64_t unit = 0;
      if (s.substr(i, 2) == "ms") {
        unit = 1;
        i += 2;
      } else if (i < s.size() && s[i] == 's') {
        unit = 1000;
        ++i;
      } else if (i < s.size() && s[i] == 'm') {
        unit = 60'000;
        ++i;
      } else if (i < s.size() && s[i] == 'h') {
        unit = 3'600'000;
        ++i;
      } else if (i < s.size() && s[i] == 'd') {
        unit = 86'400'000;
        ++i;
      } else {
        return std::nullopt;
      }
      if (n > (std::numeric_limits<uint64_t>::max() - total) / unit) {
        return std::nullopt;
      }
      total += n * unit;
    }
    return total;
  }
  static weir_status_t api_config_duration_ms(const weir_config_node_t* n, uint64_t* out) noexcept {
    const detail::FakeNode* node = live(n, "config_duration_ms");
    if (node == nullptr || out == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    if (node->type == WEIR_CONFIG_INTEGER && node->integer >= 0) {
      *out = static_cast<uint64_t>(node->integer);
      return WEIR_OK;
    }
    if (node->type == WEIR_CONFIG_STRING) {
      if (auto ms = parse_duration_ms(node->string)) {
        *out = *ms;
        return WEIR_OK;
      }
    }
    return WEIR_ERROR_INVALID;
  }
  static void api_config_error(weir_host_ctx_t* c, const weir_config_node_t* n,
                               weir_str_t msg) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    const detail::FakeNode* node = node_of(n);
    FakeHost* h = ctx != nullptr ? ctx->host : (node != nullptr ? node->host : current());
    if (h == nullptr) {
      return;
    }
    if (h->configuring_ == 0) {
      h->add_misuse("config_error called outside config_new");
    }
    if (node == nullptr) {
      h->add_misuse("config_error called with a NULL node");
    }
    h->config_errors_.push_back(
        FakeConfigError{node != nullptr ? node->path : "(no node)", std::string(detail::sv(msg))});
    if (h->verbose_) {
      std::fprintf(stderr, "[fake-host] config error %s: %s\n",
                   h->config_errors_.back().path.c_str(), h->config_errors_.back().message.c_str());
    }
  }
  static weir_str_t api_config_path(const weir_config_node_t* n) noexcept {
    const detail::FakeNode* node = live(n, "config_path");
    return node != nullptr ? detail::ws(node->path) : weir_str_t{nullptr, 0};
  }
  static weir_timer_id_t api_timer_start(weir_host_ctx_t* c, uint64_t delay_ms, weir_timer_cb cb,
                                         void* user) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr || cb == nullptr) {
      return 0;
    }
    FakeHost* h = ctx->host;
    if (!ctx->alive) {
      h->add_misuse("timer_start from a destroyed object (" + ctx->name + ")");
      return 0;
    }
    const weir_timer_id_t id = ++h->next_timer_;
    h->timers_.push_back(detail::FakeTimer{id, ctx, h->now_ns_ + delay_ms * 1'000'000u, cb, user});
    return id;
  }
  static void api_timer_cancel(weir_host_ctx_t* c, weir_timer_id_t id) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return;
    }
    auto& timers = ctx->host->timers_;
    timers.erase(std::remove_if(
                     timers.begin(), timers.end(),
                     [id, ctx](const detail::FakeTimer& t) { return t.id == id && t.ctx == ctx; }),
                 timers.end());
  }
  static uint64_t api_now_ns() noexcept {
    FakeHost* h = current();
    return h != nullptr ? h->now_ns_ : 0;
  }
  static weir_status_t api_publish_targets(weir_host_ctx_t* c, const weir_target_t* targets,
                                           size_t n) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr || (targets == nullptr && n > 0)) {
      return WEIR_ERROR_INVALID;
    }
    FakeHost* h = ctx->host;
    if (ctx->kind != WEIR_KIND_DISCOVERY || ctx->is_config) {
      h->add_misuse("publish_targets from " + ctx->name + ", which is not a discovery instance");
      return WEIR_ERROR_STATE;
    }
    std::vector<FakeTarget> set;
    const auto* bytes = reinterpret_cast<const unsigned char*>(targets);
    // Strided by the first element's struct_size, which may be that of an older minor (1.0/1.1:
    // up to `id`) or of a newer one (longer); only the fields it covers are read.
    constexpr size_t v1_size = offsetof(weir_target_t, id) + sizeof(weir_str_t);
    const size_t stride = n > 0 ? targets[0].struct_size : sizeof(weir_target_t);
    if (n > 0 && stride < v1_size) {
      h->add_misuse("publish_targets: target 0 has struct_size " + std::to_string(stride));
      return WEIR_ERROR_INVALID;
    }
    const bool has_priority =
        stride >= offsetof(weir_target_t, priority) + sizeof(weir_target_t::priority);
    const bool has_metadata =
        stride >= offsetof(weir_target_t, metadata_count) + sizeof(weir_target_t::metadata_count);
    for (size_t i = 0; i < n; ++i) {
      weir_target_t t{};
      std::memcpy(&t, bytes + i * stride, std::min(stride, sizeof(weir_target_t)));
      if (t.struct_size != stride) {
        h->add_misuse("publish_targets: target " + std::to_string(i) + " has struct_size " +
                      std::to_string(t.struct_size) + ", target 0 has " + std::to_string(stride));
        return WEIR_ERROR_INVALID;
      }
      if (t.address.len == 0) {
        return WEIR_ERROR_INVALID;
      }
      if (has_metadata && t.metadata == nullptr && t.metadata_count > 0) {
        h->add_misuse("publish_targets: target " + std::to_string(i) +
                      " has metadata_count > 0 and metadata NULL");
        return WEIR_ERROR_INVALID;
      }
      FakeTarget out{std::string(detail::sv(t.address)), t.weight == 0 ? 1 : t.weight, true,
                     std::string(detail::sv(t.id))};
      if (has_priority) {
        out.priority = t.priority;
      }
      if (has_metadata) {
        for (size_t k = 0; k < t.metadata_count; ++k) {
          out.metadata.emplace_back(std::string(detail::sv(t.metadata[2 * k])),
                                    std::string(detail::sv(t.metadata[2 * k + 1])));
        }
      }
      set.push_back(std::move(out));
    }
    ctx->published.push_back(set);
    h->published_.push_back(std::move(set));
    return WEIR_OK;
  }
  static weir_status_t api_report_health(weir_host_ctx_t* c, weir_str_t target_id, int healthy,
                                         weir_str_t reason) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    FakeHost* h = ctx->host;
    if (ctx->kind != WEIR_KIND_HEALTH || ctx->is_config) {
      h->add_misuse("report_health from " + ctx->name + ", which is not a health instance");
      return WEIR_ERROR_STATE;
    }
    h->health_reports_.push_back(FakeHealthReport{ctx->name, std::string(detail::sv(target_id)),
                                                  healthy != 0, std::string(detail::sv(reason))});
    return WEIR_OK;
  }
  static weir_str_t api_http_method(weir_http_t* x) noexcept {
    return detail::ws(FakeHttp::from(x)->method);
  }
  static weir_str_t api_http_path(weir_http_t* x) noexcept {
    return detail::ws(FakeHttp::from(x)->path);
  }
  static weir_str_t api_http_query(weir_http_t* x) noexcept {
    return detail::ws(FakeHttp::from(x)->query);
  }
  static weir_str_t api_http_host(weir_http_t* x) noexcept {
    return detail::ws(FakeHttp::from(x)->host);
  }
  static weir_str_t api_http_client_ip(weir_http_t* x) noexcept {
    return detail::ws(FakeHttp::from(x)->client_ip);
  }
  static uint16_t api_http_client_port(weir_http_t* x) noexcept {
    return FakeHttp::from(x)->client_port;
  }
  static uint32_t api_http_status(weir_http_t* x) noexcept { return FakeHttp::from(x)->status; }
  static weir_status_t api_header_get(weir_http_t* x, weir_headers_which_t which, weir_str_t name,
                                      size_t index, weir_str_t* out) noexcept {
    FakeHeaders* hs = FakeHttp::from(x)->headers(which);
    if (hs == nullptr || out == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    for (const auto& [n, v] : hs->all()) {
      if (detail::ieq(n, detail::sv(name)) && index-- == 0) {
        *out = detail::ws(v);
        return WEIR_OK;
      }
    }
    return WEIR_ERROR_NOT_FOUND;
  }
  static weir_status_t check_edit(FakeHttp* http, weir_headers_which_t which, weir_str_t name,
                                  const weir_str_t* value, const char* fn) {
    if (http->headers(which) == nullptr || !detail::token(detail::sv(name)) ||
        (value != nullptr && !detail::field_value(detail::sv(*value)))) {
      return WEIR_ERROR_INVALID;
    }
    if (which == WEIR_HEADERS_REQUEST && http->stage == FakeHttp::Stage::Response) {
      http->misuse.push_back(std::string(fn) + " on request headers during on_response");
      return WEIR_ERROR_STATE;
    }
    if (which == WEIR_HEADERS_RESPONSE && http->stage == FakeHttp::Stage::Request &&
        !http->local_response) {
      http->misuse.push_back(std::string(fn) + " on response headers during on_request");
      return WEIR_ERROR_STATE;
    }
    return WEIR_OK;
  }
  static weir_status_t api_header_set(weir_http_t* x, weir_headers_which_t which, weir_str_t name,
                                      weir_str_t value) noexcept {
    FakeHttp* http = FakeHttp::from(x);
    const weir_status_t st = check_edit(http, which, name, &value, "header_set");
    if (st == WEIR_OK) {
      http->headers(which)->set(detail::sv(name), detail::sv(value));
    }
    return st;
  }
  static weir_status_t api_header_add(weir_http_t* x, weir_headers_which_t which, weir_str_t name,
                                      weir_str_t value) noexcept {
    FakeHttp* http = FakeHttp::from(x);
    const weir_status_t st = check_edit(http, which, name, &value, "header_add");
    if (st == WEIR_OK) {
      http->headers(which)->add(detail::sv(name), detail::sv(value));
    }
    return st;
  }
  static weir_status_t api_header_remove(weir_http_t* x, weir_headers_which_t which,
                                         weir_str_t name) noexcept {
    FakeHttp* http = FakeHttp::from(x);
    const weir_status_t st = check_edit(http, which, name, nullptr, "header_remove");
    if (st == WEIR_OK) {
      http->headers(which)->remove(detail::sv(name));
    }
    return st;
  }
  static void api_header_each(weir_http_t* x, weir_headers_which_t which, weir_header_cb cb,
                              void* user) noexcept {
    FakeHeaders* hs = FakeHttp::from(x)->headers(which);
    if (hs == nullptr || cb == nullptr) {
      return;
    }
    const auto snapshot = hs->all(); // a callback that edits headers must not break the walk
    for (const auto& [n, v] : snapshot) {
      if (cb(user, detail::ws(n), detail::ws(v)) != 0) {
        return;
      }
    }
    if (hs->all() != snapshot) {
      FakeHttp::from(x)->misuse.push_back("headers modified inside header_each");
    }
  }
  static weir_status_t api_http_respond(weir_http_t* x, uint32_t status, weir_str_t content_type,
                                        weir_str_t body) noexcept {
    FakeHttp* http = FakeHttp::from(x);
    if (http->stage == FakeHttp::Stage::Response) {
      http->misuse.push_back("http_respond during on_response");
      return WEIR_ERROR_STATE;
    }
    if (http->local_response) {
      http->misuse.push_back("http_respond called twice");
      return WEIR_ERROR_STATE;
    }
    if (status < 100 || status > 599 || !detail::field_value(detail::sv(content_type))) {
      return WEIR_ERROR_INVALID;
    }
    http->local_response = FakeLocalResponse{status, std::string(detail::sv(content_type)),
                                             std::string(detail::sv(body))};
    http->status = status;
    http->response_headers.clear();
    if (content_type.len > 0) {
      http->response_headers.set("content-type", detail::sv(content_type));
    }
    http->response_headers.set("content-length", std::to_string(body.len));
    return WEIR_OK;
  }

  /// install_certificate / remove_certificate are for control-thread instances only.
  static bool certificate_caller_ok(detail::FakeCtx* ctx, const char* fn) {
    if (!ctx->alive) {
      ctx->host->add_misuse(std::string(fn) + " from a destroyed object (" + ctx->name + ")");
      return false;
    }
    if (ctx->is_config || ctx->kind == WEIR_KIND_LB || ctx->kind == WEIR_KIND_FILTER) {
      ctx->host->add_misuse(std::string(fn) + " from " + ctx->name +
                            ", which is not a control-thread instance (certs, discovery, health)");
      return false;
    }
    return true;
  }
  static weir_status_t api_install_certificate(weir_host_ctx_t* c,
                                               const weir_certificate_t* cert) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    FakeHost* h = ctx->host;
    if (!certificate_caller_ok(ctx, "install_certificate")) {
      return WEIR_ERROR_STATE;
    }
    if (cert == nullptr || cert->struct_size < sizeof(weir_certificate_t)) {
      h->add_misuse("install_certificate with a NULL or too small weir_certificate_t");
      return WEIR_ERROR_INVALID;
    }
    const std::string_view chain = detail::sv(cert->cert_pem);
    const std::string_view key = detail::sv(cert->key_pem);
    if (chain.find("-----BEGIN CERTIFICATE-----") == std::string_view::npos ||
        key.find("PRIVATE KEY-----") == std::string_view::npos) {
      return WEIR_ERROR_INVALID;
    }
    if (h->install_status_ != WEIR_OK) {
      return h->install_status_;
    }
    try {
      h->certificate_installs_.push_back(
          FakeCertificate{ctx->name, std::string(chain), std::string(key)});
    } catch (...) {
      return WEIR_ERROR_NOMEM;
    }
    return WEIR_OK;
  }
  static weir_status_t api_remove_certificate(weir_host_ctx_t* c, weir_str_t name) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return WEIR_ERROR_INVALID;
    }
    FakeHost* h = ctx->host;
    if (!certificate_caller_ok(ctx, "remove_certificate")) {
      return WEIR_ERROR_STATE;
    }
    if (name.len == 0) {
      return WEIR_ERROR_INVALID;
    }
    if (h->remove_status_ != WEIR_OK) {
      return h->remove_status_;
    }
    try {
      h->certificate_removals_.push_back(
          FakeCertificateRemoval{ctx->name, std::string(detail::sv(name))});
    } catch (...) {
      return WEIR_ERROR_NOMEM;
    }
    return WEIR_OK;
  }

  // --- outbound checks and requests
  // ----------------------------------------------------------------

  /// probe_start / fetch_start are for live control-thread instances, with a callback.
  static bool request_caller_ok(detail::FakeCtx* ctx, const void* request, size_t min_size,
                                uint32_t struct_size, bool has_cb, const char* fn) {
    FakeHost* h = ctx->host;
    if (!ctx->alive) {
      h->add_misuse(std::string(fn) + " from a destroyed object (" + ctx->name + ")");
      return false;
    }
    if (ctx->is_config) {
      h->add_misuse(std::string(fn) + " from " + ctx->name +
                    " during config_new (only instances may start requests)");
      return false;
    }
    if (ctx->kind == WEIR_KIND_LB || ctx->kind == WEIR_KIND_FILTER) {
      h->add_misuse(std::string(fn) + " from " + ctx->name +
                    ", which is not a control-thread instance (health, discovery, certs)");
      return false;
    }
    if (request == nullptr || struct_size < min_size) {
      h->add_misuse(std::string(fn) + " from " + ctx->name + " with a NULL or too small struct");
      return false;
    }
    if (!has_cb) {
      h->add_misuse(std::string(fn) + " from " + ctx->name + " with a NULL callback");
      return false;
    }
    return true;
  }
  weir_request_id_t refuse(const std::string& why) {
    refusals_.push_back(why);
    if (verbose_) {
      std::fprintf(stderr, "[fake-host] request refused: %s\n", why.c_str());
    }
    return 0;
  }
  static weir_request_id_t api_probe_start(weir_host_ctx_t* c, const weir_probe_t* probe,
                                           weir_probe_cb cb, void* user) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return 0;
    }
    FakeHost* h = ctx->host;
    try {
      if (!request_caller_ok(ctx, probe, sizeof(weir_probe_t),
                             probe != nullptr ? probe->struct_size : 0, cb != nullptr,
                             "probe_start")) {
        return 0;
      }
      if (h->refuse_requests_) {
        return h->refuse("probe_start from " + ctx->name + ": refused (set_refuse_requests)");
      }
      if (probe->address.len == 0) {
        return h->refuse("probe_start from " + ctx->name + ": empty address");
      }
      if (probe->kind != WEIR_PROBE_TCP && probe->kind != WEIR_PROBE_TLS) {
        return h->refuse("probe_start from " + ctx->name + ": unknown probe kind " +
                         std::to_string(probe->kind));
      }
      FakeProbe record;
      record.id = ++h->next_request_;
      record.source = ctx->name;
      record.address = std::string(detail::sv(probe->address));
      record.kind = probe->kind;
      record.timeout_ms = probe->timeout_ms;
      record.started_ns = h->now_ns_;
      h->probes_.push_back(std::move(record));
      h->slots_.push_back(detail::FakeRequestSlot{h->next_request_, ctx, cb, nullptr, user});
      return h->next_request_;
    } catch (...) {
      return 0;
    }
  }
  static weir_request_id_t api_fetch_start(weir_host_ctx_t* c, const weir_fetch_t* fetch,
                                           weir_fetch_cb cb, void* user) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return 0;
    }
    FakeHost* h = ctx->host;
    try {
      if (!request_caller_ok(ctx, fetch, sizeof(weir_fetch_t),
                             fetch != nullptr ? fetch->struct_size : 0, cb != nullptr,
                             "fetch_start")) {
        return 0;
      }
      if (fetch->header_count > 0 && fetch->headers == nullptr) {
        h->add_misuse("fetch_start from " + ctx->name + ": header_count > 0 and headers NULL");
        return 0;
      }
      const std::string from = "fetch_start from " + ctx->name + ": ";
      if (h->refuse_requests_) {
        return h->refuse(from + "refused (set_refuse_requests)");
      }
      const std::string_view method = detail::sv(fetch->method);
      if (!method.empty() && !detail::token(method)) {
        return h->refuse(from + "method '" + std::string(method) + "' is not a token");
      }
      const std::string_view url = detail::sv(fetch->url);
      const size_t scheme_end = url.find("://");
      const std::string_view scheme =
          scheme_end == std::string_view::npos ? std::string_view() : url.substr(0, scheme_end);
      if (!detail::ieq(scheme, "http") && !detail::ieq(scheme, "https")) {
        return h->refuse(from + "URL '" + std::string(url) + "' is not absolute http or https");
      }
      const std::string_view rest = url.substr(scheme_end + 3);
      if (rest.empty() || rest.front() == '/' || rest.front() == '?' || !detail::field_value(url) ||
          url.find(' ') != std::string_view::npos) {
        return h->refuse(from + "URL '" + std::string(url) + "' has no host or is malformed");
      }
      if ((fetch->flags & WEIR_FETCH_UPSTREAM_TLS) != 0 && ctx->kind == WEIR_KIND_CERTS) {
        return h->refuse(from + "WEIR_FETCH_UPSTREAM_TLS from an object that belongs to no " +
                         "upstream group");
      }
      FakeFetch record;
      for (size_t i = 0; i < fetch->header_count; ++i) {
        const std::string_view name = detail::sv(fetch->headers[2 * i]);
        const std::string_view value = detail::sv(fetch->headers[2 * i + 1]);
        if (!detail::token(name) || !detail::field_value(value)) {
          return h->refuse(from + "bad header '" + std::string(name) + "'");
        }
        if (detail::ieq(name, "host") || detail::ieq(name, "content-length") ||
            detail::ieq(name, "transfer-encoding") || detail::ieq(name, "connection")) {
          continue; // the host's: weir drops them as well (Host comes from the URL)
        }
        record.headers.add(name, value);
      }
      record.id = ++h->next_request_;
      record.source = ctx->name;
      record.method = std::string(method);
      record.url = std::string(url);
      record.connect_to = std::string(detail::sv(fetch->connect_to));
      record.body = std::string(detail::sv(fetch->body));
      record.timeout_ms = fetch->timeout_ms;
      record.max_body = fetch->max_body;
      record.flags = fetch->flags;
      record.ca_file = std::string(detail::sv(fetch->ca_file));
      record.started_ns = h->now_ns_;
      h->fetches_.push_back(std::move(record));
      h->slots_.push_back(detail::FakeRequestSlot{h->next_request_, ctx, nullptr, cb, user});
      return h->next_request_;
    } catch (...) {
      return 0;
    }
  }
  static void api_request_cancel(weir_host_ctx_t* c, weir_request_id_t id) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return;
    }
    FakeHost* h = ctx->host;
    if (!ctx->alive) {
      h->add_misuse("request_cancel from a destroyed object (" + ctx->name + ")");
      return;
    }
    auto it =
        std::find_if(h->slots_.begin(), h->slots_.end(),
                     [&](const detail::FakeRequestSlot& s) { return s.id == id && s.ctx == ctx; });
    if (it != h->slots_.end()) {
      h->set_state(id, FakeRequestState::Cancelled);
      h->slots_.erase(it);
    }
  }
  static weir_request_id_t api_dns_query(weir_host_ctx_t* c, weir_str_t name, weir_dns_type_t type,
                                         weir_dns_cb cb, void* user) noexcept {
    detail::FakeCtx* ctx = ctx_of(c);
    if (ctx == nullptr) {
      return 0;
    }
    FakeHost* h = ctx->host;
    try {
      if (!request_caller_ok(ctx, &name, 0, 0, cb != nullptr, "dns_query")) {
        return 0;
      }
      const std::string from = "dns_query from " + ctx->name + ": ";
      if (h->refuse_requests_) {
        return h->refuse(from + "refused (set_refuse_requests)");
      }
      const std::string_view n = detail::sv(name);
      if (const std::string problem = detail::dns_name_problem(n); !problem.empty()) {
        return h->refuse(from + problem + " ('" + std::string(n) + "')");
      }
      if (type != WEIR_DNS_A && type != WEIR_DNS_AAAA && type != WEIR_DNS_SRV &&
          type != WEIR_DNS_TXT && type != WEIR_DNS_PTR) {
        return h->refuse(from + "unsupported record type " + std::to_string(type));
      }
      FakeDnsQuery record;
      record.id = ++h->next_request_;
      record.source = ctx->name;
      record.name = std::string(n);
      record.type = type;
      record.started_ns = h->now_ns_;
      h->dns_queries_.push_back(std::move(record));
      detail::FakeRequestSlot slot{h->next_request_, ctx, nullptr, nullptr, user};
      slot.dns_cb = cb;
      h->slots_.push_back(slot);
      return h->next_request_;
    } catch (...) {
      return 0;
    }
  }
  /// The running request `id`, removed from the running set (nullopt when not running).
  std::optional<detail::FakeRequestSlot> take_slot(weir_request_id_t id,
                                                   detail::FakeRequestKind kind) {
    auto it = std::find_if(slots_.begin(), slots_.end(), [&](const detail::FakeRequestSlot& s) {
      return s.id == id && s.kind() == kind;
    });
    if (it == slots_.end()) {
      return std::nullopt;
    }
    const detail::FakeRequestSlot slot = *it;
    slots_.erase(it);
    return slot;
  }
  FakeProbe& probe_record(weir_request_id_t id) {
    return *std::find_if(probes_.begin(), probes_.end(),
                         [id](const FakeProbe& p) { return p.id == id; });
  }
  FakeFetch& fetch_record(weir_request_id_t id) {
    return *std::find_if(fetches_.begin(), fetches_.end(),
                         [id](const FakeFetch& f) { return f.id == id; });
  }
  void set_state(weir_request_id_t id, FakeRequestState state) {
    for (FakeProbe& p : probes_) {
      if (p.id == id) {
        p.state = state;
      }
    }
    for (FakeFetch& f : fetches_) {
      if (f.id == id) {
        f.state = state;
      }
    }
    for (FakeDnsQuery& q : dns_queries_) {
      if (q.id == id) {
        q.state = state;
      }
    }
  }
  bool finish_dns(weir_request_id_t id, weir_status_t status, std::string_view error,
                  const std::vector<FakeDnsRecord>& records, uint32_t negative_ttl) {
    const auto slot = take_slot(id, detail::FakeRequestKind::Dns);
    if (!slot) {
      return false;
    }
    FakeDnsQuery* record = nullptr;
    for (FakeDnsQuery& q : dns_queries_) {
      if (q.id == id) {
        record = &q;
      }
    }
    record->state = FakeRequestState::Completed;
    // Storage for the views, alive until the callback returns (it may start queries, which moves
    // `record`).
    const std::string query_name = detail::dns_normal(record->name);
    const std::string err(error);
    std::vector<std::string> names;
    std::vector<std::string> targets;
    std::vector<std::vector<weir_str_t>> txts;
    names.reserve(records.size());
    targets.reserve(records.size());
    txts.reserve(records.size());
    std::vector<weir_dns_record_t> raw;
    raw.reserve(records.size());
    for (const FakeDnsRecord& rec : records) {
      names.push_back(rec.name.empty() ? query_name : detail::dns_normal(rec.name));
      targets.push_back(detail::dns_normal(rec.target));
      txts.emplace_back();
      for (const std::string& t : rec.txt) {
        txts.back().push_back(detail::ws(t));
      }
      weir_dns_record_t r{};
      r.struct_size = sizeof(r);
      r.type = rec.type;
      r.ttl = rec.ttl;
      r.name = detail::ws(names.back());
      r.address = detail::ws(rec.address);
      r.target = detail::ws(targets.back());
      r.priority = rec.priority;
      r.weight = rec.weight;
      r.port = rec.port;
      r.txt = txts.back().empty() ? nullptr : txts.back().data();
      r.txt_count = txts.back().size();
      raw.push_back(r);
    }
    weir_dns_result_t result{};
    result.struct_size = sizeof(result);
    result.status = status;
    result.error = detail::ws(err);
    result.records = raw.empty() ? nullptr : raw.data();
    result.count = raw.size();
    result.negative_ttl = negative_ttl;
    slot->dns_cb(slot->user, &result);
    return true;
  }
  bool finish_fetch(weir_request_id_t id, weir_status_t status, std::string_view error,
                    uint32_t http_status, const FakeHeaders& headers, std::string_view body,
                    bool truncated) {
    const auto slot = take_slot(id, detail::FakeRequestKind::Fetch);
    if (!slot) {
      return false;
    }
    FakeFetch& record = fetch_record(id);
    record.state = FakeRequestState::Completed;
    const uint64_t max_body = record.max_body == 0 ? 65536u : record.max_body;
    // Views for the callback, alive until it returns (the callback may start requests, which
    // moves `record`).
    const std::string err(error);
    const std::string kept(body.substr(0, std::min<uint64_t>(body.size(), max_body)));
    std::vector<weir_str_t> raw_headers;
    for (const auto& [n, v] : headers.all()) {
      raw_headers.push_back(detail::ws(n));
      raw_headers.push_back(detail::ws(v));
    }
    weir_fetch_result_t r{};
    r.struct_size = sizeof(r);
    r.status = status;
    r.error = detail::ws(err);
    r.http_status = http_status;
    r.headers = raw_headers.empty() ? nullptr : raw_headers.data();
    r.header_count = headers.size();
    r.body = detail::ws(kept);
    r.truncated = (truncated || body.size() > max_body) ? 1 : 0;
    r.duration_ns = now_ns_ - record.started_ns;
    slot->fetch_cb(slot->user, &r);
    return true;
  }

  weir_host_api_t api_{};
  std::vector<std::unique_ptr<detail::FakeCtx>> contexts_;
  std::vector<std::unique_ptr<detail::FakeNode>> trees_;
  std::vector<FakeConfigError> config_errors_;
  std::vector<FakeLog> logs_;
  std::vector<std::vector<FakeTarget>> published_;
  std::vector<FakeHealthReport> health_reports_;
  std::vector<FakeCertificate> certificate_installs_;
  std::vector<FakeCertificateRemoval> certificate_removals_;
  weir_status_t install_status_ = WEIR_OK;
  weir_status_t remove_status_ = WEIR_OK;
  std::vector<std::string> misuse_;
  std::vector<detail::FakeTimer> timers_;
  weir_timer_id_t next_timer_ = 0;
  std::vector<FakeProbe> probes_;
  std::vector<FakeFetch> fetches_;
  std::vector<FakeDnsQuery> dns_queries_;
  std::vector<detail::FakeRequestSlot> slots_;
  std::vector<std::string> refusals_;
  weir_request_id_t next_request_ = 0;
  bool refuse_requests_ = false;
  uint64_t now_ns_ = 1'000'000'000'000u; // an arbitrary non-zero start
  weir_log_level_t min_level_ = WEIR_LOG_TRACE;
  int configuring_ = 0;
  size_t serial_ = 0;
  bool verbose_ = false;
};

// ================================================================================================
// Drivers: a configured module and its instances
// ================================================================================================

namespace detail {
/// A configuration object; destroyed (config_destroy) when the last holder goes.
struct ConfigState {
  FakeHost* host = nullptr;
  FakeModule module;
  FakeCtx* ctx = nullptr;
  weir_plugin_config_t* config = nullptr;
  ~ConfigState() {
    if (config != nullptr) {
      static_cast<const VtableHead*>(module.module.vtable)->config_destroy(config);
    }
    if (ctx != nullptr) {
      host->retire_ctx(ctx);
    }
  }
};

/// An instance of one kind, destroyed with its vtable's instance_destroy.
template <class VT, class Inst> class InstanceHolder {
public:
  InstanceHolder(std::shared_ptr<ConfigState> cfg, std::string name) : cfg_(std::move(cfg)) {
    vt_ = static_cast<const VT*>(cfg_->module.module.vtable);
    ctx_ = cfg_->host->new_ctx(std::move(name), cfg_->module.module.kind, false);
    status_ = vt_->instance_new(cfg_->host->api(), reinterpret_cast<weir_host_ctx_t*>(ctx_),
                                cfg_->config, &inst_);
    if (status_ == WEIR_OK && inst_ == nullptr) {
      cfg_->host->add_misuse(ctx_->name + ": instance_new returned WEIR_OK and a NULL instance");
    }
  }
  InstanceHolder(const InstanceHolder&) = delete;
  InstanceHolder& operator=(const InstanceHolder&) = delete;
  ~InstanceHolder() {
    if (inst_ != nullptr) {
      vt_->instance_destroy(inst_);
    }
    cfg_->host->retire_ctx(ctx_);
  }
  const VT* vt_;
  Inst* inst_ = nullptr;
  FakeCtx* ctx_ = nullptr;
  weir_status_t status_ = WEIR_ERROR;
  std::shared_ptr<ConfigState> cfg_;
};

/// Targets in ABI form, viewing `src` (which must outlive them).
struct RawTargets {
  std::vector<weir_target_t> targets;
  std::vector<weir_str_t> metadata; ///< every target's key, value strings; does not move
  [[nodiscard]] const weir_target_t* data() const noexcept { return targets.data(); }
  [[nodiscard]] size_t size() const noexcept { return targets.size(); }
};
inline RawTargets raw_targets(const std::vector<FakeTarget>& src) {
  RawTargets out;
  size_t total = 0;
  for (const FakeTarget& t : src) {
    total += 2 * t.metadata.size();
  }
  out.metadata.reserve(total);
  out.targets.reserve(src.size());
  for (const FakeTarget& t : src) {
    weir_target_t r{};
    r.struct_size = sizeof(weir_target_t);
    r.address = ws(t.address);
    r.weight = t.weight;
    r.healthy = t.healthy ? 1 : 0;
    r.id = ws(t.id);
    r.priority = t.priority;
    if (!t.metadata.empty()) {
      r.metadata = out.metadata.data() + out.metadata.size();
      r.metadata_count = t.metadata.size();
      for (const auto& [key, value] : t.metadata) {
        out.metadata.push_back(ws(key));
        out.metadata.push_back(ws(value));
      }
    }
    out.targets.push_back(r);
  }
  return out;
}
} // namespace detail

/// Base of the per-kind instance drivers.
template <class VT, class Inst> class FakeInstance {
public:
  /// Status returned by instance_new.
  [[nodiscard]] weir_status_t status() const noexcept { return holder_->status_; }
  /// True when instance_new succeeded.
  [[nodiscard]] bool ok() const noexcept {
    return holder_->status_ == WEIR_OK && holder_->inst_ != nullptr;
  }
  /// The raw instance.
  [[nodiscard]] Inst* raw() const noexcept { return holder_->inst_; }
  /// The raw vtable.
  [[nodiscard]] const VT* vtable() const noexcept { return holder_->vt_; }
  /// The name the instance logs under.
  [[nodiscard]] const std::string& name() const noexcept { return holder_->ctx_->name; }
  /// Everything this instance published (discovery).
  [[nodiscard]] const std::vector<std::vector<FakeTarget>>& published() const noexcept {
    return holder_->ctx_->published;
  }
  /// The probes this instance started that are still running (ABI 1.2).
  [[nodiscard]] std::vector<FakeProbe> pending_probes() const {
    std::vector<FakeProbe> out = host().pending_probes();
    std::erase_if(out, [this](const FakeProbe& p) { return p.source != name(); });
    return out;
  }
  /// The fetches this instance started that are still running (ABI 1.2).
  [[nodiscard]] std::vector<FakeFetch> pending_fetches() const {
    std::vector<FakeFetch> out = host().pending_fetches();
    std::erase_if(out, [this](const FakeFetch& f) { return f.source != name(); });
    return out;
  }
  /// The DNS queries this instance started that are still running (ABI 1.2).
  [[nodiscard]] std::vector<FakeDnsQuery> pending_dns() const {
    std::vector<FakeDnsQuery> out = host().pending_dns();
    std::erase_if(out, [this](const FakeDnsQuery& q) { return q.source != name(); });
    return out;
  }

protected:
  FakeInstance(std::shared_ptr<detail::ConfigState> cfg, std::string name)
      : holder_(
            std::make_unique<detail::InstanceHolder<VT, Inst>>(std::move(cfg), std::move(name))) {}
  void require_ok(const char* what) const {
    if (!ok()) {
      throw std::logic_error(std::string(what) + " on an instance whose instance_new failed (" +
                             std::to_string(status()) + ")");
    }
  }
  FakeHost& host() const noexcept { return *holder_->cfg_->host; }
  std::unique_ptr<detail::InstanceHolder<VT, Inst>> holder_;
};

/// A load balancer instance.
class FakeLb : public FakeInstance<weir_lb_vtable_t, weir_lb_instance_t> {
public:
  /// Call on_targets with `targets` (kept for the next picks' `n`).
  weir_status_t set_targets(const std::vector<FakeTarget>& targets) {
    require_ok("set_targets");
    count_ = targets.size();
    const auto raw = detail::raw_targets(targets);
    return vtable()->on_targets(raw_instance(), raw.data(), raw.size());
  }
  /// Call pick; `excluded` holds flags for the first targets (missing = 0; empty = NULL).
  /// Returns the index, or nullopt when pick did not return WEIR_OK (see last_status()).
  std::optional<size_t> pick(const std::vector<uint8_t>& excluded = {}, uint32_t attempt = 0,
                             FakeHttp* http = nullptr) {
    require_ok("pick");
    std::vector<uint8_t> flags;
    if (!excluded.empty()) {
      flags = excluded;
      flags.resize(std::max(count_, excluded.size()), 0);
    }
    weir_lb_pick_t req{};
    req.struct_size = sizeof(weir_lb_pick_t);
    req.http = http != nullptr ? http->handle() : nullptr;
    req.attempt = attempt;
    req.excluded = flags.empty() ? nullptr : flags.data();
    req.n = count_;
    size_t out = std::numeric_limits<size_t>::max();
    last_status_ = vtable()->pick(raw_instance(), &req, &out);
    if (last_status_ != WEIR_OK) {
      return std::nullopt;
    }
    if (out >= count_) {
      host().add_misuse(name() + ": pick returned index " + std::to_string(out) + " of " +
                        std::to_string(count_));
    }
    return out;
  }
  /// Status of the last pick.
  [[nodiscard]] weir_status_t last_status() const noexcept { return last_status_; }
  /// Call on_start when present.
  void on_start(size_t index) {
    require_ok("on_start");
    if (vtable()->on_start != nullptr) {
      vtable()->on_start(raw_instance(), index);
    }
  }
  /// Call on_done when present.
  void on_done(size_t index, uint32_t status, uint64_t duration_ns) {
    require_ok("on_done");
    if (vtable()->on_done != nullptr) {
      vtable()->on_done(raw_instance(), index, status, duration_ns);
    }
  }

private:
  friend class FakeConfigured;
  using FakeInstance::FakeInstance;
  weir_lb_instance_t* raw_instance() const noexcept { return raw(); }
  size_t count_ = 0;
  weir_status_t last_status_ = WEIR_OK;
};

/// A discovery instance.
class FakeDiscovery : public FakeInstance<weir_discovery_vtable_t, weir_discovery_instance_t> {
public:
  /// Call start.
  weir_status_t start() {
    require_ok("start");
    return vtable()->start(raw());
  }
  /// The last set this instance published (throws std::logic_error when none).
  [[nodiscard]] const std::vector<FakeTarget>& last_published() const {
    if (published().empty()) {
      throw std::logic_error(name() + " has published nothing");
    }
    return published().back();
  }

private:
  friend class FakeConfigured;
  using FakeInstance::FakeInstance;
};

/// A health checker instance.
class FakeHealth : public FakeInstance<weir_health_vtable_t, weir_health_instance_t> {
public:
  /// Call on_targets.
  weir_status_t set_targets(const std::vector<FakeTarget>& targets) {
    require_ok("set_targets");
    const auto raw_set = detail::raw_targets(targets);
    return vtable()->on_targets(raw(), raw_set.data(), raw_set.size());
  }
  /// Deliver a passive observation when the module takes them (returns false otherwise).
  bool observe(std::string_view target_id, uint32_t status, bool connect_failed = false,
               bool timed_out = false, uint64_t duration_ns = 0) {
    FakeObservation o;
    o.target_id = std::string(target_id);
    o.status = status;
    o.connect_failed = connect_failed;
    o.timed_out = timed_out;
    o.duration_ns = duration_ns;
    return observe(o);
  }
  /// Deliver `o` (its struct_size can make it look like an older host's) when the module takes
  /// observations (returns false otherwise).
  bool observe(const FakeObservation& o) {
    require_ok("observe");
    if (vtable()->on_observation == nullptr) {
      return false;
    }
    weir_health_observation_t obs{};
    obs.struct_size = o.struct_size != 0 ? o.struct_size : sizeof(obs);
    obs.target_id = detail::ws(o.target_id);
    obs.status = o.status;
    obs.connect_failed = o.connect_failed ? 1 : 0;
    // Filled even beyond a short struct_size: a plugin that reads past it sees values it must not
    // have, and a test can catch that.
    obs.timed_out = o.timed_out ? 1 : 0;
    obs.duration_ns = o.duration_ns;
    vtable()->on_observation(raw(), &obs);
    return true;
  }
  /// The reports of this instance.
  [[nodiscard]] std::vector<FakeHealthReport> reports() const {
    std::vector<FakeHealthReport> out;
    for (const auto& r : host().health_reports()) {
      if (r.source == name()) {
        out.push_back(r);
      }
    }
    return out;
  }

private:
  friend class FakeConfigured;
  using FakeInstance::FakeInstance;
};

/// A filter instance.
class FakeFilter : public FakeInstance<weir_filter_vtable_t, weir_filter_instance_t> {
public:
  /// True when the module has on_request / on_response.
  [[nodiscard]] bool has_on_request() const noexcept { return vtable()->on_request != nullptr; }
  [[nodiscard]] bool has_on_response() const noexcept { return vtable()->on_response != nullptr; }

  /// Run the request stage (WEIR_FILTER_CONTINUE when the hook is absent). Checks that a hook
  /// returns WEIR_FILTER_RESPONDED exactly when it called http_respond.
  weir_filter_result_t on_request(FakeHttp& http) {
    require_ok("on_request");
    if (vtable()->on_request == nullptr) {
      return WEIR_FILTER_CONTINUE;
    }
    const bool had_response = http.local_response.has_value();
    http.stage = FakeHttp::Stage::Request;
    const weir_filter_result_t r = vtable()->on_request(raw(), http.handle());
    http.stage = FakeHttp::Stage::Any;
    const bool responded = !had_response && http.local_response.has_value();
    if (r == WEIR_FILTER_RESPONDED && !responded) {
      host().add_misuse(name() + ": on_request returned RESPONDED without calling http_respond");
    } else if (r == WEIR_FILTER_CONTINUE && responded) {
      host().add_misuse(name() + ": on_request called http_respond but returned CONTINUE");
    }
    return r;
  }
  /// Run the response stage (WEIR_FILTER_CONTINUE when the hook is absent).
  weir_filter_result_t on_response(FakeHttp& http) {
    require_ok("on_response");
    if (vtable()->on_response == nullptr) {
      return WEIR_FILTER_CONTINUE;
    }
    http.stage = FakeHttp::Stage::Response;
    const weir_filter_result_t r = vtable()->on_response(raw(), http.handle());
    http.stage = FakeHttp::Stage::Any;
    if (r == WEIR_FILTER_RESPONDED) {
      host().add_misuse(name() + ": on_response returned RESPONDED");
    }
    return r;
  }

private:
  friend class FakeConfigured;
  using FakeInstance::FakeInstance;
};

/// A certificate provider instance.
class FakeCerts : public FakeInstance<weir_certs_vtable_t, weir_certs_instance_t> {
public:
  /// Call start.
  weir_status_t start() {
    require_ok("start");
    return vtable()->start(raw());
  }

private:
  friend class FakeConfigured;
  using FakeInstance::FakeInstance;
};

/// The result of FakeHost::configure: the status of config_new, the errors it reported, and a
/// factory of instances (each with its own context, like one worker's instance).
class FakeConfigured {
public:
  /// Status returned by config_new.
  [[nodiscard]] weir_status_t status() const noexcept { return status_; }
  /// True when config_new returned WEIR_OK, made an object and reported no error (as the host
  /// requires: any reported error fails the configuration).
  [[nodiscard]] bool ok() const noexcept {
    return status_ == WEIR_OK && state_->config != nullptr && errors_.empty();
  }
  /// The errors reported by this config_new call.
  [[nodiscard]] const std::vector<FakeConfigError>& errors() const noexcept { return errors_; }
  /// True when this call reported an error at exactly `path` containing `message_part`.
  [[nodiscard]] bool has_error(std::string_view path, std::string_view message_part) const {
    return std::any_of(errors_.begin(), errors_.end(), [&](const FakeConfigError& e) {
      return e.path == path && e.message.find(message_part) != std::string::npos;
    });
  }
  /// The errors as "path: message" lines.
  [[nodiscard]] std::string errors_text() const {
    std::string out;
    for (const auto& e : errors_) {
      out += e.path + ": " + e.message + "\n";
    }
    return out;
  }
  /// The raw configuration object.
  [[nodiscard]] weir_plugin_config_t* raw() const noexcept { return state_->config; }

  /// A load balancer instance (throws std::logic_error unless ok() and the module is an LB).
  FakeLb lb() const { return make<FakeLb>(WEIR_KIND_LB); }
  /// A discovery instance.
  FakeDiscovery discovery() const { return make<FakeDiscovery>(WEIR_KIND_DISCOVERY); }
  /// A health checker instance.
  FakeHealth health() const { return make<FakeHealth>(WEIR_KIND_HEALTH); }
  /// A filter instance.
  FakeFilter filter() const { return make<FakeFilter>(WEIR_KIND_FILTER); }
  /// A certificate provider instance.
  FakeCerts certs() const { return make<FakeCerts>(WEIR_KIND_CERTS); }

private:
  friend class FakeHost;

  template <class D> D make(weir_kind_t kind) const {
    if (!ok()) {
      throw std::logic_error("instance of a module whose configuration failed:\n" + errors_text());
    }
    if (state_->module.module.kind != kind) {
      throw std::logic_error(std::string("module '") + state_->module.module.name + "' is a " +
                             detail::kind_name(state_->module.module.kind) + " module, not " +
                             detail::kind_name(kind));
    }
    std::string name =
        std::string(state_->module.module.name) + "#" + std::to_string(state_->host->next_serial());
    return D(state_, std::move(name));
  }

  std::shared_ptr<detail::ConfigState> state_;
  weir_status_t status_ = WEIR_ERROR;
  std::vector<FakeConfigError> errors_;
};

inline FakeConfigured FakeHost::configure(const weir_module_t& module, const FakeValue& cfg,
                                          const std::string& path) {
  return configure(FakeModule{module, nullptr}, cfg, path);
}

inline FakeConfigured FakeHost::configure(const FakeModule& module, const FakeValue& cfg,
                                          const std::string& path) {
  const auto problems = FakePlugin::vtable_problems(module.module);
  if (!problems.empty()) {
    throw std::logic_error("module '" + std::string(module.module.name ? module.module.name : "") +
                           "' would be refused: " + problems.front());
  }
  FakeConfigured out;
  out.state_ = std::make_shared<detail::ConfigState>();
  out.state_->host = this;
  out.state_->module = module;
  out.state_->ctx = new_ctx(std::string(module.module.name) + "/config", module.module.kind, true);
  trees_.push_back(build(cfg, path));
  const size_t errors_before = config_errors_.size();
  ++configuring_;
  const auto* head = static_cast<const detail::VtableHead*>(module.module.vtable);
  out.status_ = head->config_new(&api_, reinterpret_cast<weir_host_ctx_t*>(out.state_->ctx),
                                 handle_of(trees_.back().get()), &out.state_->config);
  --configuring_;
  out.errors_.assign(config_errors_.begin() + static_cast<std::ptrdiff_t>(errors_before),
                     config_errors_.end());
  if (out.status_ == WEIR_OK && out.state_->config == nullptr) {
    add_misuse(out.state_->ctx->name + ": config_new returned WEIR_OK and a NULL object");
  }
  if (out.status_ != WEIR_OK && out.state_->config != nullptr) {
    add_misuse(out.state_->ctx->name + ": config_new failed but set *out");
  }
  if (out.status_ == WEIR_ERROR_CONFIG && out.errors_.empty()) {
    add_misuse(out.state_->ctx->name +
               ": config_new returned WEIR_ERROR_CONFIG without reporting an error");
  }
  return out;
}

} // namespace weir::testing
