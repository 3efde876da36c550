// health/active: active health checks. The host owns the sockets (plugin ABI 1.2): each check is
// a probe or a fetch the host runs for us and reports back.
//
//   [upstreams.app]
//   health = { use = "http", path = "/healthz", interval = "5s", fall = 3, rise = 2 }
//
// Modules (one library, one scheduler):
//   tcp   open a connection to the target (TCP, or its Unix socket), then close it
//   tls   the same plus a TLS handshake with the upstream group's TLS settings
//   http  an HTTP/1.1 request (GET / by default); the status must be in `expect-status` and the
//         body may have to contain `body-contains`; scheme "https" uses the group's TLS settings
//
// Scheduling: every target is checked on its own timer. The first check of a target comes after a
// random fraction of the interval (so a large group does not check every target at once), each
// next one `interval` (times 1 +- random * jitter) after the previous one ended. A target becomes
// unhealthy after `fall` consecutive failed checks and healthy again after `rise` consecutive
// successful ones; the host hears of it (report_health, with the reason) only on a transition. A
// target that leaves the set has its timer and running check cancelled; a target that stays keeps
// its state (matched by its id, or its address when it has none); a new one starts in `initial`
// ("unhealthy" is reported at once, so the host does not use it before it passed `rise` checks).
// A check the host does not answer within timeout + 1s counts as failed (a guard timer), so a host
// bug cannot freeze checking. Needs a host with ABI 1.2 (probe_start / fetch_start): on an older
// one the configuration is refused.
#include <weir/sdk.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using weir::sdk::cat;
using weir::sdk::ConfigReader;
using weir::sdk::Host;
using Millis = std::chrono::milliseconds;

/// Response body bytes an HTTP check keeps for `body-contains`.
constexpr uint64_t kMaxBody = 65536;
/// How long after a check's timeout the guard timer gives up on the host's answer.
constexpr Millis kGuardSlack{1000};

/// "needs ABI 1.2" message, naming what the host has.
std::string old_host_message(const Host& host) {
  std::string msg = "active health checks need a weir whose plugin ABI is 1.2 or later (the host "
                    "runs the probes and requests); this host";
  if (host.api() != nullptr) {
    msg += cat(" speaks ABI ", host.api()->abi_major, ".", host.api()->abi_minor);
  }
  msg += " and has no probe_start/fetch_start";
  return msg;
}

// ================================================================================================
// Configuration
// ================================================================================================

/// Keys every module takes.
struct CommonConfig {
  Millis interval{5000};
  Millis timeout{2000};
  uint32_t rise = 2;
  uint32_t fall = 3;
  double jitter = 0.1;
  bool initial_healthy = true;

  void read(const ConfigReader& cfg) {
    if (!cfg.host().can_probe()) {
      cfg.error(old_host_message(cfg.host()));
    }
    interval = cfg.get_duration("interval", Millis(5000), Millis(10));
    // The default timeout is 2s, or the interval when that is shorter.
    timeout = std::min(Millis(2000), interval);
    if (const ConfigReader t = cfg.child("timeout")) {
      if (const std::optional<Millis> v = t.as_duration(Millis(1))) {
        if (*v > interval) {
          t.error(cat("must not exceed the interval (", interval.count(), "ms), got ", v->count(),
                      "ms"));
        } else {
          timeout = *v;
        }
      }
    }
    rise = cfg.get_int<uint32_t>("rise", 2, 1, 100);
    fall = cfg.get_int<uint32_t>("fall", 3, 1, 100);
    jitter = cfg.get_double("jitter", 0.1, 0.0, 0.5);
    if (const ConfigReader i = cfg.child("initial")) {
      if (const std::optional<std::string> s = i.as_string()) {
        if (*s == "healthy" || *s == "unhealthy") {
          initial_healthy = *s == "healthy";
        } else {
          i.error(cat("expected \"healthy\" or \"unhealthy\", got \"", *s, "\""));
        }
      }
    }
  }
};

/// Configuration of the tcp and tls modules: the common keys only.
struct ConnectConfig : CommonConfig {
  explicit ConnectConfig(ConfigReader& cfg) {
    cfg.expect_only_keys({"interval", "timeout", "rise", "fall", "jitter", "initial"});
    read(cfg);
  }
};

