// lb/round-robin through the fake host.
#include "common.hpp"

#include <optional>
#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

struct RoundRobin : LbFixture {
  RoundRobin() : LbFixture(WEIR_TEST_PLUGIN_ROUND_ROBIN, "round-robin") {}
};

/// `n` picks as letters ('a' = index 0); '-' when pick failed.
std::string sequence(weir::testing::FakeLb& lb, size_t n,
                     const std::vector<uint8_t>& excluded = {}) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick(excluded);
    out += p ? static_cast<char>('a' + static_cast<char>(*p)) : '-';
  }
  return out;
}

std::vector<size_t> counts(weir::testing::FakeLb& lb, size_t n, size_t targets) {
  std::vector<size_t> c(targets, 0);
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick();
    REQUIRE(p);
    REQUIRE(*p < targets);
    ++c[*p];
  }
  return c;
}

} // namespace

TEST_CASE("round-robin: descriptor") {
  RoundRobin t;
  check_descriptor(t.plugin, "lb-round-robin", WEIR_KIND_LB, "round-robin");
}

TEST_CASE("round-robin: smooth weighted sequence for weights {5,1,1} is a a b a c a a") {
  RoundRobin t;
  auto lb = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
  CHECK(sequence(lb, 7) == "aabacaa");
  CHECK(sequence(lb, 7) == "aabacaa"); // the state returns to zero after each cycle
  CHECK(t.host.misuse().empty());
}

TEST_CASE("round-robin: exact counts over whole cycles") {
  RoundRobin t;
  SUBCASE("{5,1,1}: every window of one cycle holds exactly 5, 1, 1") {
    auto lb = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
    for (int cycle = 0; cycle < 10; ++cycle) {
      CHECK(counts(lb, 7, 3) == std::vector<size_t>{5, 1, 1});
    }
  }
  SUBCASE("{3,2,1}") {
    auto lb = t.lb({{"a:1", 3}, {"b:1", 2}, {"c:1", 1}});
    CHECK(sequence(lb, 6) == "abacba");
    CHECK(counts(lb, 600, 3) == std::vector<size_t>{300, 200, 100});
  }
  SUBCASE("equal weights rotate in order") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    CHECK(sequence(lb, 9) == "abcabcabc");
  }
  SUBCASE("large weights") {
    auto lb = t.lb({{"a:1", 10000}, {"b:1", 1}});
    CHECK(counts(lb, 10001, 2) == std::vector<size_t>{10000, 1});
  }
  SUBCASE("weight 0 counts as 1") {
    auto lb = t.lb({{"a:1", 0}, {"b:1", 1}});
    CHECK(sequence(lb, 4) == "abab");
  }
}

TEST_CASE("round-robin: unhealthy targets are skipped, fail open when all are unhealthy") {
  RoundRobin t;
  SUBCASE("one unhealthy") {
    auto lb = t.lb({{"a:1", 1, true}, {"b:1", 5, false}, {"c:1", 1, true}});
    CHECK(sequence(lb, 6) == "acacac");
  }
  SUBCASE("all unhealthy: still pick, by weight") {
    auto lb = t.lb({{"a:1", 5, false}, {"b:1", 1, false}, {"c:1", 1, false}});
    CHECK(sequence(lb, 7) == "aabacaa");
  }
  SUBCASE("a health change keeps the sequence going") {
    auto lb = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
    CHECK(sequence(lb, 3) == "aab");
    REQUIRE(lb.set_targets({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}}) == WEIR_OK);
    CHECK(sequence(lb, 4) == "acaa"); // not restarted at "aab..."
  }
}

TEST_CASE("round-robin: excluded targets") {
  RoundRobin t;
  SUBCASE("excluded targets are skipped") {
    auto lb = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
    CHECK(sequence(lb, 4, {1, 0, 0}) == "bcbc");
  }
  SUBCASE("a retry avoids the target just tried") {
    auto lb = t.lb({{"a:1"}, {"b:1"}});
    const auto first = lb.pick();
    REQUIRE(first);
    std::vector<uint8_t> excluded(2, 0);
    excluded[*first] = 1;
    const auto retry = lb.pick(excluded, 1);
    REQUIRE(retry);
    CHECK(*retry != *first);
  }
  SUBCASE("healthy ones excluded: fail open to the unhealthy non-excluded one") {
    auto lb = t.lb({{"a:1", 1, true}, {"b:1", 1, false}});
    CHECK(lb.pick({1, 0}) == std::optional<size_t>(1));
  }
  SUBCASE("everything excluded: not found") {
    auto lb = t.lb({{"a:1"}, {"b:1", 1, false}});
    CHECK_FALSE(lb.pick({1, 1}));
    CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("round-robin: empty set is not found") {
  RoundRobin t;
  auto lb = t.lb({});
  CHECK_FALSE(lb.pick());
  CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
}

TEST_CASE("round-robin: instances (one per worker) are independent") {
  RoundRobin t;
  auto w1 = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
  auto w2 = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
  CHECK(sequence(w1, 3) == "aab");
  CHECK(sequence(w2, 7) == "aabacaa");
  CHECK(sequence(w1, 4) == "acaa");
}

TEST_CASE("round-robin: takes no keys besides use") {
  FakeHost host;
  auto plugin = host.load_library(WEIR_TEST_PLUGIN_ROUND_ROBIN);
  auto module = plugin.module(WEIR_KIND_LB, "round-robin");
  auto cfg = host.configure(
      module, FakeConfig::table({{"use", "round-robin"}, {"weights", FakeConfig::array({1, 2})}}),
      "upstreams.app.lb");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("upstreams.app.lb.weights",
                              "unknown key 'weights' (this module takes no keys besides 'use')"),
                cfg.errors_text());
  auto typo = host.configure(module, FakeConfig::table({{"uses", "round-robin"}}), "lb");
  CHECK_MESSAGE(typo.has_error("lb.uses", "did you mean 'use'?"), typo.errors_text());
  CHECK(host.misuse().empty());
}
