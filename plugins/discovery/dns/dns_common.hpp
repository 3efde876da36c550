// Shared by the DNS discovery plugins (dns, srv, dns-sd): header-only, included by relative path
// ("../dns/dns_common.hpp"), built only against the SDK like the plugins themselves.
//
// What it holds:
//  - the keys every DNS discovery takes (refresh, ttl-min, ttl-max, retry-min, retry-max,
//    on-empty, family) and DNS name checks for the configuration;
//  - Queries: DNS queries of one instance through Host::dns_query, their answers copied and
//    filtered (records of the asked type whose owner is the asked name), cancelled on destruction;
//  - resolve_host: the A and/or AAAA records of one host name, as one result;
//  - Discovery: the refresh loop every module runs (a round of queries, then publish, then wait
//    for the TTL or the fixed interval, or back off after a failure), the warnings logged once per
//    streak, and publishing a set only when it changed.
#pragma once

#include <weir/sdk.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir_dns {

using weir::sdk::cat;
using weir::sdk::ConfigReader;
using weir::sdk::DnsResult;
using weir::sdk::DnsStatus;
using weir::sdk::DnsType;
using weir::sdk::Host;
using weir::sdk::Target;
using Millis = std::chrono::milliseconds;

/// How long a round of queries may take before it is abandoned as a failure (a host bug must not
/// stop the refreshing; weir's own resolver gives up long before: [dns] timeout times tries).
inline constexpr Millis kRoundGuard{120'000};
/// The shortest ttl-min, refresh and retry-min.
inline constexpr Millis kShortest{100};

// ================================================================================================
// Names
// ================================================================================================

/// `name` lowercased, without one trailing dot (as the host reports names).
inline std::string normal_name(std::string_view name) {
  if (name.size() > 1 && name.back() == '.') {
    name.remove_suffix(1);
  }
  return weir::sdk::to_lower(name);
}

/// True when two DNS names are the same (ASCII case-insensitive, a trailing dot ignored).
inline bool same_name(std::string_view a, std::string_view b) {
  if (a.size() > 1 && a.back() == '.') {
    a.remove_suffix(1);
  }
  if (b.size() > 1 && b.back() == '.') {
    b.remove_suffix(1);
  }
  return weir::sdk::iequals(a, b);
}

/// True when `s` is an IPv4 or IPv6 address literal.
inline bool is_ip_literal(std::string_view s) {
  const std::string text(s);
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, text.c_str(), &a4) == 1 || inet_pton(AF_INET6, text.c_str(), &a6) == 1;
}

/// Why `name` is not a DNS name a module can ask for (empty when it is): dot-separated labels of
/// letters, digits, '-' and '_' (SRV and DNS-SD names start with "_"), 1..63 characters each,
/// 253 characters at most, one trailing dot allowed.
inline std::string dns_name_problem(std::string_view name) {
  if (name.size() > 1 && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty() || name == ".") {
    return "is empty";
  }
  if (name.size() > 253) {
    return "is longer than 253 characters";
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) {
      end = name.size();
    }
    const std::string_view label = name.substr(start, end - start);
    if (label.empty()) {
      return "has an empty label (two dots in a row, or a leading dot)";
    }
    if (label.size() > 63) {
      return cat("has a label longer than 63 characters ('", label.substr(0, 20), "...')");
    }
    for (const char c : label) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
      if (!ok) {
        return cat("has a character that is not a letter, a digit, '-' or '_' in label '", label,
                   "'");
      }
    }
    start = end + 1;
  }
  return {};
}

// ================================================================================================
// Configuration
// ================================================================================================

/// Which address records are asked for a host name.
enum class Family { V4, V6, Both };

