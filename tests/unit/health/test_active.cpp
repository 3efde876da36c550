// health-active through the fake host: configuration, the scheduler (spread, jitter, rise/fall,
// guard timer, target changes, initial state) with the tcp and tls modules.
#include "common.hpp"

#include <algorithm>
#include <set>

using namespace health_tests;

namespace {

struct Active {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_HEALTH_ACTIVE);

  FakeConfigured configure(const std::string& module,
                           std::vector<std::pair<std::string, FakeValue>> keys = {}) {
    return host.configure(plugin.module(WEIR_KIND_HEALTH, module), table(module, std::move(keys)),
                          kPath);
  }
  /// The one probe running now (fails the test otherwise).
  weir::testing::FakeProbe running() {
    const auto pending = host.pending_probes();
    REQUIRE(pending.size() == 1);
    return pending[0];
  }
  /// Fire the next check and complete it.
  void step(bool ok, std::string_view error = "connection refused") {
    fire_next(host);
    const auto probe = running();
    REQUIRE(host.complete_probe(probe.id, ok, error));
  }
};

/// interval 200ms, no jitter, fall 2, rise 2: a deterministic schedule.
std::vector<std::pair<std::string, FakeValue>>
steady(std::vector<std::pair<std::string, FakeValue>> more = {}) {
  return with_defaults({{"interval", "200ms"}, {"jitter", 0}, {"fall", 2}, {"rise", 2}},
                       std::move(more));
}

} // namespace

TEST_CASE("active: descriptor") {
  Active t;
  check_descriptor(t.plugin, "health-active", {"tcp", "tls", "http"});
}

