// lb/least-connections through the fake host.
#include "common.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

struct LeastConnections : LbFixture {
  LeastConnections() : LbFixture(WEIR_TEST_PLUGIN_LEAST_CONNECTIONS, "least-connections") {}
};

char letter(std::optional<size_t> p) {
  return p ? static_cast<char>('a' + static_cast<char>(*p)) : '-';
}

/// `n` picks as letters ('a' = index 0; '-' when pick failed). With `start`, each picked target
/// gets on_start (the request stays in flight).
std::string lc_sequence(weir::testing::FakeLb& lb, size_t n, bool start = false,
                        const std::vector<uint8_t>& excluded = {}) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick(excluded);
    if (p && start) {
      lb.on_start(*p);
    }
    out += letter(p);
  }
  return out;
}

/// `n` short requests (pick, on_start, on_done at once); how many went to each target.
std::vector<size_t> short_requests(weir::testing::FakeLb& lb, size_t n, size_t targets) {
  std::vector<size_t> c(targets, 0);
  for (size_t i = 0; i < n; ++i) {
    const std::optional<size_t> p = lb.pick();
    REQUIRE(p);
    REQUIRE(*p < targets);
    lb.on_start(*p);
    lb.on_done(*p, 200, 1000);
    ++c[*p];
  }
  return c;
}

void start_n(weir::testing::FakeLb& lb, size_t index, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    lb.on_start(index);
  }
}

void done_n(weir::testing::FakeLb& lb, size_t index, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    lb.on_done(index, 200, 1000);
  }
}

} // namespace

TEST_CASE("least-connections: descriptor") {
  LeastConnections t;
  check_descriptor(t.plugin, "lb-least-connections", WEIR_KIND_LB, "least-connections");
  auto lb = t.lb({{"a:1"}});
  CHECK_UNARY(lb.vtable()->on_start != nullptr);
  CHECK_UNARY(lb.vtable()->on_done != nullptr);
}

TEST_CASE("least-connections: an idle cluster spreads requests round robin") {
  LeastConnections t;
  SUBCASE("no request in flight: every target in turn") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    CHECK(lc_sequence(lb, 9) == "abcabcabc");
  }
  SUBCASE("short requests keep rotating") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    CHECK(short_requests(lb, 300, 3) == std::vector<size_t>{100, 100, 100});
  }
  SUBCASE("requests that stay in flight fill the targets evenly") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    CHECK(lc_sequence(lb, 9, /*start=*/true) == "abcabcabc");
  }
}

