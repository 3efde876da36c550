// Each deliberately broken plugin (tests/broken_plugins) is broken in exactly the intended way, as
// the fake host (which applies weir's loading rules) sees it.
#include "probe.hpp"

#include <stdexcept>
#include <string>
#include <vector>

using namespace sdk_tests;

namespace {
bool any_contains(const std::vector<std::string>& v, std::string_view part) {
  for (const auto& s : v) {
    if (s.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}
std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += s + "\n";
  }
  return out;
}
} // namespace

TEST_CASE("broken: no-entry exports no entry point") {
  FakeHost host;
  CHECK_THROWS_WITH_AS(host.load_library(WEIR_BROKEN_NO_ENTRY),
                       doctest::Contains("does not export weir_plugin_entry"), std::runtime_error);
}

TEST_CASE("broken: other-major is built for ABI major 2") {
  FakeHost host;
  auto p = host.load_library(WEIR_BROKEN_OTHER_MAJOR);
  CHECK(p.descriptor()->abi_major == 2);
  const auto problems = p.problems();
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "built for ABI major 2, host has 1");
}

TEST_CASE("broken: newer-minor is built for a newer minor") {
  FakeHost host;
  auto p = host.load_library(WEIR_BROKEN_NEWER_MINOR);
  CHECK(p.descriptor()->abi_major == WEIR_ABI_MAJOR);
  CHECK(p.descriptor()->abi_minor == WEIR_ABI_MINOR + 1);
  const auto problems = p.problems();
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("newer than the host's") != std::string::npos);
}

TEST_CASE("broken: missing-hook has an LB module without pick") {
  FakeHost host;
  auto p = host.load_library(WEIR_BROKEN_MISSING_HOOK);
  const auto problems = p.problems();
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "module 0 ('missing-hook'): required hook 'pick' is NULL");
}

TEST_CASE("broken: duplicate-module collides with the in-tree headers filter") {
  FakeHost host;
  auto dup = host.load_library(WEIR_BROKEN_DUPLICATE_MODULE);
  auto in_tree = host.load_library(WEIR_TEST_PLUGIN_HEADERS);
  CHECK(dup.problems().empty()); // fine alone
  CHECK(in_tree.problems().empty());
  CHECK_NOTHROW((void)dup.module(WEIR_KIND_FILTER, "headers"));
  CHECK_NOTHROW((void)in_tree.module(WEIR_KIND_FILTER, "headers"));
  CHECK(std::string(dup.descriptor()->name) != std::string(in_tree.descriptor()->name));
}

TEST_CASE("broken: throwing-config fails configuration with 'boom from config'") {
  FakeHost host;
  auto p = host.load_library(WEIR_BROKEN_THROWING_CONFIG);
  CHECK(p.problems().empty());
  auto cfg =
      host.configure(p.module(WEIR_KIND_FILTER, "throwing-config"),
                     FakeConfig::table({{"use", "throwing-config"}}), "routes[0].filters[0]");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK(host.logged("boom from config", WEIR_LOG_ERROR));
  CHECK_MESSAGE(cfg.has_error("routes[0].filters[0]", "boom from config"), cfg.errors_text());
  CHECK(host.misuse().empty());
}

TEST_CASE("broken: rejecting-config reports its error at its node") {
  FakeHost host;
  auto p = host.load_library(WEIR_BROKEN_REJECTING_CONFIG);
  CHECK(p.problems().empty());
  auto cfg =
      host.configure(p.module(WEIR_KIND_FILTER, "rejecting-config"),
                     FakeConfig::table({{"use", "rejecting-config"}}), "routes[0].filters[0]");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK(cfg.errors().size() == 1);
  CHECK_MESSAGE(
      cfg.has_error("routes[0].filters[0]", "rejecting-config refuses every configuration"),
      cfg.errors_text());
  CHECK(joined(p.problems()).empty());
  CHECK_FALSE(any_contains(p.problems(), "x"));
}