/// A closed range of HTTP statuses.
struct StatusRange {
  uint32_t low = 0;
  uint32_t high = 0;
  [[nodiscard]] bool contains(uint32_t s) const noexcept { return s >= low && s <= high; }
};

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

uint32_t to_number(std::string_view s) {
  uint32_t v = 0;
  for (char c : s) {
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v;
}

/// RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], 1..63 characters, not starting or
/// ending with '-', 253 characters at most.
bool valid_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  size_t start = 0;
  while (start <= host.size()) {
    size_t end = host.find('.', start);
    if (end == std::string_view::npos) {
      end = host.size();
    }
    const std::string_view label = host.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      const bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

/// Empty when `port` is a port number 1..65535, else the problem.
std::string check_port(std::string_view port) {
  if (!all_digits(port) || port.size() > 5) {
    return "invalid port '" + std::string(port) + "'";
  }
  const uint32_t v = to_number(port);
  if (v < 1 || v > 65535) {
    return "port " + std::string(port) + " is out of range (1..65535)";
  }
  return {};
}

/// Empty when `host` is a valid Host header value for a check: a host name, an IPv4 address or
/// a bracketed IPv6 address, with an optional port; else the problem.
std::string check_host_value(std::string_view host) {
  std::string_view name = host;
  std::string_view port;
  if (host.starts_with('[')) {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) {
      return "missing ']' after the IPv6 address";
    }
    const std::string ip(host.substr(1, close - 1));
    in6_addr a6{};
    if (ip.empty() || inet_pton(AF_INET6, ip.c_str(), &a6) != 1) {
      return "'" + ip + "' is not an IPv6 address";
    }
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return "unexpected '" + std::string(rest) + "' after the IPv6 address";
      }
      return check_port(rest.substr(1));
    }
    return {};
  }
  if (const size_t colon = host.find(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
    if (port.find(':') != std::string_view::npos) {
      return "an IPv6 address must be in brackets, e.g. \"[::1]:8080\"";
    }
    if (std::string p = check_port(port); !p.empty()) {
      return p;
    }
  }
  if (!name.empty() && name.find_first_not_of("0123456789.") == std::string_view::npos) {
    in_addr a4{};
    const std::string ip(name);
    if (inet_pton(AF_INET, ip.c_str(), &a4) != 1) {
      return "'" + ip + "' is not an IPv4 address";
    }
    return {};
  }
  if (!valid_hostname(name)) {
    return "'" + std::string(name) + "' is not a valid host name";
  }
  return {};
}

/// Configuration of the http module.
struct HttpConfig : CommonConfig {
  explicit HttpConfig(ConfigReader& cfg) {
    cfg.expect_only_keys({"interval", "timeout", "rise", "fall", "jitter", "initial", "method",
                          "path", "host", "scheme", "expect-status", "body-contains", "headers"});
    read(cfg);
    read_method(cfg);
    read_path(cfg);
    if (const ConfigReader h = cfg.child("host")) {
      if (std::optional<std::string> s = h.as_string()) {
        if (const std::string problem = check_host_value(*s); !problem.empty()) {
          h.error("invalid host \"" + *s + "\": " + problem +
                  " (expected a host name or address with an optional port, e.g. "
                  "\"app.example:8080\")");
        } else {
          host = std::move(*s);
        }
      }
    }
    if (const ConfigReader s = cfg.child("scheme")) {
      if (std::optional<std::string> v = s.as_string()) {
        if (*v == "http" || *v == "https") {
          https = *v == "https";
        } else {
          s.error(cat("expected \"http\" or \"https\", got \"", *v, "\""));
        }
      }
    }
    read_expect_status(cfg);
    if (const ConfigReader b = cfg.child("body-contains")) {
      if (std::optional<std::string> v = b.as_string()) {
        if (v->empty()) {
          b.error("must not be empty (leave the key out to not check the body)");
        } else if (v->size() > kMaxBody) {
          b.error(cat("is longer than the ", kMaxBody, " body bytes a check reads"));
        } else if (method == "HEAD") {
          b.error("cannot be used with method \"HEAD\": a HEAD response has no body");
        } else {
          body_contains = std::move(*v);
        }
      }
    }
    read_headers(cfg);
    what = cat(https ? "HTTPS" : "HTTP", " check ", method, " ", path);
  }

