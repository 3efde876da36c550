// lb/random through the fake host.
#include "common.hpp"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

struct RandomLb : LbFixture {
  RandomLb() : LbFixture(WEIR_TEST_PLUGIN_RANDOM, "random") {}
};

/// How many of `n` picks went to each target.
std::vector<size_t> random_counts(weir::testing::FakeLb& lb, size_t n, size_t targets,
                                  const std::vector<uint8_t>& excluded = {}) {
  std::vector<size_t> c(targets, 0);
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick(excluded);
    REQUIRE(p);
    REQUIRE(*p < targets);
    ++c[*p];
  }
  return c;
}

} // namespace

TEST_CASE("random: descriptor") {
  RandomLb t;
  check_descriptor(t.plugin, "lb-random", WEIR_KIND_LB, "random");
}

TEST_CASE("random: picks in proportion to weight") {
  // 100,000 picks, weights 1/2/3/4: each share must be within 1.5 percentage points of
  // weight / 10. The standard deviation of a share is at most sqrt(0.25 / 100000) = 0.16 points,
  // so the tolerance is more than 9 standard deviations: this test does not flake.
  RandomLb t;
  auto lb = t.lb({{"a:1", 1}, {"b:1", 2}, {"c:1", 3}, {"d:1", 4}});
  constexpr size_t picks = 100000;
  const std::vector<size_t> c = random_counts(lb, picks, 4);
  for (size_t i = 0; i < 4; ++i) {
    const double share = static_cast<double>(c[i]) / picks;
    const double expected = static_cast<double>(i + 1) / 10.0;
    CAPTURE(i);
    CAPTURE(share);
    CHECK(std::fabs(share - expected) <= 0.015);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("random: equal weights and weight 0 (counts as 1)") {
  RandomLb t;
  auto lb = t.lb({{"a:1", 0}, {"b:1", 1}});
  const std::vector<size_t> c = random_counts(lb, 20000, 2);
  CHECK(c[0] > 9000);
  CHECK(c[1] > 9000);
}

TEST_CASE("random: unhealthy and excluded targets") {
  RandomLb t;
  SUBCASE("unhealthy targets are never picked while a healthy one is left") {
    auto lb = t.lb({{"a:1", 5, false}, {"b:1", 1, true}, {"c:1", 1, true}});
    const std::vector<size_t> c = random_counts(lb, 2000, 3);
    CHECK(c[0] == 0);
    CHECK(c[1] > 700);
    CHECK(c[2] > 700);
  }
  SUBCASE("excluded targets are never picked") {
    auto lb = t.lb({{"a:1", 5}, {"b:1", 1}, {"c:1", 1}});
    const std::vector<size_t> c = random_counts(lb, 2000, 3, {1, 0, 0});
    CHECK(c[0] == 0);
    CHECK(c[1] > 700);
    CHECK(c[2] > 700);
  }
  SUBCASE("every healthy target excluded: fail open to the unhealthy untried one") {
    auto lb = t.lb({{"a:1", 1, true}, {"b:1", 1, false}, {"c:1", 1, true}});
    for (int i = 0; i < 100; ++i) {
      CHECK(lb.pick({1, 0, 1}) == std::optional<size_t>(1));
    }
  }
  SUBCASE("all unhealthy: fail open, still by weight") {
    auto lb = t.lb({{"a:1", 3, false}, {"b:1", 1, false}});
    const std::vector<size_t> c = random_counts(lb, 20000, 2);
    CHECK(c[0] > 14000); // 75% expected
    CHECK(c[1] > 4000);  // 25% expected
  }
  SUBCASE("all excluded: not found") {
    auto lb = t.lb({{"a:1"}, {"b:1", 1, false}});
    CHECK_FALSE(lb.pick({1, 1}));
    CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("random: empty set is not found") {
  RandomLb t;
  auto lb = t.lb({});
  CHECK_FALSE(lb.pick());
  CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
}

TEST_CASE("random: every instance has its own generator") {
  // Two instances drawing 64 picks among 4 equal targets agree by chance with probability 4^-64.
  RandomLb t;
  auto w1 = t.lb({{"a:1"}, {"b:1"}, {"c:1"}, {"d:1"}});
  auto w2 = t.lb({{"a:1"}, {"b:1"}, {"c:1"}, {"d:1"}});
  std::string s1;
  std::string s2;
  for (int i = 0; i < 64; ++i) {
    s1 += static_cast<char>('a' + static_cast<char>(*w1.pick()));
    s2 += static_cast<char>('a' + static_cast<char>(*w2.pick()));
  }
  CHECK(s1 != s2);
}

TEST_CASE("random: takes no keys besides use") {
  FakeHost host;
  auto plugin = host.load_library(WEIR_TEST_PLUGIN_RANDOM);
  auto module = plugin.module(WEIR_KIND_LB, "random");
  auto cfg = host.configure(module, FakeConfig::table({{"use", "random"}, {"seed", 42}}),
                            "upstreams.app.lb");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("upstreams.app.lb.seed",
                              "unknown key 'seed' (this module takes no keys besides 'use')"),
                cfg.errors_text());
  CHECK(host.misuse().empty());
}
