// lb/p2c through the fake host.
#include "common.hpp"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

struct P2cLb : LbFixture {
  P2cLb() : LbFixture(WEIR_TEST_PLUGIN_P2C, "p2c") {}
};

/// `n` picks; how many went to each target. `mode`: 0 = pick only, 1 = short requests (on_start
/// and on_done at once), 2 = requests that stay in flight (on_start only).
std::vector<size_t> p2c_counts(weir::testing::FakeLb& lb, size_t n, size_t targets, int mode,
                               const std::vector<uint8_t>& excluded = {}) {
  std::vector<size_t> c(targets, 0);
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick(excluded);
    REQUIRE(p);
    REQUIRE(*p < targets);
    if (mode >= 1) {
      lb.on_start(*p);
    }
    if (mode == 1) {
      lb.on_done(*p, 200, 1000);
    }
    ++c[*p];
  }
  return c;
}

void p2c_start_n(weir::testing::FakeLb& lb, size_t index, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    lb.on_start(index);
  }
}

double share(const std::vector<size_t>& c, size_t i) {
  size_t total = 0;
  for (size_t x : c) {
    total += x;
  }
  return static_cast<double>(c[i]) / static_cast<double>(total);
}

} // namespace

TEST_CASE("p2c: descriptor") {
  P2cLb t;
  check_descriptor(t.plugin, "lb-p2c", WEIR_KIND_LB, "p2c");
  auto lb = t.lb({{"a:1"}});
  CHECK_UNARY(lb.vtable()->on_start != nullptr);
  CHECK_UNARY(lb.vtable()->on_done != nullptr);
}

TEST_CASE("p2c: one eligible target is always picked") {
  P2cLb t;
  auto lb = t.lb({{"a:1"}});
  p2c_start_n(lb, 0, 100);
  CHECK(p2c_counts(lb, 100, 1, 0) == std::vector<size_t>{100});
  auto two = t.lb({{"a:1"}, {"b:1", 1, false}});
  CHECK(p2c_counts(two, 100, 2, 0) == std::vector<size_t>{100, 0});
}

TEST_CASE("p2c: the less loaded of the two choices wins") {
  P2cLb t;
  SUBCASE("two targets: both are always the two choices") {
    auto lb = t.lb({{"a:1"}, {"b:1"}});
    p2c_start_n(lb, 0, 10);
    CHECK(p2c_counts(lb, 1000, 2, 1) == std::vector<size_t>{0, 1000});
  }
  SUBCASE("four targets, one loaded: it wins no draw") {
    // a loses every pair it is drawn in (its rival carries 0 or 1 request, a carries 50).
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}, {"d:1"}});
    p2c_start_n(lb, 0, 50);
    const std::vector<size_t> c = p2c_counts(lb, 3000, 4, 1);
    CHECK(c[0] == 0);
    for (size_t i = 1; i < 4; ++i) {
      CAPTURE(i);
      CHECK(c[i] > 800); // 1000 expected
    }
  }
  SUBCASE("sustained load evens out the requests in flight") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}, {"d:1"}});
    p2c_start_n(lb, 0, 20);
    const std::vector<size_t> c = p2c_counts(lb, 4000, 4, 2);
    // a starts 20 ahead; with every request staying in flight, p2c keeps the counts within a few
    // of each other, so a ends near (4020 / 4) - 20 = 985 new requests and the others near 1005.
    CHECK(c[0] < c[1]);
    CHECK(c[0] < c[2]);
    CHECK(c[0] < c[3]);
    for (size_t i = 0; i < 4; ++i) {
      CAPTURE(i);
      CHECK(c[i] > 900);
      CHECK(c[i] < 1100);
    }
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("p2c: weights") {
  P2cLb t;
  SUBCASE("without load the draw is weighted: weights 1 and 3 give 25% and 75%") {
    // 100,000 picks: the standard deviation of a share is 0.14 points; tolerance 1.5 points.
    auto lb = t.lb({{"a:1", 1}, {"b:1", 3}});
    const std::vector<size_t> c = p2c_counts(lb, 100000, 2, 0);
    CHECK(std::fabs(share(c, 0) - 0.25) <= 0.015);
    CHECK(std::fabs(share(c, 1) - 0.75) <= 0.015);
  }
  SUBCASE("under load the in-flight counts follow the weights") {
    auto lb = t.lb({{"a:1", 1}, {"b:1", 3}, {"c:1", 1}, {"d:1", 3}});
    const std::vector<size_t> c = p2c_counts(lb, 8000, 4, 2);
    CHECK(std::fabs(share(c, 0) - 0.125) <= 0.02);
    CHECK(std::fabs(share(c, 1) - 0.375) <= 0.02);
    CHECK(std::fabs(share(c, 2) - 0.125) <= 0.02);
    CHECK(std::fabs(share(c, 3) - 0.375) <= 0.02);
  }
  SUBCASE("a heavy target may carry more before it loses") {
    auto lb = t.lb({{"a:1", 10}, {"b:1", 1}});
    p2c_start_n(lb, 0, 9); // a: 9 / 10, b: 0 / 1
    REQUIRE(lb.pick() == std::optional<size_t>(1));
    lb.on_start(1); // b: 1 / 1 > a: 9 / 10
    CHECK(lb.pick() == std::optional<size_t>(0));
  }
}

