// Helpers shared by the plugin tests.
#pragma once

#include <weir/testing/fake_host.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace plugin_tests {

using weir::testing::FakeConfig;
using weir::testing::FakeHost;
using weir::testing::FakeHttp;
using weir::testing::FakeTarget;

/// Check what every in-tree plugin must satisfy: loadable, built for this ABI, one module.
inline void check_descriptor(const weir::testing::FakePlugin& plugin, const char* plugin_name,
                             weir_kind_t kind, const char* module_name) {
  const weir_plugin_descriptor_t* d = plugin.descriptor();
  REQUIRE(d != nullptr);
  const std::vector<std::string> problems = plugin.problems();
  CHECK_MESSAGE(problems.empty(), (problems.empty() ? std::string() : problems.front()));
  CHECK(d->abi_major == WEIR_ABI_MAJOR);
  CHECK(d->abi_minor == WEIR_ABI_MINOR);
  CHECK(std::string(d->name) == plugin_name);
  CHECK(std::string(d->version) == "0.1.0");
  REQUIRE(d->module_count == 1);
  CHECK(d->modules[0].kind == kind);
  CHECK(std::string(d->modules[0].name) == module_name);
}

/// A load balancer module loaded through the fake host and configured with `use` only; lb()
/// makes an instance holding `targets`.
struct LbFixture {
  FakeHost host;
  weir::testing::FakePlugin plugin;
  weir::testing::FakeModule module;
  weir::testing::FakeConfigured config;

  LbFixture(const char* library, const char* use)
      : plugin(host.load_library(library)), module(plugin.module(WEIR_KIND_LB, use)),
        config(host.configure(module, FakeConfig::table({{"use", use}}), "upstreams.app.lb")) {}

  weir::testing::FakeLb lb(const std::vector<FakeTarget>& targets) {
    REQUIRE_MESSAGE(config.ok(), config.errors_text());
    auto inst = config.lb();
    REQUIRE(inst.ok());
    REQUIRE(inst.set_targets(targets) == WEIR_OK);
    return inst;
  }
};

} // namespace plugin_tests
