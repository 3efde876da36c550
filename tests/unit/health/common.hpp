// Helpers shared by the health plugin tests.
#pragma once

#include <weir/testing/fake_host.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace health_tests {

using weir::testing::FakeConfig;
using weir::testing::FakeConfigured;
using weir::testing::FakeHealthReport;
using weir::testing::FakeHost;
using weir::testing::FakeRequestState;
using weir::testing::FakeTarget;
using weir::testing::FakeValue;

/// Where the tests configure every health checker.
inline const std::string kPath = "upstreams.app.health";

/// A module's table: `use` plus `keys`.
inline FakeValue table(const std::string& use,
                       std::vector<std::pair<std::string, FakeValue>> keys) {
  keys.insert(keys.begin(), {"use", use});
  return FakeConfig::table(std::move(keys));
}

/// `defaults` with the keys of `overrides` replaced (or added): a table has each key once.
inline std::vector<std::pair<std::string, FakeValue>>
with_defaults(std::vector<std::pair<std::string, FakeValue>> defaults,
              std::vector<std::pair<std::string, FakeValue>> overrides) {
  for (auto& [key, value] : overrides) {
    bool replaced = false;
    for (auto& d : defaults) {
      if (d.first == key) {
        d.second = value;
        replaced = true;
      }
    }
    if (!replaced) {
      defaults.emplace_back(key, value);
    }
  }
  return defaults;
}

/// Advance the fake clock to the next timer and fire what falls due. Returns the delay in ms.
inline uint64_t fire_next(FakeHost& host) {
  const auto next = host.next_timer_in_ms();
  REQUIRE(next.has_value());
  host.fire_due(*next);
  return *next;
}

/// The reports as "target healthy|unhealthy: reason" lines (for messages and comparisons).
inline std::vector<std::string> report_lines(const std::vector<FakeHealthReport>& reports) {
  std::vector<std::string> out;
  for (const auto& r : reports) {
    out.push_back(r.target_id + (r.healthy ? " healthy: " : " unhealthy: ") + r.reason);
  }
  return out;
}

/// Check what every in-tree plugin must satisfy: loadable, built for this ABI, the modules named.
inline void check_descriptor(const weir::testing::FakePlugin& plugin, const char* plugin_name,
                             const std::vector<std::string>& module_names) {
  const weir_plugin_descriptor_t* d = plugin.descriptor();
  REQUIRE(d != nullptr);
  const std::vector<std::string> problems = plugin.problems();
  CHECK_MESSAGE(problems.empty(), (problems.empty() ? std::string() : problems.front()));
  CHECK(d->abi_major == WEIR_ABI_MAJOR);
  CHECK(d->abi_minor == WEIR_ABI_MINOR);
  CHECK(std::string(d->name) == plugin_name);
  CHECK(std::string(d->version) == "0.1.0");
  REQUIRE(d->module_count == module_names.size());
  for (size_t i = 0; i < module_names.size(); ++i) {
    CHECK(d->modules[i].kind == WEIR_KIND_HEALTH);
    CHECK(std::string(d->modules[i].name) == module_names[i]);
  }
}

} // namespace health_tests