/// The keys every DNS discovery module takes.
struct CommonConfig {
  std::optional<Millis> refresh; ///< nullopt: "ttl" (follow the answers' TTL)
  Millis ttl_min{1000};
  Millis ttl_max{300'000};
  Millis retry_min{1000};
  Millis retry_max{30'000};
  bool clear_on_empty = false; ///< on-empty = "clear"
  Family family = Family::Both;

  /// Read the common keys of `cfg` (the module's table). Each module lists them in its
  /// expect_only_keys.
  void read(const ConfigReader& cfg) {
    if (!cfg.host().can_resolve()) {
      cfg.error(old_host_message(cfg.host()));
    }
    read_refresh(cfg);
    ttl_min = cfg.get_duration("ttl-min", ttl_min, kShortest);
    if (const ConfigReader n = cfg.child("ttl-max")) {
      if (const std::optional<Millis> v = n.as_duration()) {
        if (*v < ttl_min) {
          n.error(
              cat("must be at least ttl-min (", ttl_min.count(), "ms), got ", v->count(), "ms"));
        } else {
          ttl_max = *v;
        }
      }
    } else {
      ttl_max = std::max(ttl_max, ttl_min);
    }
    retry_min = cfg.get_duration("retry-min", retry_min, kShortest);
    if (const ConfigReader n = cfg.child("retry-max")) {
      if (const std::optional<Millis> v = n.as_duration()) {
        if (*v < retry_min) {
          n.error(cat("must be at least retry-min (", retry_min.count(), "ms), got ", v->count(),
                      "ms"));
        } else {
          retry_max = *v;
        }
      }
    } else {
      retry_max = std::max(retry_max, retry_min);
    }
    if (const ConfigReader n = cfg.child("on-empty")) {
      if (const std::optional<std::string> s = n.as_string()) {
        if (*s == "keep" || *s == "clear") {
          clear_on_empty = *s == "clear";
        } else {
          n.error(cat("expected \"keep\" or \"clear\", got \"", *s, "\""));
        }
      }
    }
    if (const ConfigReader n = cfg.child("family")) {
      if (const std::optional<std::string> s = n.as_string()) {
        if (*s == "ipv4") {
          family = Family::V4;
        } else if (*s == "ipv6") {
          family = Family::V6;
        } else if (*s == "both") {
          family = Family::Both;
        } else {
          n.error(cat("expected \"ipv4\", \"ipv6\" or \"both\", got \"", *s, "\""));
        }
      }
    }
  }

  /// "A/AAAA", "A" or "AAAA": the address records asked for.
  [[nodiscard]] std::string_view address_types() const noexcept {
    return family == Family::V4 ? "A" : (family == Family::V6 ? "AAAA" : "A/AAAA");
  }

  /// "needs ABI 1.2" message, naming what the host has.
  static std::string old_host_message(const Host& host) {
    std::string msg = "DNS discovery needs a weir whose plugin ABI is 1.2 or later (weir resolves "
                      "the names); this host";
    if (host.api() != nullptr) {
      msg += cat(" speaks ABI ", host.api()->abi_major, ".", host.api()->abi_minor);
    }
    msg += " and has no dns_query";
    return msg;
  }

private:
  void read_refresh(const ConfigReader& cfg) {
    const ConfigReader n = cfg.child("refresh");
    if (!n) {
      return;
    }
    const weir_config_type_t type = n.type();
    std::optional<std::string> text;
    if (type == WEIR_CONFIG_STRING) {
      text = n.as_string();
      if (text && *text == "ttl") {
        return;
      }
    }
    uint64_t ms = 0;
    const weir_host_api_t* api = cfg.host().api();
    if ((type != WEIR_CONFIG_STRING && type != WEIR_CONFIG_INTEGER) ||
        api->config_duration_ms(n.node(), &ms) != WEIR_OK) {
      std::string got(weir::sdk::config_type_name(type));
      if (text && text->size() <= 40) {
        got += " \"" + *text + "\"";
      }
      n.error(cat("expected \"ttl\" or a duration such as \"30s\" (or an integer of "
                  "milliseconds), got ",
                  got));
      return;
    }
    if (std::cmp_less(ms, kShortest.count())) {
      n.error(cat("must be \"ttl\" or at least ", kShortest.count(), "ms, got ", ms, "ms"));
      return;
    }
    refresh = Millis(static_cast<Millis::rep>(
        std::min<uint64_t>(ms, static_cast<uint64_t>(std::numeric_limits<Millis::rep>::max()))));
  }
};

/// Read a required DNS name at `key` (lowercased, without the trailing dot). `what` names it in
/// errors ("a host name").
inline std::string read_name(const ConfigReader& cfg, std::string_view key, std::string_view what,
                             bool allow_ip) {
  const ConfigReader n = cfg.child(key);
  if (!n) {
    cfg.error(cat("missing required key '", key, "' (", what, ")"));
    return {};
  }
  const std::optional<std::string> s = n.as_string();
  if (!s) {
    return {};
  }
  if (!allow_ip && is_ip_literal(*s)) {
    n.error(cat("'", *s,
                "' is an IP address, not a name to resolve (use the static discovery for "
                "fixed addresses)"));
    return {};
  }
  if (const std::string problem = dns_name_problem(*s); !problem.empty()) {
    n.error(cat("'", *s, "' is not a valid DNS name: it ", problem));
    return {};
  }
  return normal_name(*s);
}

// ================================================================================================
// Answers
// ================================================================================================

/// One answer record, copied out of the host's result.
struct Record {
  DnsType type = DnsType::A;
  uint32_t ttl = 0;
  std::string name;
  std::string address;
  std::string target;
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::vector<std::string> txt;
};

/// A query's outcome, with the records that answer it.
struct Answer {
  DnsStatus status = DnsStatus::Error;
  std::string error;
  std::vector<Record> records; ///< of the asked type and name, in the order received
  uint32_t negative_ttl = 0;
  size_t ignored = 0; ///< records of other types or names, left out
};

/// Copy the records of `result` that answer a `type` query for `name`: records of other types are
/// ignored, and so are records whose owner is another name, except when no record is owned by
/// `name` (the name is an alias: the host followed its CNAMEs), then those owned by the first
/// record's owner are taken.
inline Answer take_answer(const DnsResult& result, std::string_view name, DnsType type) {
  Answer a;
  a.status = result.status;
  a.error = std::string(result.error);
  a.negative_ttl = result.negative_ttl;
  std::string_view owner;
  bool by_name = false;
  for (const auto& r : result.records) {
    if (r.type == type && same_name(r.name, name)) {
      by_name = true;
      break;
    }
  }
  for (const auto& r : result.records) {
    if (r.type != type) {
      ++a.ignored;
      continue;
    }
    if (!by_name && owner.empty()) {
      owner = r.name;
    }
    if (!same_name(r.name, by_name ? name : owner)) {
      ++a.ignored;
      continue;
    }
    Record c;
    c.type = r.type;
    c.ttl = r.ttl;
    c.name = std::string(r.name);
    c.address = std::string(r.address);
    c.target = std::string(r.target);
    c.priority = r.priority;
    c.weight = r.weight;
    c.port = r.port;
    c.txt.assign(r.txt.begin(), r.txt.end());
    a.records.push_back(std::move(c));
  }
  return a;
}

/// The running DNS queries of one instance. Each answer reaches its callback copied and filtered
/// (take_answer); what still runs when this object goes is cancelled.
class Queries {
public:
  using Done = std::function<void(Answer)>;

  explicit Queries(Host host) noexcept : host_(host) {}
  Queries(const Queries&) = delete;
  Queries& operator=(const Queries&) = delete;
  ~Queries() { cancel_all(); }

  /// Ask for the `type` records of `name`. `done` runs once with the answer; when the host does
  /// not start the query, `done` runs now with an error.
  void start(const std::string& name, DnsType type, const Done& done) {
    const uint64_t serial = ++serial_;
    const weir_request_id_t id =
        host_.dns_query(name, type, [this, serial, name, type, done](const DnsResult& r) {
          running_.erase(serial);
          done(take_answer(r, name, type));
        });
    if (id == 0) {
      Answer a;
      a.status = DnsStatus::Error;
      a.error = "the query could not start (see weir's log)";
      done(std::move(a));
      return;
    }
    running_.emplace(serial, id);
  }

  /// Cancel every running query: their callbacks will not run.
  void cancel_all() noexcept {
    const auto running = std::move(running_);
    running_.clear();
    for (const auto& [serial, id] : running) {
      host_.cancel_request(id);
    }
  }

  /// Number of queries running.
  [[nodiscard]] size_t running() const noexcept { return running_.size(); }

private:
  Host host_;
  uint64_t serial_ = 0;
  std::map<uint64_t, weir_request_id_t> running_;
};

/// Runs `done` once every task added has completed and seal() was called (so tasks that complete
/// at once, while more are being added, do not end it early).
class Join {
public:
  explicit Join(std::function<void()> done) : done_(std::move(done)) {}
  void add() noexcept { ++pending_; }
  void complete() {
    if (--pending_ == 0 && done_) {
      std::function<void()> done = std::move(done_);
      done_ = nullptr;
      done();
    }
  }
  void seal() { complete(); }

private:
  size_t pending_ = 1; // the seal
  std::function<void()> done_;
};

// ================================================================================================
// Addresses
// ================================================================================================

/// An IP address, ordered IPv4 first, then by its bytes.
struct Address {
  int family = AF_INET;
  std::array<unsigned char, 16> bytes{};
  std::string text; ///< canonical ("10.0.0.1", "2001:db8::1")

  friend bool operator<(const Address& a, const Address& b) {
    return a.family != b.family ? a.family < b.family : a.bytes < b.bytes;
  }
  friend bool operator==(const Address& a, const Address& b) {
    return a.family == b.family && a.bytes == b.bytes;
  }

  /// "ip:port" or "[ipv6]:port".
  [[nodiscard]] std::string with_port(uint16_t port) const {
    return family == AF_INET6 ? cat("[", text, "]:", port) : cat(text, ":", port);
  }
};

/// The address of an A (IPv4) or AAAA (IPv6) record's text; nullopt when it is not one.
inline std::optional<Address> parse_address(std::string_view text, DnsType type) {
  const std::string s(text);
  Address a;
  char buf[INET6_ADDRSTRLEN] = {};
  if (type == DnsType::A) {
    in_addr a4{};
    if (inet_pton(AF_INET, s.c_str(), &a4) != 1 ||
        inet_ntop(AF_INET, &a4, buf, sizeof(buf)) == nullptr) {
      return std::nullopt;
    }
    a.family = AF_INET;
    std::memcpy(a.bytes.data(), &a4, sizeof(a4));
  } else {
    in6_addr a6{};
    if (inet_pton(AF_INET6, s.c_str(), &a6) != 1 ||
        inet_ntop(AF_INET6, &a6, buf, sizeof(buf)) == nullptr) {
      return std::nullopt;
    }
    a.family = AF_INET6;
    std::memcpy(a.bytes.data(), &a6, sizeof(a6));
  }
  a.text = buf;
  return a;
}

/// The smallest of the TTLs added (seconds); none until one is added.
class TtlMin {
public:
  void add(uint32_t ttl) noexcept { value_ = value_ ? std::min(*value_, ttl) : ttl; }
  /// Add a negative TTL (an SOA minimum): 0 means unknown and is not added.
  void add_negative(uint32_t ttl) noexcept {
    if (ttl != 0) {
      add(ttl);
    }
  }
  void add(const TtlMin& other) noexcept {
    if (other.value_) {
      add(*other.value_);
    }
  }
  [[nodiscard]] std::optional<uint32_t> value() const noexcept { return value_; }

private:
  std::optional<uint32_t> value_;
};

/// The addresses of one host name (its A and/or AAAA records).
struct HostAddresses {
  enum class Kind {
    Ok,       ///< at least one address
    NoData,   ///< the name exists but has no address record of the family
    NotFound, ///< the name does not exist (NXDOMAIN)
    Error,    ///< a query failed (server failure, timeout, ...)
  };
  Kind kind = Kind::Error;
  std::vector<Address> addresses; ///< sorted, each once
  TtlMin ttl;                     ///< of the address records used
  TtlMin negative;                ///< the negative TTLs of the queries without a record
  std::string error;              ///< Kind::Error: why
  size_t ignored = 0;             ///< records left out (other types or names, bad addresses)
};

/// Resolve `name`'s addresses of `family` through `queries`; `done` runs once with the combined
/// result: Error when a query failed, else Ok when any address was found, else NotFound when a
/// query said NXDOMAIN, else NoData.
inline void resolve_host(Queries& queries, const std::string& name, Family family,
                         std::function<void(HostAddresses)> done) {
  struct State {
    HostAddresses result;
    bool not_found = false;
    std::string first_error;
  };
  auto state = std::make_shared<State>();
  auto join = std::make_shared<Join>([state, done = std::move(done)] {
    HostAddresses& r = state->result;
    std::sort(r.addresses.begin(), r.addresses.end());
    r.addresses.erase(std::unique(r.addresses.begin(), r.addresses.end()), r.addresses.end());
    if (!state->first_error.empty()) {
      r.kind = HostAddresses::Kind::Error;
      r.error = state->first_error;
    } else if (!r.addresses.empty()) {
      r.kind = HostAddresses::Kind::Ok;
    } else {
      r.kind = state->not_found ? HostAddresses::Kind::NotFound : HostAddresses::Kind::NoData;
    }
    done(std::move(r));
  });
  std::vector<DnsType> types;
  if (family != Family::V6) {
    types.push_back(DnsType::A);
  }
  if (family != Family::V4) {
    types.push_back(DnsType::Aaaa);
  }
  for (const DnsType type : types) {
    join->add();
    queries.start(name, type, [state, join, type](Answer a) {
      HostAddresses& r = state->result;
      r.ignored += a.ignored;
      if (a.status == DnsStatus::Error) {
        if (state->first_error.empty()) {
          state->first_error = a.error.empty() ? std::string("failed") : a.error;
        }
      } else if (a.status == DnsStatus::NotFound) {
        state->not_found = true;
        r.negative.add_negative(a.negative_ttl);
      } else {
        bool used = false;
        for (const Record& rec : a.records) {
          if (std::optional<Address> addr = parse_address(rec.address, type)) {
            r.addresses.push_back(std::move(*addr));
            r.ttl.add(rec.ttl);
            used = true;
          } else {
            ++r.ignored;
          }
        }
        if (!used) {
          r.negative.add_negative(a.negative_ttl);
        }
      }
      join->complete();
    });
  }
  join->seal();
}

// ================================================================================================
// Warnings once per streak
// ================================================================================================

/// Problems that last (a name that fails to resolve, a host that does not exist): the first
/// occurrence is a warning, the following ones debug lines, and the end of the streak an info
/// line. Keys no round mentions any more are forgotten (prune()).
class Streaks {
public:
  explicit Streaks(Host host) noexcept : host_(host) {}

  /// The problem `key` occurred: `first` at WARN when it is new, else `again` at DEBUG.
  void problem(const std::string& key, const std::string& first, const std::string& again) {
    touched_.insert(key);
    if (active_.insert(key).second) {
      host_.warn(first);
    } else {
      host_.debug(again);
    }
  }
  /// The problem `key` did not occur: `end` at INFO when it had.
  void fine(const std::string& key, const std::string& end) {
    touched_.insert(key);
    if (active_.erase(key) != 0 && !end.empty()) {
      host_.info(end);
    }
  }
  /// True while `key` is a problem.
  [[nodiscard]] bool active(const std::string& key) const { return active_.count(key) != 0; }
  /// Forget the problems no call mentioned since the last prune().
  void prune() {
    std::erase_if(active_, [this](const std::string& k) { return touched_.count(k) == 0; });
    touched_.clear();
  }

private:
  Host host_;
  std::set<std::string> active_;
  std::set<std::string> touched_;
};

// ================================================================================================
// The refresh loop
// ================================================================================================

/// What a round of queries found.
struct Outcome {
  enum class Kind {
    Targets,     ///< a non-empty set
    Empty,       ///< nothing (NXDOMAIN, no records, no usable record): `on-empty` decides
    Unavailable, ///< the service says it is not available (SRV target "."): publish the empty set
    Failed,      ///< the main query failed: keep the last set, back off
  };
  Kind kind = Kind::Failed;
  std::vector<Target> targets; ///< Kind::Targets
  std::string why;             ///< Empty, Unavailable: what was found; Failed: the error
  TtlMin ttl;                  ///< of the records used (or the negative TTLs); none = unknown
  bool degraded = false;       ///< a secondary lookup failed: back off as after a failure
};

/// The refresh loop of one discovery instance. A module derives from it, implements
/// run_round() (start queries through `queries_`, then call finish() once with what they found),
/// and calls start() from its start hook.
///
/// Rounds never overlap: the next one is scheduled when a round finishes, after the clamped TTL
/// (refresh = "ttl") or the fixed `refresh`, or after the retry delay (retry-min doubling up to
/// retry-max) when the round failed or was degraded. A round the host does not finish within
/// kRoundGuard is cancelled and counts as failed. A set is published only when it differs from
/// the last one published.
class Discovery {
public:
  /// The discovery of `name`, whose main query asks for `types` ("A/AAAA", "SRV", "PTR").
  Discovery(Host host, const CommonConfig& config, std::string name, std::string types)
      : host_(host), config_(config), name_(std::move(name)), types_(std::move(types)),
        queries_(host), streaks_(host), timers_(host), retry_(config.retry_min) {
    if (!host.can_resolve()) {
      throw std::runtime_error(CommonConfig::old_host_message(host));
    }
  }
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;
  virtual ~Discovery() = default; // queries_ and timers_ cancel what runs

  /// The start hook: the first round (its answers come later; nothing is published before).
  weir_status_t start() {
    if (!started_) {
      started_ = true;
      begin_round();
    }
    return WEIR_OK;
  }

protected:
  /// Start the queries of one round; call finish() once when they are done.
  virtual void run_round() = 0;

  /// End the running round with what it found.
  void finish(Outcome outcome) {
    if (!running_) {
      return;
    }
    running_ = false;
    timers_.cancel(guard_);
    guard_ = 0;
    Millis next = refresh_delay(outcome.ttl);
    switch (outcome.kind) {
    case Outcome::Kind::Failed:
      next = retry_delay();
      streaks_.problem("fail " + name_,
                       cat("resolving ", name_, " (", types_, ") failed: ", outcome.why, "; ",
                           keeping(), "; retrying in ", next.count(), "ms"),
                       cat("resolving ", name_, " failed again: ", outcome.why, "; retrying in ",
                           next.count(), "ms"));
      break;
    case Outcome::Kind::Empty:
      streaks_.fine("fail " + name_, cat("resolving ", name_, " works again"));
      streaks_.fine("unavailable " + name_, "");
      streaks_.problem(
          "empty " + name_,
          cat(outcome.why, "; ",
              config_.clear_on_empty ? std::string("publishing an empty set") : keeping()),
          cat(outcome.why, " (still)"));
      if (config_.clear_on_empty) {
        publish({});
      }
      break;
    case Outcome::Kind::Unavailable:
      streaks_.fine("fail " + name_, cat("resolving ", name_, " works again"));
      streaks_.fine("empty " + name_, "");
      streaks_.problem("unavailable " + name_, cat(outcome.why, "; publishing an empty set"),
                       cat(outcome.why, " (still)"));
      publish({});
      break;
    case Outcome::Kind::Targets:
      streaks_.fine("fail " + name_, cat("resolving ", name_, " works again"));
      streaks_.fine("empty " + name_,
                    cat(name_, " has ", outcome.targets.size(), " target(s) again"));
      streaks_.fine("unavailable " + name_, cat(name_, " is available again"));
      publish(std::move(outcome.targets));
      break;
    }
    if (outcome.kind != Outcome::Kind::Failed) {
      streaks_.prune(); // a complete round: forget the problems of names no longer used
      if (outcome.degraded) {
        next = retry_delay();
      } else {
        retry_ = config_.retry_min;
      }
    }
    schedule(next);
  }

  /// The delay before the next try after a failure (retry-min, doubling up to retry-max), and
  /// the one after it.
  Millis retry_delay() {
    const Millis now = retry_;
    retry_ = std::min(config_.retry_max, retry_ * 2);
    return now;
  }

  /// The retry delay the next failure would get (for messages).
  [[nodiscard]] Millis next_retry() const noexcept { return retry_; }

  /// "keeping the last 3 target(s)" or "nothing published yet".
  [[nodiscard]] std::string keeping() const {
    if (!published_) {
      return "nothing published yet";
    }
    return cat("keeping the last ", published_->size(), " target(s)");
  }

  Host host_;
  const CommonConfig& config_;
  std::string name_;  ///< the name the discovery is about (for messages)
  std::string types_; ///< what its main query asks for (for messages)
  Queries queries_;
  Streaks streaks_;

private:
  void begin_round() {
    running_ = true;
    guard_ = timers_.after(kRoundGuard, [this] {
      guard_ = 0;
      queries_.cancel_all();
      finish(Outcome{Outcome::Kind::Failed,
                     {},
                     cat("no answer from weir's resolver within ", kRoundGuard.count(), "ms"),
                     {},
                     false});
    });
    run_round();
  }

  [[nodiscard]] Millis refresh_delay(const TtlMin& ttl) const {
    if (config_.refresh) {
      return *config_.refresh;
    }
    const Millis from_ttl =
        ttl.value() ? Millis(static_cast<Millis::rep>(*ttl.value()) * 1000) : config_.ttl_min;
    return std::clamp(from_ttl, config_.ttl_min, config_.ttl_max);
  }

  void schedule(Millis delay) {
    timer_ = timers_.after(delay, [this] {
      timer_ = 0;
      begin_round();
    });
    if (timer_ == 0) {
      host_.error("cannot start a timer: ", name_, " is no longer refreshed");
    } else {
      host_.debug("next resolution of ", name_, " in ", delay.count(), "ms");
    }
  }

  static bool same_set(const std::vector<Target>& a, const std::vector<Target>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Target& x, const Target& y) {
      return x.address == y.address && x.weight == y.weight && x.id == y.id &&
             x.priority == y.priority && x.metadata == y.metadata;
    });
  }

