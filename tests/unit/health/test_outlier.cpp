// health-outlier through the fake host: passive ejection from observations, its timing and cap.
#include "common.hpp"

#include <algorithm>

using namespace health_tests;

namespace {

struct Outlier {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_HEALTH_OUTLIER);
  weir::testing::FakeModule module = plugin.module(WEIR_KIND_HEALTH, "outlier");

  FakeConfigured configure(std::vector<std::pair<std::string, FakeValue>> keys = {}) {
    return host.configure(module, table("outlier", std::move(keys)), kPath);
  }
  size_t cap_warnings() const {
    return static_cast<size_t>(
        std::count_if(host.logs().begin(), host.logs().end(), [](const weir::testing::FakeLog& l) {
          return l.message.find("not ejecting") != std::string::npos;
        }));
  }
};

const std::vector<FakeTarget> kThree = {
    {"10.0.0.1:80", 1, true, "a"}, {"10.0.0.2:80", 1, true, "b"}, {"10.0.0.3:80", 1, true, "c"}};

/// Observe `status` on `id` `n` times.
void observe_n(weir::testing::FakeHealth& health, const std::string& id, uint32_t status, int n) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(health.observe(id, status));
  }
}

} // namespace

TEST_CASE("outlier: descriptor") {
  Outlier t;
  check_descriptor(t.plugin, "health-outlier", {"outlier"});
}