  void read_method(const ConfigReader& cfg) {
    const ConfigReader m = cfg.child("method");
    if (!m) {
      return;
    }
    std::optional<std::string> v = m.as_string();
    if (!v) {
      return;
    }
    if (!weir::sdk::is_header_name(*v)) { // a method is a token, as a header name is
      m.error(cat("\"", *v, "\" is not a valid method (a token such as \"GET\" or \"HEAD\")"));
    } else if (*v == "CONNECT") {
      m.error("CONNECT cannot be used for a health check");
    } else {
      method = std::move(*v);
    }
  }

  void read_path(const ConfigReader& cfg) {
    const ConfigReader p = cfg.child("path");
    if (!p) {
      return;
    }
    std::optional<std::string> v = p.as_string();
    if (!v) {
      return;
    }
    if (v->empty() || v->front() != '/') {
      p.error(cat("must start with \"/\", got \"", *v, "\""));
      return;
    }
    for (const char c : *v) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) {
        p.error("must not contain spaces, control or non-ASCII characters (percent-encode them)");
        return;
      }
      if (c == '#') {
        p.error("must not contain a fragment ('#')");
        return;
      }
    }
    path = std::move(*v);
  }

  /// One element of expect-status: an integer, or a string "200" or "200-399".
  std::optional<StatusRange> read_status_element(const ConfigReader& e) {
    const auto in_range = [&e](uint32_t s) {
      if (s < 100 || s > 599) {
        e.error(cat("status ", s, " is out of range (100..599)"));
        return false;
      }
      return true;
    };
    if (e.type() == WEIR_CONFIG_INTEGER) {
      const std::optional<int64_t> v = e.as_int();
      if (!v || *v < 100 || *v > 599) {
        e.error(cat("status ", v.value_or(0), " is out of range (100..599)"));
        return std::nullopt;
      }
      return StatusRange{static_cast<uint32_t>(*v), static_cast<uint32_t>(*v)};
    }
    if (e.type() != WEIR_CONFIG_STRING) {
      e.error(cat("expected a status (an integer) or a range such as \"200-399\", got ",
                  weir::sdk::config_type_name(e.type())));
      return std::nullopt;
    }
    const std::string s = *e.as_string();
    const size_t dash = s.find('-');
    const std::string_view low = std::string_view(s).substr(0, dash);
    const std::string_view high =
        dash == std::string::npos ? low : std::string_view(s).substr(dash + 1);
    if (!all_digits(low) || !all_digits(high)) {
      e.error(cat("\"", s, "\" is not a status or a range such as \"200-399\""));
      return std::nullopt;
    }
    const StatusRange r{to_number(low), to_number(high)};
    if (!in_range(r.low) || !in_range(r.high)) {
      return std::nullopt;
    }
    if (r.low > r.high) {
      e.error(cat("range \"", s, "\" is empty (its start is after its end)"));
      return std::nullopt;
    }
    return r;
  }

  void read_expect_status(const ConfigReader& cfg) {
    const ConfigReader node = cfg.child("expect-status");
    if (!node) {
      return;
    }
    std::vector<ConfigReader> elements;
    if (node.is_array()) {
      elements = node.elements();
      if (elements.empty()) {
        node.error("at least one status or range is required");
        return;
      }
    } else {
      elements.push_back(node);
    }
    std::vector<StatusRange> ranges;
    bool good = true;
    for (const ConfigReader& e : elements) {
      if (const std::optional<StatusRange> r = read_status_element(e)) {
        ranges.push_back(*r);
      } else {
        good = false;
      }
    }
    if (!good) {
      return;
    }
    expect = std::move(ranges);
    expect_text.clear();
    for (const StatusRange& r : expect) {
      expect_text += expect_text.empty() ? "" : ", ";
      expect_text += r.low == r.high ? cat(r.low) : cat(r.low, "-", r.high);
    }
  }

  void read_headers(const ConfigReader& cfg) {
    const std::optional<ConfigReader> table = cfg.get_table("headers");
    if (!table) {
      return;
    }
    table->each([this](std::string_view name, const ConfigReader& value) {
      std::optional<std::string> v = value.as_string();
      if (!v) {
        return;
      }
      if (!weir::sdk::is_header_name(name)) {
        value.error(cat("header name \"", name, "\" is not a token"));
      } else if (weir::sdk::iequals(name, "host")) {
        value.error("set the Host header with the 'host' key");
      } else if (weir::sdk::iequals(name, "content-length") ||
                 weir::sdk::iequals(name, "transfer-encoding") ||
                 weir::sdk::iequals(name, "connection")) {
        value.error(cat("header \"", name, "\" is set by weir"));
      } else if (!weir::sdk::is_header_value(*v)) {
        value.error(cat("the value of header \"", name, "\" must not contain CR, LF or NUL"));
      } else {
        headers.emplace_back(std::string(name), std::move(*v));
      }
    });
  }

  [[nodiscard]] bool status_expected(uint32_t status) const noexcept {
    return std::any_of(expect.begin(), expect.end(),
                       [status](const StatusRange& r) { return r.contains(status); });
  }

  std::string method = "GET";
  std::string path = "/";
  std::optional<std::string> host;
  bool https = false;
  std::vector<StatusRange> expect{{200, 399}};
  std::string expect_text = "200-399";
  std::optional<std::string> body_contains;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string what; // "HTTP check GET /healthz", the prefix of every reason
};