  void publish(std::vector<Target> targets) {
    if (published_ && same_set(*published_, targets)) {
      host_.debug(name_, ": no change (", targets.size(), " target(s))");
      return;
    }
    const weir_status_t st = host_.publish_targets(targets);
    if (st != WEIR_OK) {
      host_.error("publishing ", targets.size(), " target(s) of ", name_, " failed: status ", st);
      return;
    }
    std::string list;
    for (size_t i = 0; i < targets.size() && i < 8; ++i) {
      list += (i == 0 ? "" : ", ") + targets[i].address;
    }
    if (targets.size() > 8) {
      list += cat(", ... (", targets.size() - 8, " more)");
    }
    host_.info(name_, ": published ", targets.size(), " target(s)",
               targets.empty() ? std::string() : ": " + list);
    published_ = std::move(targets);
  }

  weir::sdk::Timers timers_;
  Millis retry_;
  bool started_ = false;
  bool running_ = false;
  weir_timer_id_t timer_ = 0;
  weir_timer_id_t guard_ = 0;
  std::optional<std::vector<Target>> published_;
};

/// A candidate target of an SRV-based module, ordered for publishing: priority, then address.
struct Candidate {
  Target target;
  Address address;
  uint16_t port = 0;
};

/// Sort `candidates` (priority, then address and port) and keep one per address: when two share
/// an address, the one with the lower priority (then the higher weight) stays.
inline std::vector<Target> finish_candidates(std::vector<Candidate> candidates) {
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) {
                     if (a.target.priority != b.target.priority) {
                       return a.target.priority < b.target.priority;
                     }
                     if (a.target.weight != b.target.weight) {
                       return a.target.weight > b.target.weight;
                     }
                     return false;
                   });
  std::set<std::string> seen;
  std::vector<Candidate> kept;
  for (Candidate& c : candidates) {
    if (seen.insert(c.target.address).second) {
      kept.push_back(std::move(c));
    }
  }
  std::stable_sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) {
    if (a.target.priority != b.target.priority) {
      return a.target.priority < b.target.priority;
    }
    if (!(a.address == b.address)) {
      return a.address < b.address;
    }
    return a.port < b.port;
  });
  std::vector<Target> out;
  out.reserve(kept.size());
  for (Candidate& c : kept) {
    out.push_back(std::move(c.target));
  }
  return out;
}