TEST_CASE("outlier: configuration") {
  Outlier t;
  CHECK(t.configure().ok());
  struct Case {
    std::vector<std::pair<std::string, FakeValue>> keys;
    std::string path;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"consecutive-5xx", 1001}}, kPath + ".consecutive-5xx", "must be at most 1000, got 1001"},
      {{{"consecutive-failures", -1}},
       kPath + ".consecutive-failures",
       "must be between 0 and 1000, got -1"},
      {{{"base-ejection-time", "0ms"}},
       kPath + ".base-ejection-time",
       "must be at least 1ms, got 0ms"},
      {{{"max-ejection-time", "10s"}},
       kPath + ".max-ejection-time",
       "must be at least base-ejection-time (30s), got 10s"},
      {{{"base-ejection-time", "1500ms"}, {"max-ejection-time", "1s"}},
       kPath + ".max-ejection-time",
       "must be at least base-ejection-time (1500ms), got 1s"},
      {{{"max-ejected-percent", 101}},
       kPath + ".max-ejected-percent",
       "must be at most 100, got 101"},
      {{{"consecutive-5xxx", 3}}, kPath + ".consecutive-5xxx", "did you mean 'consecutive-5xx'?"},
  };
  for (const Case& c : cases) {
    auto cfg = t.configure(c.keys);
    CAPTURE(c.message);
    CHECK_FALSE(cfg.ok());
    CHECK_MESSAGE(cfg.has_error(c.path, c.message), cfg.errors_text());
    CHECK(cfg.errors().size() == 1);
  }
  // A base longer than the default maximum raises the maximum with it.
  CHECK(t.configure({{"base-ejection-time", "10m"}}).ok());
  CHECK(t.configure({{"consecutive-5xx", 0}, {"consecutive-failures", 0}}).ok());
  CHECK(t.host.logged("nothing is ejected", WEIR_LOG_WARN));
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: consecutive 5xx eject, and the ejection ends by itself") {
  Outlier t;
  auto cfg = t.configure({{"consecutive-5xx", 3}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets(kThree) == WEIR_OK);
  observe_n(health, "a", 503, 2);
  CHECK(health.reports().empty());
  observe_n(health, "a", 502, 1);
  REQUIRE(report_lines(health.reports()) ==
          std::vector<std::string>{"a unhealthy: 3 consecutive 5xx responses; ejected for 30s"});
  // While ejected, what still comes back from it is ignored.
  observe_n(health, "a", 200, 3);
  observe_n(health, "a", 503, 5);
  CHECK(health.reports().size() == 1);
  t.host.fire_due(29'999);
  CHECK(health.reports().size() == 1);
  t.host.fire_due(1);
  REQUIRE(health.reports().size() == 2);
  CHECK(report_lines(health.reports())[1] == "a healthy: ejection of 30s ended");
  CHECK(t.host.pending_timers() == 0);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: connection failures, timeouts and status 0 count as failures") {
  Outlier t;
  auto cfg = t.configure({{"consecutive-failures", 3}, {"consecutive-5xx", 3}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets(kThree) == WEIR_OK);
  CHECK(health.observe("b", 0, true));        // connect failed
  CHECK(health.observe("b", 503));            // a 5xx: its own counter, no reset
  CHECK(health.observe("b", 0, false, true)); // response timed out (ABI 1.2)
  CHECK(health.reports().empty());
  CHECK(health.observe("b", 0)); // no response at all
  REQUIRE(
      report_lines(health.reports()) ==
      std::vector<std::string>{"b unhealthy: 3 consecutive connection failures; ejected for 30s"});
  // From a host older than ABI 1.2, timed_out is not there: a 200 is a success.
  weir::testing::FakeObservation old;
  old.target_id = "c";
  old.status = 200;
  old.timed_out = true;
  old.struct_size = offsetof(weir_health_observation_t, timed_out);
  for (int i = 0; i < 5; ++i) {
    CHECK(health.observe(old));
  }
  CHECK(health.reports().size() == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: a success resets the counters; 0 turns a counter off") {
  Outlier t;
  SUBCASE("reset") {
    auto cfg = t.configure({{"consecutive-5xx", 3}, {"consecutive-failures", 3}});
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    REQUIRE(health.set_targets(kThree) == WEIR_OK);
    for (int round = 0; round < 4; ++round) {
      observe_n(health, "a", 503, 2);
      CHECK(health.observe("a", 0, true));
      CHECK(health.observe("a", 0, true));
      observe_n(health, "a", round % 2 == 0 ? 200 : 404, 1); // any status below 500
    }
    CHECK(health.reports().empty());
  }
  SUBCASE("off") {
    auto cfg = t.configure({{"consecutive-5xx", 0}, {"consecutive-failures", 2}});
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    REQUIRE(health.set_targets(kThree) == WEIR_OK);
    observe_n(health, "a", 500, 50);
    CHECK(health.reports().empty());
    CHECK(health.observe("a", 0, true));
    CHECK(health.observe("a", 0, true));
    CHECK(health.reports().size() == 1);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: unknown targets are ignored") {
  Outlier t;
  auto cfg = t.configure({{"consecutive-5xx", 1}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  observe_n(health, "a", 503, 3); // before any target set
  REQUIRE(health.set_targets(kThree) == WEIR_OK);
  observe_n(health, "10.0.0.1:80", 503, 3); // the address, not the id the host uses for it
  observe_n(health, "zzz", 503, 3);
  CHECK(health.reports().empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: the ejection time grows with each ejection, up to the maximum") {
  Outlier t;
  auto cfg = t.configure(
      {{"consecutive-5xx", 2}, {"base-ejection-time", "10s"}, {"max-ejection-time", "25s"}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets(kThree) == WEIR_OK);
  for (const char* expected : {"10s", "20s", "25s", "25s"}) {
    observe_n(health, "a", 500, 2);
    REQUIRE(!health.reports().empty());
    CHECK(health.reports().back().reason ==
          std::string("2 consecutive 5xx responses; ejected for ") + expected);
    CHECK_FALSE(health.reports().back().healthy);
    REQUIRE(t.host.next_timer_in_ms());
    t.host.fire_due(*t.host.next_timer_in_ms());
    CHECK(health.reports().back().healthy);
    CHECK(health.reports().back().reason == std::string("ejection of ") + expected + " ended");
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: the ejection count goes down by one per base-ejection-time un-ejected") {
  Outlier t;
  auto cfg = t.configure({{"consecutive-5xx", 2}, {"base-ejection-time", "10s"}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets(kThree) == WEIR_OK);
  const auto eject_and_wait = [&](const std::string& expected) {
    observe_n(health, "a", 500, 2);
    REQUIRE(!health.reports().empty());
    CHECK(health.reports().back().reason == "2 consecutive 5xx responses; ejected for " + expected);
    t.host.fire_due(*t.host.next_timer_in_ms());
    CHECK(health.reports().back().healthy);
  };
  eject_and_wait("10s");    // 1 ejection
  eject_and_wait("20s");    // 2
  eject_and_wait("30s");    // 3
  t.host.fire_due(19'999);  // one base-ejection-time forgiven (not yet two)
  eject_and_wait("30s");    // 3 - 1 + 1
  t.host.fire_due(20'000);  // two forgiven
  eject_and_wait("20s");    // 3 - 2 + 1
  t.host.fire_due(600'000); // everything forgiven
  eject_and_wait("10s");
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: max-ejected-percent caps ejections, with one warning") {
  Outlier t;
  SUBCASE("25% of four targets: one at a time") {
    auto cfg = t.configure({{"consecutive-5xx", 2}, {"max-ejected-percent", 25}});
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    std::vector<FakeTarget> four = kThree;
    four.emplace_back("10.0.0.4:80", 1, true, "d");
    REQUIRE(health.set_targets(four) == WEIR_OK);
    observe_n(health, "a", 503, 2);
    REQUIRE(health.reports().size() == 1);
    observe_n(health, "b", 503, 2);
    CHECK(health.reports().size() == 1); // skipped: a is ejected already
    CHECK(t.cap_warnings() == 1);
    CHECK(t.host.logged("not ejecting b (2 consecutive 5xx responses): 1 of 4 targets are "
                        "ejected already (max-ejected-percent = 25)",
                        WEIR_LOG_WARN));
    observe_n(health, "b", 503, 20);
    observe_n(health, "c", 503, 5);
    CHECK(t.cap_warnings() == 1); // one line, not one per request
    CHECK(health.reports().size() == 1);
    t.host.fire_due(30'000); // a comes back: there is room again
    REQUIRE(health.reports().size() == 2);
    observe_n(health, "b", 503, 1); // b's count was kept
    REQUIRE(health.reports().size() == 3);
    CHECK(health.reports()[2].target_id == "b");
    CHECK_FALSE(health.reports()[2].healthy);
    observe_n(health, "c", 503, 1); // the cap again: one new warning
    CHECK(t.cap_warnings() == 2);
    CHECK(health.reports().size() == 3);
  }
  SUBCASE("0% still lets one target go in a group of two") {
    auto cfg = t.configure({{"consecutive-5xx", 1}, {"max-ejected-percent", 0}});
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:80"}, {"10.0.0.2:80"}}) == WEIR_OK);
    observe_n(health, "10.0.0.1:80", 503, 1);
    observe_n(health, "10.0.0.2:80", 503, 1);
    REQUIRE(health.reports().size() == 1);
    CHECK(health.reports()[0].target_id == "10.0.0.1:80");
    CHECK(t.cap_warnings() == 1);
  }
  SUBCASE("a lone target only with 100%") {
    auto cfg = t.configure({{"consecutive-5xx", 1}});
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
    observe_n(health, "10.0.0.1:80", 503, 3);
    CHECK(health.reports().empty());
    auto all = t.configure({{"consecutive-5xx", 1}, {"max-ejected-percent", 100}}).health();
    REQUIRE(all.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
    observe_n(all, "10.0.0.1:80", 503, 1);
    CHECK(all.reports().size() == 1);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("outlier: a target that leaves while ejected frees its place and its timer") {
  Outlier t;
  auto cfg = t.configure({{"consecutive-5xx", 1}});
  REQUIRE(cfg.ok());
  {
    auto health = cfg.health();
    REQUIRE(health.set_targets(kThree) == WEIR_OK); // 50% of 3: one at a time
    observe_n(health, "a", 503, 1);
    observe_n(health, "b", 503, 1);
    REQUIRE(health.reports().size() == 1);
    CHECK(t.host.pending_timers() == 1);
    REQUIRE(health.set_targets({kThree[1], kThree[2]}) == WEIR_OK);
    CHECK(t.host.pending_timers() == 0);
    observe_n(health, "b", 503, 1);
    REQUIRE(health.reports().size() == 2);
    CHECK(health.reports()[1].target_id == "b");
    t.host.fire_due(100'000);
    CHECK(report_lines(health.reports()).back() == "b healthy: ejection of 30s ended");
    observe_n(health, "c", 503, 1); // ejected: the timer is running at destruction
    CHECK(t.host.pending_timers() == 1);
  }
  CHECK(t.host.pending_timers() == 0);
  CHECK(t.host.misuse().empty());
}