// ================================================================================================
// The scheduler
// ================================================================================================

/// The outcome of one check.
struct Outcome {
  bool ok = false;
  std::string reason; // "TCP check: connection refused", "HTTP check GET /: status 200"
};

/// Runs the checks of every target and keeps their health. A module derives from it and starts
/// one check in start_check().
class Scheduler {
public:
  Scheduler(Host host, const CommonConfig& config, std::string what)
      : host_(host), config_(config), what_(std::move(what)), timers_(host), random_(seed(this)) {
    if (!host.can_probe()) {
      throw std::runtime_error(old_host_message(host));
    }
  }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  virtual ~Scheduler() {
    for (auto& [key, t] : targets_) {
      host_.cancel_request(t->request);
    }
    // timers_ cancels its timers when it goes.
  }

  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    std::map<std::string, std::unique_ptr<Tracked>, std::less<>> next;
    std::vector<Tracked*> added;
    for (const weir::sdk::Target& target : targets) {
      const std::string_view key = target.key();
      if (next.find(key) != next.end()) {
        continue; // the same target twice: check it once
      }
      std::unique_ptr<Tracked> t;
      if (auto it = targets_.find(key); it != targets_.end()) {
        t = std::move(it->second);
        targets_.erase(it);
      } else {
        t = std::make_unique<Tracked>();
        t->key = std::string(key);
        t->healthy = config_.initial_healthy;
        added.push_back(t.get());
      }
      t->address = target.address;
      next.emplace(t->key, std::move(t));
    }
    for (auto& [key, gone] : targets_) {
      stop(*gone);
      host_.debug("stopped checking ", key, " (it left the target set)");
    }
    targets_ = std::move(next);
    for (Tracked* t : added) {
      if (!t->healthy) {
        report(*t, cat("initial state: unhealthy until ", config_.rise,
                       " consecutive successful check", config_.rise == 1 ? "" : "s"));
      }
      // The first check after a random fraction of the interval spreads the group's checks.
      const auto first = static_cast<Millis::rep>(
          std::floor(uniform() * static_cast<double>(config_.interval.count())));
      schedule(*t, Millis(first));
    }
  }

protected:
  using Done = std::function<void(Outcome)>;

  /// Start one check of `address`; `done` gets its outcome. Returns the host's request id, or 0
  /// when the check could not start (then `done` must not run).
  virtual weir_request_id_t start_check(const std::string& address, Done done) = 0;

  /// The reason for a failed probe or fetch, from the host's error.
  [[nodiscard]] std::string failure(std::string_view error) const {
    if (error == "timed out") {
      return cat(what_, ": timed out after ", config_.timeout.count(), "ms");
    }
    return cat(what_, ": ", error.empty() ? std::string_view("failed") : error);
  }

  Host host_;
  const CommonConfig& config_;
  std::string what_;