/// An SRV target host's addresses, kept across rounds so that a failed lookup can reuse them.
class HostCache {
public:
  /// Remember the addresses of `host` (a successful lookup).
  void set(const std::string& host, std::vector<Address> addresses) {
    cache_[host] = std::move(addresses);
  }
  /// Forget `host` (it does not exist, or has no address any more).
  void erase(const std::string& host) { cache_.erase(host); }
  /// The last addresses of `host`; nullptr when none.
  [[nodiscard]] const std::vector<Address>* find(const std::string& host) const {
    auto it = cache_.find(host);
    return it != cache_.end() ? &it->second : nullptr;
  }
  /// Keep only the hosts in `used`.
  void retain(const std::set<std::string>& used) {
    std::erase_if(cache_, [&used](const auto& e) { return used.count(e.first) == 0; });
  }

private:
  std::map<std::string, std::vector<Address>> cache_;
};

/// The addresses of a set of SRV target hosts, resolved in parallel, with the per-host rules of
/// the SRV-based modules: a failed lookup keeps the host's previous addresses (else skips it)
/// and marks the round degraded; NXDOMAIN or no address record skips the host with a warning
/// (once per streak). `context` completes messages ("SRV target", "of _http._tcp.example.test").
class HostResolver {
public:
  struct Result {
    std::map<std::string, std::vector<Address>> addresses; ///< usable hosts only
    TtlMin ttl;                                            ///< of the address records used
    TtlMin negative; ///< the negative TTLs of the hosts skipped
    bool degraded = false;
  };