TEST_CASE("least-connections: a loaded target gets fewer requests") {
  LeastConnections t;
  auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
  start_n(lb, 0, 20); // 20 long requests on a
  const std::vector<size_t> c = short_requests(lb, 300, 3);
  CHECK(c[0] == 0);
  CHECK(c[1] == 150);
  CHECK(c[2] == 150);
  SUBCASE("new requests go to the others until they carry as many") {
    std::string expected;
    for (int i = 0; i < 20; ++i) {
      expected += "bc";
    }
    CHECK(lc_sequence(lb, 40, /*start=*/true) == expected);
    // b and c now carry 20 each, like a: all three take turns again.
    CHECK(lc_sequence(lb, 6, /*start=*/true) == "abcabc");
  }
  SUBCASE("when a's requests end it is picked again") {
    done_n(lb, 0, 20);
    CHECK(short_requests(lb, 300, 3) == std::vector<size_t>{100, 100, 100});
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("least-connections: in-flight counts are weighted") {
  LeastConnections t;
  SUBCASE("weights 1 and 3: in flight 1 to 3") {
    auto lb = t.lb({{"a:1", 1}, {"b:1", 3}});
    const std::string s = lc_sequence(lb, 400, /*start=*/true);
    CHECK(std::count(s.begin(), s.end(), 'a') == 100);
    CHECK(std::count(s.begin(), s.end(), 'b') == 300);
    CHECK(s.substr(0, 8) == "abbbabbb");
  }
  SUBCASE("weights 2, 1, 1: in flight 2 to 1 to 1") {
    auto lb = t.lb({{"a:1", 2}, {"b:1", 1}, {"c:1", 1}});
    const std::string s = lc_sequence(lb, 400, /*start=*/true);
    CHECK(std::count(s.begin(), s.end(), 'a') == 200);
    CHECK(std::count(s.begin(), s.end(), 'b') == 100);
    CHECK(std::count(s.begin(), s.end(), 'c') == 100);
  }
  SUBCASE("a heavy target carries more before it counts as loaded") {
    auto lb = t.lb({{"a:1", 10}, {"b:1", 1}});
    start_n(lb, 0, 9); // a: 9 in flight of weight 10 (0.9); b: 0 of weight 1
    CHECK(lc_sequence(lb, 1, /*start=*/true) == "b");
    // a 0.9 < b 1.0 now
    CHECK(lc_sequence(lb, 1, /*start=*/true) == "a");
  }
}

TEST_CASE("least-connections: a new target set keeps the counts of targets that stay") {
  LeastConnections t;
  SUBCASE("matched by address, whatever the new order") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    start_n(lb, 0, 10);
    REQUIRE(lb.set_targets({{"c:1"}, {"a:1"}, {"b:1"}}) == WEIR_OK); // a is now index 1
    const std::vector<size_t> c = short_requests(lb, 100, 3);
    CHECK(c[1] == 0);
    done_n(lb, 1, 10); // a's requests end, reported with its new index
    CHECK(short_requests(lb, 300, 3) == std::vector<size_t>{100, 100, 100});
  }
  SUBCASE("matched by id when there is one") {
    auto lb = t.lb({{"10.0.0.1:80", 1, true, "web-1"}, {"10.0.0.2:80", 1, true, "web-2"}});
    start_n(lb, 0, 10);
    REQUIRE(lb.set_targets(
                {{"10.0.0.9:80", 1, true, "web-2"}, {"10.0.0.8:80", 1, true, "web-1"}}) == WEIR_OK);
    const std::vector<size_t> c = short_requests(lb, 50, 2);
    CHECK(c == std::vector<size_t>{50, 0});
  }
  SUBCASE("a target that leaves and comes back starts from zero") {
    auto lb = t.lb({{"a:1"}, {"b:1"}});
    start_n(lb, 0, 10);
    REQUIRE(lb.set_targets({{"b:1"}}) == WEIR_OK);
    REQUIRE(lb.set_targets({{"a:1"}, {"b:1"}}) == WEIR_OK);
    const std::vector<size_t> c = short_requests(lb, 100, 2);
    CHECK(c == std::vector<size_t>{50, 50});
  }
  SUBCASE("a health change keeps the counts") {
    auto lb = t.lb({{"a:1"}, {"b:1"}});
    start_n(lb, 0, 10);
    REQUIRE(lb.set_targets({{"a:1"}, {"b:1", 1, false}}) == WEIR_OK);
    CHECK(lc_sequence(lb, 3) == "aaa"); // b is unhealthy
    REQUIRE(lb.set_targets({{"a:1"}, {"b:1"}}) == WEIR_OK);
    CHECK(lc_sequence(lb, 3) == "bbb"); // a still carries 10
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("least-connections: on_start and on_done out of range or unbalanced are ignored") {
  LeastConnections t;
  auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
  lb.on_start(3);
  lb.on_start(1000000);
  lb.on_done(3, 200, 1);
  lb.on_done(static_cast<size_t>(-1), 0, 0);
  done_n(lb, 0, 5); // nothing in flight: the count stays at 0
  CHECK(lc_sequence(lb, 6) == "abcabc");
  auto empty = t.lb({});
  empty.on_start(0);
  empty.on_done(0, 502, 1);
  CHECK_FALSE(empty.pick());
  CHECK(empty.last_status() == WEIR_ERROR_NOT_FOUND);
  CHECK(t.host.logs().empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("least-connections: unhealthy and excluded targets") {
  LeastConnections t;
  SUBCASE("an unhealthy target is skipped even when it is the least loaded") {
    auto lb = t.lb({{"a:1", 1, false}, {"b:1"}, {"c:1"}});
    start_n(lb, 1, 5);
    start_n(lb, 2, 5);
    CHECK(lc_sequence(lb, 4) == "bcbc");
  }
  SUBCASE("excluded targets are skipped") {
    auto lb = t.lb({{"a:1"}, {"b:1"}, {"c:1"}});
    CHECK(lc_sequence(lb, 4, false, {1, 0, 0}) == "bcbc");
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
  SUBCASE("all unhealthy: fail open, least loaded first") {
    auto lb = t.lb({{"a:1", 1, false}, {"b:1", 1, false}});
    start_n(lb, 0, 3);
    CHECK(lc_sequence(lb, 3, /*start=*/true) == "bbb");
  }
  SUBCASE("healthy ones excluded: fail open to the unhealthy untried one") {
    auto lb = t.lb({{"a:1", 1, true}, {"b:1", 1, false}});
    CHECK(lb.pick({1, 0}) == std::optional<size_t>(1));
  }
  SUBCASE("all excluded: not found") {
    auto lb = t.lb({{"a:1"}, {"b:1", 1, false}});
    CHECK_FALSE(lb.pick({1, 1}));
    CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("least-connections: takes no keys besides use") {
  FakeHost host;
  auto plugin = host.load_library(WEIR_TEST_PLUGIN_LEAST_CONNECTIONS);
  auto module = plugin.module(WEIR_KIND_LB, "least-connections");
  auto cfg = host.configure(
      module, FakeConfig::table({{"use", "least-connections"}, {"slow-start", "10s"}}),
      "upstreams.app.lb");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("upstreams.app.lb.slow-start",
                              "unknown key 'slow-start' (this module takes no keys besides 'use')"),
                cfg.errors_text());
  CHECK(host.misuse().empty());
}