private:
  struct Tracked {
    std::string key;     // the host's identity of the target (its id, or its address)
    std::string address; // where to check it
    bool healthy = true;
    uint32_t successes = 0;        // consecutive
    uint32_t failures = 0;         // consecutive
    weir_timer_id_t timer = 0;     // the next check
    weir_timer_id_t guard = 0;     // gives up on the running check
    weir_request_id_t request = 0; // the running check
    uint64_t serial = 0;           // of the running check; 0 when none runs
    uint64_t checks = 0;           // checks started
  };

  static uint64_t seed(const void* self) {
    uint64_t s = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(self));
    try {
      std::random_device rd;
      s ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {
      // no entropy source: the address and the clock still differ between instances
    }
    return s ^ static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }

  /// Uniform in [0, 1).
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); }

  /// The wait before the next check: interval * (1 +- random * jitter).
  Millis next_wait() {
    const double factor = 1.0 + config_.jitter * (2.0 * uniform() - 1.0);
    const double ms = std::round(static_cast<double>(config_.interval.count()) * factor);
    return Millis(std::max<Millis::rep>(1, static_cast<Millis::rep>(ms)));
  }

  void schedule(Tracked& t, Millis delay) {
    Tracked* tp = &t;
    t.timer = timers_.after(delay, [this, tp] {
      tp->timer = 0;
      check(*tp);
    });
    if (t.timer == 0) {
      host_.error("cannot start a timer: checks of ", t.key, " stop");
    }
  }

  void check(Tracked& t) {
    Tracked* tp = &t;
    const uint64_t serial = ++t.checks;
    t.serial = serial;
    const weir_request_id_t id = start_check(t.address, [this, tp, serial](Outcome outcome) {
      finish(*tp, serial, std::move(outcome));
    });
    if (id == 0) {
      finish(t, serial, Outcome{false, cat(what_, ": the check could not start (see weir's log)")});
      return;
    }
    t.request = id;
    const Millis guard = config_.timeout + kGuardSlack;
    t.guard = timers_.after(guard, [this, tp, serial, guard] {
      tp->guard = 0;
      host_.cancel_request(tp->request);
      host_.warn("no result for the check of ", tp->key, " within ", guard.count(),
                 "ms; counted as failed");
      finish(*tp, serial,
             Outcome{false, cat(what_, ": timed out after ", config_.timeout.count(),
                                "ms (no result from the host)")});
    });
  }

  void finish(Tracked& t, uint64_t serial, Outcome outcome) {
    if (t.serial != serial) {
      return; // a stale result (the guard already counted this check)
    }
    t.serial = 0;
    t.request = 0;
    if (t.guard != 0) {
      timers_.cancel(t.guard);
      t.guard = 0;
    }
    if (outcome.ok) {
      t.failures = 0;
      t.successes = std::min<uint32_t>(t.successes + 1, 1'000'000);
      host_.debug(t.key, ": ", outcome.reason, " (", t.successes, " consecutive)");
      if (!t.healthy && t.successes >= config_.rise) {
        t.healthy = true;
        report(t, cat(outcome.reason, "; ", t.successes, " consecutive successful check",
                      t.successes == 1 ? "" : "s"));
      }
    } else {
      t.successes = 0;
      t.failures = std::min<uint32_t>(t.failures + 1, 1'000'000);
      host_.debug(t.key, ": ", outcome.reason, " (", t.failures, " consecutive failures)");
      if (t.healthy && t.failures >= config_.fall) {
        t.healthy = false;
        report(t, cat(outcome.reason, "; ", t.failures, " consecutive failed check",
                      t.failures == 1 ? "" : "s"));
      }
    }
    schedule(t, next_wait());
  }

  void report(const Tracked& t, const std::string& reason) {
    const weir_status_t st = host_.report_health(t.key, t.healthy, reason);
    if (st != WEIR_OK) {
      host_.warn("reporting ", t.key, " as ", t.healthy ? "healthy" : "unhealthy",
                 " failed: status ", st);
    }
  }

  void stop(Tracked& t) {
    timers_.cancel(t.timer);
    timers_.cancel(t.guard);
    host_.cancel_request(t.request);
    t.timer = 0;
    t.guard = 0;
    t.request = 0;
    t.serial = 0;
  }

  weir::sdk::Timers timers_;
  std::mt19937_64 random_;
  std::map<std::string, std::unique_ptr<Tracked>, std::less<>> targets_;
};