  HostResolver(Queries& queries, Streaks& streaks, HostCache& cache, const CommonConfig& config)
      : queries_(queries), streaks_(streaks), cache_(cache), config_(config) {}

  /// Resolve `hosts`; `done` runs once with the result (the cache is updated and pruned to them).
  void resolve(const std::set<std::string>& hosts, const std::string& of, Millis retry,
               std::function<void(Result)> done) {
    auto result = std::make_shared<Result>();
    auto join = std::make_shared<Join>([this, result, hosts, done = std::move(done)] {
      cache_.retain(hosts);
      done(std::move(*result));
    });
    for (const std::string& host : hosts) {
      join->add();
      resolve_host(queries_, host, config_.family,
                   [this, host, of, retry, result, join](HostAddresses r) {
                     take(host, of, retry, std::move(r), *result);
                     join->complete();
                   });
    }
    join->seal();
  }

private:
  void take(const std::string& host, const std::string& of, Millis retry, HostAddresses r,
            Result& out) {
    const std::string fail_key = "fail " + host;
    const std::string missing_key = "missing " + host;
    switch (r.kind) {
    case HostAddresses::Kind::Ok:
      streaks_.fine(fail_key, cat("resolving ", host, " works again"));
      streaks_.fine(missing_key, cat("SRV target ", host, " ", of, " has addresses again"));
      out.ttl.add(r.ttl);
      cache_.set(host, r.addresses);
      out.addresses[host] = std::move(r.addresses);
      break;
    case HostAddresses::Kind::Error: {
      out.degraded = true;
      const std::vector<Address>* last = cache_.find(host);
      const std::string consequence = last != nullptr
                                          ? cat("keeping its last ", last->size(), " address(es)")
                                          : std::string("skipping it");
      streaks_.problem(fail_key,
                       cat("resolving SRV target ", host, " ", of, " (", config_.address_types(),
                           ") failed: ", r.error, "; ", consequence, "; retrying in ",
                           retry.count(), "ms"),
                       cat("resolving ", host, " failed again: ", r.error));
      if (last != nullptr) {
        out.addresses[host] = *last;
      }
      break;
    }
    case HostAddresses::Kind::NotFound:
    case HostAddresses::Kind::NoData: {
      streaks_.fine(fail_key, cat("resolving ", host, " works again"));
      const std::string why = r.kind == HostAddresses::Kind::NotFound
                                  ? std::string("does not exist (NXDOMAIN)")
                                  : cat("has no ", config_.address_types(), " records");
      streaks_.problem(missing_key, cat("SRV target ", host, " ", of, " ", why, "; skipping it"),
                       cat("SRV target ", host, " ", why, " (still)"));
      cache_.erase(host);
      out.negative.add(r.negative);
      break;
    }
    }
  }

