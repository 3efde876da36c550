// Helpers shared by the DNS discovery plugin tests: a fixture that loads one plugin, and canned
// DNS answers given to the plugin's pending queries by name and type.
#pragma once

#include <weir/testing/fake_host.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace discovery_tests {

using weir::testing::FakeConfig;
using weir::testing::FakeConfigured;
using weir::testing::FakeDnsQuery;
using weir::testing::FakeDnsRecord;
using weir::testing::FakeHost;
using weir::testing::FakeRequestState;
using weir::testing::FakeTarget;
using weir::testing::FakeValue;
using Keys = std::vector<std::pair<std::string, FakeValue>>;
using Metadata = std::vector<std::pair<std::string, std::string>>;

/// Where the tests configure every discovery.
inline const std::string kPath = "upstreams.app.discovery";

/// "A", "AAAA", ... for messages.
inline std::string type_name(weir_dns_type_t t) {
  switch (t) {
  case WEIR_DNS_A:
    return "A";
  case WEIR_DNS_AAAA:
    return "AAAA";
  case WEIR_DNS_SRV:
    return "SRV";
  case WEIR_DNS_TXT:
    return "TXT";
  case WEIR_DNS_PTR:
    return "PTR";
  default:
    return std::to_string(t);
  }
}

/// A fake host with one discovery plugin loaded, and helpers to answer its queries.
struct Dns {
  explicit Dns(const char* library, std::string module_name)
      : plugin(host.load_library(library)), module(std::move(module_name)) {}

  FakeHost host;
  weir::testing::FakePlugin plugin;
  std::string module;

  /// config_new on { use = module, keys... }.
  FakeConfigured configure(Keys keys) {
    keys.insert(keys.begin(), {"use", module});
    return host.configure(plugin.module(WEIR_KIND_DISCOVERY, module),
                          FakeConfig::table(std::move(keys)), kPath);
  }

  /// The pending queries as "TYPE name" lines, sorted (for comparisons).
  [[nodiscard]] std::vector<std::string> pending() const {
    std::vector<std::string> out;
    for (const FakeDnsQuery& q : host.pending_dns()) {
      out.push_back(type_name(q.type) + " " + q.name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  /// The one pending query for `name` and `type` (fails the test otherwise).
  FakeDnsQuery query(const std::string& name, weir_dns_type_t type) const {
    std::vector<FakeDnsQuery> found;
    for (const FakeDnsQuery& q : host.pending_dns()) {
      if (q.name == name && q.type == type) {
        found.push_back(q);
      }
    }
    const std::string what =
        "expected one pending " + type_name(type) + " " + name + "; pending: " + pending_text();
    REQUIRE_MESSAGE(found.size() == 1, what);
    return found[0];
  }

  /// Answer the pending `type` query for `name`.
  void answer(const std::string& name, weir_dns_type_t type, const std::vector<FakeDnsRecord>& r,
              uint32_t negative_ttl = 0) {
    REQUIRE(host.answer_dns(query(name, type).id, r, negative_ttl));
  }
  /// Fail the pending `type` query for `name` (WEIR_ERROR: "server failure" by default).
  void fail(const std::string& name, weir_dns_type_t type, weir_status_t status = WEIR_ERROR,
            std::string_view error = {}, uint32_t negative_ttl = 0) {
    REQUIRE(host.fail_dns(query(name, type).id, status, error, negative_ttl));
  }

  /// Advance the fake clock to the next timer and fire what falls due. Returns the delay in ms.
  uint64_t fire_next() {
    const auto next = host.next_timer_in_ms();
    REQUIRE(next.has_value());
    host.fire_due(*next);
    return *next;
  }

  /// Number of log lines at `level` containing `part`.
  [[nodiscard]] size_t logged(std::string_view part, weir_log_level_t level = WEIR_LOG_WARN) const {
    return static_cast<size_t>(
        std::count_if(host.logs().begin(), host.logs().end(), [&](const weir::testing::FakeLog& l) {
          return l.level == level && l.message.find(part) != std::string::npos;
        }));
  }

  [[nodiscard]] std::string pending_text() const {
    std::string out;
    for (const std::string& p : pending()) {
      out += p + "; ";
    }
    return out;
  }
};

/// The addresses of a set, in order.
inline std::vector<std::string> addresses(const std::vector<FakeTarget>& set) {
  std::vector<std::string> out;
  for (const FakeTarget& t : set) {
    out.push_back(t.address);
  }
  return out;
}

/// Check what every in-tree plugin must satisfy: loadable, built for this ABI, one discovery
/// module named `module`.
inline void check_descriptor(const weir::testing::FakePlugin& plugin, const char* plugin_name,
                             const char* module) {
  const weir_plugin_descriptor_t* d = plugin.descriptor();
  REQUIRE(d != nullptr);
  const std::vector<std::string> problems = plugin.problems();
  CHECK_MESSAGE(problems.empty(), (problems.empty() ? std::string() : problems.front()));
  CHECK(d->abi_major == WEIR_ABI_MAJOR);
  CHECK(d->abi_minor == WEIR_ABI_MINOR);
  CHECK(std::string(d->name) == plugin_name);
  CHECK(std::string(d->version) == "0.1.0");
  REQUIRE(d->module_count == 1);
  CHECK(d->modules[0].kind == WEIR_KIND_DISCOVERY);
  CHECK(std::string(d->modules[0].name) == module);
}

/// A configuration error case: keys, where the error is reported, and a part of its message.
struct ErrorCase {
  Keys keys;
  std::string path;
  std::string message;
};

/// Configure each case and check that it fails with exactly that one error.
inline void check_errors(Dns& t, const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    auto cfg = t.configure(c.keys);
    CAPTURE(c.message);
    CHECK_FALSE(cfg.ok());
    CHECK_MESSAGE(cfg.has_error(c.path, c.message), cfg.errors_text());
    CHECK_MESSAGE(cfg.errors().size() == 1, cfg.errors_text());
  }
  CHECK(t.host.misuse().empty());
}

} // namespace discovery_tests