// ================================================================================================
// Modules
// ================================================================================================

/// tcp and tls: a connection probe.
template <weir::sdk::ProbeKind Kind> class ConnectCheck final : public Scheduler {
public:
  ConnectCheck(Host host, const ConnectConfig& config)
      : Scheduler(host, config, Kind == weir::sdk::ProbeKind::Tls ? "TLS check" : "TCP check") {}

protected:
  weir_request_id_t start_check(const std::string& address, Done done) override {
    weir::sdk::ProbeRequest req;
    req.address = address;
    req.kind = Kind;
    req.timeout = config_.timeout;
    return host_.probe(req, [this, done = std::move(done)](const weir::sdk::ProbeResult& r) {
      done(r.ok ? Outcome{true, what_ + ": connected"} : Outcome{false, failure(r.error)});
    });
  }
};
using TcpCheck = ConnectCheck<weir::sdk::ProbeKind::Tcp>;
using TlsCheck = ConnectCheck<weir::sdk::ProbeKind::Tls>;

/// The host part of a target address, for the Host header: "10.0.0.1:80" -> "10.0.0.1",
/// "[::1]:80" -> "[::1]", "unix:/run/app.sock" -> "localhost".
std::string host_part(std::string_view address) {
  if (address.starts_with("unix:")) {
    return "localhost";
  }
  if (address.starts_with('[')) {
    const size_t close = address.find(']');
    return std::string(close == std::string_view::npos ? address : address.substr(0, close + 1));
  }
  const size_t colon = address.rfind(':');
  return std::string(colon == std::string_view::npos ? address : address.substr(0, colon));
}

/// http: a request whose status (and body) must be as configured.
class HttpCheck final : public Scheduler {
public:
  HttpCheck(Host host, const HttpConfig& config)
      : Scheduler(host, config, config.what), http_(config) {}

protected:
  weir_request_id_t start_check(const std::string& address, Done done) override {
    weir::sdk::FetchRequest req;
    req.method = http_.method;
    req.url = cat(http_.https ? "https://" : "http://",
                  http_.host ? *http_.host : host_part(address), http_.path);
    req.connect_to = address;
    req.headers = http_.headers;
    req.timeout = config_.timeout;
    req.max_body = http_.body_contains ? kMaxBody : 1024;
    req.flags = http_.https ? WEIR_FETCH_UPSTREAM_TLS : 0u;
    return host_.fetch(req, [this, done = std::move(done)](const weir::sdk::FetchResult& r) {
      done(evaluate(r));
    });
  }

private:
  [[nodiscard]] Outcome evaluate(const weir::sdk::FetchResult& r) const {
    if (!r.ok) {
      return Outcome{false, failure(r.error)};
    }
    if (!http_.status_expected(r.status)) {
      return Outcome{false,
                     cat(what_, ": status ", r.status, " (expected ", http_.expect_text, ")")};
    }
    if (http_.body_contains && r.body.find(*http_.body_contains) == std::string_view::npos) {
      return Outcome{false, cat(what_, ": body does not contain \"", *http_.body_contains, "\"",
                                r.truncated ? cat(" (in its first ", r.body.size(), " bytes)")
                                            : std::string())};
    }
    return Outcome{true, cat(what_, ": status ", r.status)};
  }

  const HttpConfig& http_;
};

} // namespace

WEIR_SDK_PLUGIN("health-active", WEIR_PLUGIN_VERSION,
                weir::sdk::health_module<ConnectConfig, TcpCheck>("tcp"),
                weir::sdk::health_module<ConnectConfig, TlsCheck>("tls"),
                weir::sdk::health_module<HttpConfig, HttpCheck>("http"))