  Queries& queries_;
  Streaks& streaks_;
  HostCache& cache_;
  const CommonConfig& config_;
};

/// One candidate per address of each SRV record's target host (hosts without a usable address
/// are left out). `fill(candidate, record)` sets what the module adds: weight, metadata.
template <class Fill>
void add_srv_candidates(const std::vector<Record>& records, const HostResolver::Result& hosts,
                        std::vector<Candidate>& out, Fill&& fill) {
  for (const Record& rec : records) {
    auto it = hosts.addresses.find(rec.target);
    if (it == hosts.addresses.end()) {
      continue;
    }
    for (const Address& address : it->second) {
      Candidate c;
      c.address = address;
      c.port = rec.port;
      c.target.address = address.with_port(rec.port);
      c.target.id = c.target.address;
      c.target.weight = rec.weight == 0 ? 1 : rec.weight;
      c.target.priority = rec.priority;
      fill(c, rec);
      out.push_back(std::move(c));
    }
  }
}

/// The outcome of an SRV-based round: the candidates as targets; without any, a failure when
/// lookups failed (the last set stays: `failed_why`), else an empty answer (`empty_why`).
inline Outcome srv_outcome(std::vector<Candidate> candidates, bool degraded, TtlMin ttl,
                           const HostResolver::Result& hosts, std::string failed_why,
                           std::string empty_why) {
  Outcome out;
  out.degraded = degraded || hosts.degraded;
  out.ttl = ttl;
  out.targets = finish_candidates(std::move(candidates));
  if (out.targets.empty() && out.degraded) {
    out.kind = Outcome::Kind::Failed;
    out.why = std::move(failed_why);
  } else if (out.targets.empty()) {
    out.kind = Outcome::Kind::Empty;
    out.why = std::move(empty_why);
    out.ttl.add(hosts.negative);
  } else {
    out.kind = Outcome::Kind::Targets;
    out.ttl.add(hosts.ttl);
  }
  return out;
}

/// True when an SRV target means "no service" (RFC 2782: a target of ".").
inline bool is_root_target(std::string_view target) {
  return target.empty() || target == ".";
}

} // namespace weir_dns