TEST_CASE("p2c: a new target set keeps the counts of targets that stay") {
  P2cLb t;
  auto lb = t.lb({{"a:1"}, {"b:1"}});
  p2c_start_n(lb, 0, 10);
  REQUIRE(lb.set_targets({{"b:1"}, {"a:1"}}) == WEIR_OK); // a is now index 1
  CHECK(p2c_counts(lb, 200, 2, 1) == std::vector<size_t>{200, 0});
  for (int i = 0; i < 10; ++i) {
    lb.on_done(1, 200, 1000); // a's requests end, reported with its new index
  }
  const std::vector<size_t> c = p2c_counts(lb, 2000, 2, 1);
  CHECK(c[0] > 800);
  CHECK(c[1] > 800);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("p2c: on_start and on_done out of range or unbalanced are ignored") {
  P2cLb t;
  auto lb = t.lb({{"a:1"}, {"b:1"}});
  lb.on_start(2);
  lb.on_done(2, 200, 1);
  lb.on_done(static_cast<size_t>(-1), 0, 0);
  for (int i = 0; i < 5; ++i) {
    lb.on_done(0, 200, 1); // nothing in flight: the count stays at 0
  }
  lb.on_start(1); // b: 1, a: 0 (not a wrapped-around huge count)
  CHECK(p2c_counts(lb, 100, 2, 0) == std::vector<size_t>{100, 0});
  CHECK(t.host.logs().empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("p2c: unhealthy and excluded targets") {
  P2cLb t;
  SUBCASE("an unhealthy target is never drawn while healthy ones are left") {
    auto lb = t.lb({{"a:1", 1, false}, {"b:1"}, {"c:1"}});
    p2c_start_n(lb, 1, 5);
    p2c_start_n(lb, 2, 5);
    const std::vector<size_t> c = p2c_counts(lb, 1000, 3, 1);
    CHECK(c[0] == 0);
  }
  SUBCASE("excluded targets are never drawn") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    const std::vector<size_t> c = p2c_counts(lb, 1000, 3, 1, {0, 1, 0});
    CHECK(c[1] == 0);
    CHECK(c[0] > 300);
    CHECK(c[2] > 300);
  }
  SUBCASE("all unhealthy: fail open, by load") {
    auto lb = t.lb({{"a:1", 1, false}, {"b:1", 1, false}});
    p2c_start_n(lb, 0, 3);
    CHECK(p2c_counts(lb, 100, 2, 1) == std::vector<size_t>{0, 100});
  }
  SUBCASE("healthy ones excluded: fail open to the unhealthy untried one") {
    auto lb = t.lb({{"a:1", 1, true}, {"b:1", 1, false}, {"c:1", 1, true}});
    CHECK(p2c_counts(lb, 100, 3, 0, {1, 0, 1}) == std::vector<size_t>{0, 100, 0});
  }
  SUBCASE("all excluded: not found") {
    auto lb = t.lb({{"a:1"}, {"b:1", 1, false}});
    CHECK_FALSE(lb.pick({1, 1}));
    CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  }
  SUBCASE("empty set: not found") {
    auto lb = t.lb({});
    CHECK_FALSE(lb.pick());
    CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("p2c: takes no keys besides use") {
  FakeHost host;
  auto plugin = host.load_library(WEIR_TEST_PLUGIN_P2C);
  auto module = plugin.module(WEIR_KIND_LB, "p2c");
  auto cfg = host.configure(module, FakeConfig::table({{"use", "p2c"}, {"choices", 3}}),
                            "upstreams.app.lb");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("upstreams.app.lb.choices",
                              "unknown key 'choices' (this module takes no keys besides 'use')"),
                cfg.errors_text());
  CHECK(host.misuse().empty());
}