TEST_CASE("active: defaults are accepted by every module") {
  Active t;
  for (const char* module : {"tcp", "tls", "http"}) {
    CAPTURE(module);
    auto cfg = t.configure(module);
    CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  }
  // A short interval without a timeout: the default timeout shrinks to the interval.
  auto cfg = t.configure("tcp", {{"interval", "1s"}});
  CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: configuration errors name the key and the problem") {
  Active t;
  struct Case {
    std::vector<std::pair<std::string, FakeValue>> keys;
    std::string path;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"interval", "5ms"}}, kPath + ".interval", "must be at least 10ms, got 5ms"},
      {{{"interval", "soon"}}, kPath + ".interval", "expected a duration"},
      {{{"timeout", "0ms"}}, kPath + ".timeout", "must be at least 1ms, got 0ms"},
      {{{"interval", "1s"}, {"timeout", "2s"}},
       kPath + ".timeout",
       "must not exceed the interval (1000ms), got 2000ms"},
      {{{"rise", 0}}, kPath + ".rise", "must be between 1 and 100, got 0"},
      {{{"fall", 101}}, kPath + ".fall", "must be between 1 and 100, got 101"},
      {{{"fall", "3"}}, kPath + ".fall", "expected an integer, got a string"},
      {{{"jitter", 0.6}}, kPath + ".jitter", "must be between 0 and 0.5, got 0.6"},
      {{{"jitter", -0.1}}, kPath + ".jitter", "must be between 0 and 0.5, got -0.1"},
      {{{"initial", "maybe"}},
       kPath + ".initial",
       "expected \"healthy\" or \"unhealthy\", got \"maybe\""},
      {{{"intervall", "5s"}},
       kPath + ".intervall",
       "unknown key 'intervall' (did you mean 'interval'?)"},
      {{{"path", "/"}}, kPath + ".path", "unknown key 'path'"}, // an http key
  };
  for (const Case& c : cases) {
    auto cfg = t.configure("tcp", c.keys);
    CAPTURE(c.message);
    CHECK_FALSE(cfg.ok());
    CHECK_MESSAGE(cfg.has_error(c.path, c.message), cfg.errors_text());
    CHECK(cfg.errors().size() == 1);
  }
  // Every problem is reported at once.
  auto cfg = t.configure("tls", {{"rise", 0}, {"fall", 0}, {"initial", 1}});
  CHECK(cfg.errors().size() == 3);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: a host without ABI 1.2 is refused with a clear error") {
  Active t;
  SUBCASE("at configuration") {
    t.host.api_table().struct_size = offsetof(weir_host_api_t, probe_start);
    t.host.api_table().abi_minor = 1;
    for (const char* module : {"tcp", "tls", "http"}) {
      auto cfg = t.configure(module);
      CHECK_FALSE(cfg.ok());
      CHECK_MESSAGE(cfg.has_error(kPath, "active health checks need a weir whose plugin ABI is 1.2 "
                                         "or later"),
                    cfg.errors_text());
      CHECK(cfg.has_error(kPath, "this host speaks ABI 1.1"));
    }
  }
  SUBCASE("at instance creation") {
    auto cfg = t.configure("tcp");
    REQUIRE(cfg.ok());
    t.host.api_table().probe_start = nullptr;
    auto health = cfg.health();
    CHECK_FALSE(health.ok());
    CHECK(t.host.logged("plugin ABI is 1.2 or later", WEIR_LOG_ERROR));
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: fall=2 and rise=2 through the fake clock") {
  Active t;
  auto cfg = t.configure("tcp", steady({{"timeout", "150ms"}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  CHECK(health.reports().empty()); // initially healthy: nothing to say
  CHECK(t.host.pending_probes().empty());
  const auto first = t.host.next_timer_in_ms();
  REQUIRE(first);
  CHECK(*first < 200); // within one interval

  fire_next(t.host);
  const auto probe = t.running();
  CHECK(probe.address == "10.0.0.1:80");
  CHECK(probe.kind == WEIR_PROBE_TCP);
  CHECK(probe.timeout_ms == 150);
  CHECK(probe.source == health.name());
  REQUIRE(t.host.complete_probe(probe.id, false, "connection refused"));
  CHECK(health.reports().empty()); // one failure: still healthy
  CHECK(t.host.next_timer_in_ms() == 200u);

  t.step(false);
  REQUIRE(health.reports().size() == 1); // exactly after the second failure
  CHECK(health.reports()[0].target_id == "10.0.0.1:80");
  CHECK_FALSE(health.reports()[0].healthy);
  CHECK(health.reports()[0].reason == "TCP check: connection refused; 2 consecutive failed checks");

  t.step(false); // still unhealthy: no new report
  t.step(true);
  CHECK(health.reports().size() == 1);
  t.step(false); // a failure in between restarts the count
  t.step(true);
  CHECK(health.reports().size() == 1);
  t.step(true);
  REQUIRE(health.reports().size() == 2);
  CHECK(health.reports()[1].healthy);
  CHECK(health.reports()[1].reason == "TCP check: connected; 2 consecutive successful checks");
  t.step(true);
  CHECK(health.reports().size() == 2);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: the tls module probes with a handshake") {
  Active t;
  auto cfg = t.configure("tls", steady({{"fall", 1}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:443", 1, true, "web-1"}}) == WEIR_OK);
  fire_next(t.host);
  const auto probe = t.running();
  CHECK(probe.kind == WEIR_PROBE_TLS);
  CHECK(probe.timeout_ms == 200); // the default 2s, cut to the interval
  REQUIRE(t.host.complete_probe(probe.id, false, "certificate verify failed"));
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].target_id == "web-1"); // reported by the target's id
  CHECK(health.reports()[0].reason ==
        "TLS check: certificate verify failed; 1 consecutive failed check");
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: the first check is spread over the interval, later ones jittered") {
  Active t;
  SUBCASE("jitter 0.5") {
    auto cfg = t.configure("tcp", {{"interval", "1s"}, {"jitter", 0.5}, {"timeout", "100ms"}});
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto health = cfg.health();
    std::vector<FakeTarget> targets;
    for (int i = 0; i < 20; ++i) {
      targets.emplace_back("10.0.0." + std::to_string(i + 1) + ":80");
    }
    REQUIRE(health.set_targets(targets) == WEIR_OK);
    CHECK(t.host.pending_timers() == 20);
    // Spread: every first check within the interval, not all at the same moment.
    t.host.fire_due(999);
    CHECK(t.host.pending_probes().size() == 20);
    std::set<uint64_t> starts;
    for (const auto& p : t.host.pending_probes()) {
      starts.insert(p.started_ns);
    }
    CHECK(starts.size() > 1);
    for (const auto& p : t.host.pending_probes()) {
      t.host.complete_probe(p.id, true);
    }
    REQUIRE(health.set_targets({targets[0]}) == WEIR_OK); // keep one, to read its waits
    std::set<uint64_t> waits;
    for (int i = 0; i < 60; ++i) {
      const uint64_t wait = fire_next(t.host);
      CHECK(wait >= 500);
      CHECK(wait <= 1500);
      waits.insert(wait);
      REQUIRE(t.host.complete_probe(t.running().id, true));
    }
    CHECK(waits.size() > 10); // random, not a constant
  }
  SUBCASE("the default jitter of 0.1") {
    auto cfg = t.configure("tcp", {{"interval", "2s"}});
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
    CHECK(fire_next(t.host) < 2000);
    for (int i = 0; i < 40; ++i) {
      REQUIRE(t.host.complete_probe(t.running().id, true));
      const uint64_t wait = fire_next(t.host);
      CHECK(wait >= 1800);
      CHECK(wait <= 2200);
    }
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: a check the host never answers fails after timeout + 1s (guard)") {
  Active t;
  auto cfg =
      t.configure("tcp", {{"interval", "5s"}, {"timeout", "500ms"}, {"jitter", 0}, {"fall", 1}});
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  fire_next(t.host);
  const auto stuck = t.running();
  t.host.fire_due(1499);
  CHECK(health.reports().empty());
  t.host.fire_due(1);
  REQUIRE(health.reports().size() == 1);
  CHECK_FALSE(health.reports()[0].healthy);
  CHECK(health.reports()[0].reason ==
        "TCP check: timed out after 500ms (no result from the host); 1 consecutive failed check");
  CHECK(t.host.probes()[0].state == FakeRequestState::Cancelled); // given up with the host
  CHECK_FALSE(t.host.complete_probe(stuck.id, true));
  CHECK(t.host.logged("no result for the check of 10.0.0.1:80 within 1500ms", WEIR_LOG_WARN));
  // Checking goes on.
  CHECK(t.host.next_timer_in_ms() == 5000u);
  fire_next(t.host);
  CHECK(t.host.pending_probes().size() == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: the host's own timeout is reported with the configured time") {
  Active t;
  auto cfg = t.configure("tcp", steady({{"fall", 1}}));
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  t.step(false, "timed out");
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].reason ==
        "TCP check: timed out after 200ms; 1 consecutive failed check");
}

TEST_CASE("active: a check the host refuses to start counts as failed") {
  Active t;
  auto cfg = t.configure("tcp", steady({{"fall", 1}}));
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  t.host.set_refuse_requests(true);
  fire_next(t.host);
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].reason ==
        "TCP check: the check could not start (see weir's log); 1 consecutive failed check");
  CHECK(t.host.next_timer_in_ms() == 200u); // and tries again
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: targets that leave are cancelled, targets that stay keep their state") {
  Active t;
  auto cfg = t.configure("tcp", steady({{"fall", 1}, {"rise", 2}}));
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80", 1, true, "a"}, {"10.0.0.2:80", 1, true, "b"}}) ==
          WEIR_OK);
  CHECK(t.host.pending_timers() == 2);
  t.host.fire_due(200); // both first checks are running now
  auto running = t.host.pending_probes();
  REQUIRE(running.size() == 2);
  const auto& probe_a = running[0].address == "10.0.0.1:80" ? running[0] : running[1];
  const auto& probe_b = running[0].address == "10.0.0.1:80" ? running[1] : running[0];
  REQUIRE(t.host.complete_probe(probe_a.id, false));
  REQUIRE(report_lines(health.reports()) ==
          std::vector<std::string>{
              "a unhealthy: TCP check: connection refused; 1 consecutive failed check"});

  // b leaves while its check runs; a stays (at a new address), c arrives.
  REQUIRE(health.set_targets({{"10.0.0.11:80", 1, true, "a"}, {"10.0.0.3:80", 1, true, "c"}}) ==
          WEIR_OK);
  for (const auto& p : t.host.probes()) {
    CHECK(p.state ==
          (p.id == probe_b.id ? FakeRequestState::Cancelled : FakeRequestState::Completed));
  }
  CHECK_FALSE(t.host.complete_probe(probe_b.id, true));
  CHECK(t.host.pending_timers() == 2); // a's next check and c's first
  CHECK(health.reports().size() == 1); // nothing new about a (still unhealthy), nothing about c

  // a needs two successes, checked at its new address.
  t.host.fire_due(200);
  for (const auto& p : t.host.pending_probes()) {
    CHECK(p.address != "10.0.0.2:80");
    t.host.complete_probe(p.id, true);
  }
  CHECK(health.reports().size() == 1);
  t.host.fire_due(200);
  for (const auto& p : t.host.pending_probes()) {
    t.host.complete_probe(p.id, true);
  }
  REQUIRE(health.reports().size() == 2);
  CHECK(health.reports()[1].target_id == "a");
  CHECK(health.reports()[1].healthy);
  const bool a_checked_at_new_address =
      std::any_of(t.host.probes().begin(), t.host.probes().end(),
                  [](const weir::testing::FakeProbe& p) { return p.address == "10.0.0.11:80"; });
  CHECK(a_checked_at_new_address);

  // Everything leaves: no timer and no check is left.
  REQUIRE(health.set_targets({}) == WEIR_OK);
  CHECK(t.host.pending_timers() == 0);
  CHECK(t.host.pending_requests() == 0);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: initial = \"unhealthy\" is reported at once, for new targets only") {
  Active t;
  auto cfg = t.configure("tcp", steady({{"initial", "unhealthy"}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  REQUIRE(report_lines(health.reports()) ==
          std::vector<std::string>{
              "10.0.0.1:80 unhealthy: initial state: unhealthy until 2 consecutive successful "
              "checks"});
  t.step(true);
  CHECK(health.reports().size() == 1);
  t.step(true);
  REQUIRE(health.reports().size() == 2);
  CHECK(health.reports()[1].healthy);
  // The target stays and a new one arrives: only the new one is reported.
  REQUIRE(health.set_targets({{"10.0.0.1:80"}, {"10.0.0.2:80"}}) == WEIR_OK);
  REQUIRE(health.reports().size() == 3);
  CHECK(health.reports()[2].target_id == "10.0.0.2:80");
  CHECK_FALSE(health.reports()[2].healthy);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("active: destroying the instance cancels its timers and running checks") {
  Active t;
  auto cfg = t.configure("tcp", steady());
  REQUIRE(cfg.ok());
  {
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:80"}, {"10.0.0.2:80"}}) == WEIR_OK);
    t.host.fire_due(200);
    CHECK(t.host.pending_requests() == 2);
    CHECK(t.host.pending_timers() == 2); // the guards
  }
  CHECK(t.host.pending_requests() == 0);
  CHECK(t.host.pending_timers() == 0);
  for (const auto& p : t.host.probes()) {
    CHECK(p.state == FakeRequestState::Cancelled);
  }
  CHECK(t.host.misuse().empty());
}
