// discovery-srv (module "srv") through the fake host: SRV records, their target hosts' addresses,
// priority / weight / metadata, the target ".", failing and missing target hosts, odd answers.
#include "common.hpp"

using namespace discovery_tests;

namespace {

const std::string kSrv = "_http._tcp.example.test";

struct SrvTest : Dns {
  SrvTest() : Dns(WEIR_TEST_PLUGIN_DISCOVERY_SRV, "srv") {}

  /// A started instance of name = kSrv plus `keys`.
  weir::testing::FakeDiscovery start(Keys keys = {}) {
    keys.insert(keys.begin(), {"name", kSrv});
    cfg = configure(std::move(keys));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto d = cfg.discovery();
    REQUIRE(d.ok());
    REQUIRE(d.start() == WEIR_OK);
    return d;
  }
  /// Answer the A query of `host` with `ips` (ttl 60) and its AAAA query with nothing.
  void host_v4(const std::string& name, std::vector<std::string> ips, uint32_t ttl = 60) {
    std::vector<FakeDnsRecord> records;
    for (std::string& ip : ips) {
      records.push_back(FakeDnsRecord::a(std::move(ip), ttl));
    }
    answer(name, WEIR_DNS_A, records);
    answer(name, WEIR_DNS_AAAA, {});
  }

  FakeConfigured cfg;
};

FakeDnsRecord srv(uint16_t priority, uint16_t weight, uint16_t port, const char* target,
                  uint32_t ttl = 60) {
  return FakeDnsRecord::srv(priority, weight, port, target, ttl);
}

} // namespace

TEST_CASE("srv: descriptor") {
  SrvTest t;
  check_descriptor(t.plugin, "discovery-srv", "srv");
}

TEST_CASE("srv: configuration") {
  SrvTest t;
  auto ok = t.configure({{"name", "_ldap._tcp.Example.Test."}, {"family", "ipv6"}});
  CHECK_MESSAGE(ok.ok(), ok.errors_text());
  check_errors(
      t, {
             {{}, kPath, "missing required key 'name' (an SRV name, e.g."},
             {{{"name", "10.1.2.3"}}, kPath + ".name", "is an IP address"},
             {{{"name", "_http._tcp.ex ample.test"}}, kPath + ".name", "is not a valid DNS name"},
             {{{"name", kSrv}, {"port", 80}},
              kPath + ".port",
              "unknown key 'port' (expected one of: name, refresh,"},
             {{{"name", kSrv}, {"on-empty", "never"}},
              kPath + ".on-empty",
              "expected \"keep\" or \"clear\", got \"never\""},
         });
}

TEST_CASE("srv: priority, weight (0 becomes 1), port and the srv-target metadata") {
  SrvTest t;
  auto d = t.start();
  CHECK(t.pending() == std::vector<std::string>{"SRV " + kSrv});
  t.answer(kSrv, WEIR_DNS_SRV,
           {srv(20, 0, 8081, "b.example.test", 120), srv(10, 5, 8080, "A.Example.Test.", 60)});
  CHECK(t.pending() == std::vector<std::string>{"A a.example.test", "A b.example.test",
                                                "AAAA a.example.test", "AAAA b.example.test"});
  CHECK(d.published().empty());
  t.answer("a.example.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1", 30)});
  t.answer("a.example.test", WEIR_DNS_AAAA, {FakeDnsRecord::aaaa("2001:db8::1", 300)});
  t.host_v4("b.example.test", {"10.0.0.3", "10.0.0.2"});
  REQUIRE(d.published().size() == 1);
  const Metadata ma = {{"srv-target", "a.example.test"}};
  const Metadata mb = {{"srv-target", "b.example.test"}};
  const std::vector<FakeTarget> expected = {
      {"10.0.0.1:8080", 5, true, "10.0.0.1:8080", 10, ma},
      {"[2001:db8::1]:8080", 5, true, "[2001:db8::1]:8080", 10, ma},
      {"10.0.0.2:8081", 1, true, "10.0.0.2:8081", 20, mb},
      {"10.0.0.3:8081", 1, true, "10.0.0.3:8081", 20, mb},
  };
  CHECK(d.last_published() == expected);
  CHECK(t.host.next_timer_in_ms() == 30'000u); // the smallest TTL: the A record of a
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: the refresh takes the SRV records' TTL into account") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}});
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test", 15)});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1", 600)});
  CHECK(t.host.next_timer_in_ms() == 15'000u);
  CHECK(t.fire_next() == 15'000u);
  CHECK(t.pending() == std::vector<std::string>{"SRV " + kSrv});
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: a single target \".\" means the service is not available: the empty set") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}});
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 0, 0, ".", 90)});
  CHECK(t.host.pending_dns().empty()); // no address lookup
  REQUIRE(d.published().size() == 2);  // even with on-empty = keep
  CHECK(d.last_published().empty());
  CHECK(t.logged("_http._tcp.example.test: the service is decidedly not available (its one SRV "
                 "record has the target \".\"); publishing an empty set") == 1);
  CHECK(t.host.next_timer_in_ms() == 90'000u);
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 0, 0, ".", 90)});
  CHECK(d.published().size() == 2);
  CHECK(t.logged("decidedly not available") == 1); // once per streak
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  CHECK(d.published().size() == 3);
  CHECK(t.logged("_http._tcp.example.test is available again", WEIR_LOG_INFO) == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: NXDOMAIN and no records follow on-empty") {
  SrvTest t;
  SUBCASE("keep") {
    auto d = t.start({{"family", "ipv4"}});
    t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
    t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
    t.fire_next();
    t.fail(kSrv, WEIR_DNS_SRV, WEIR_ERROR_NOT_FOUND, {}, 20);
    CHECK(d.published().size() == 1);
    CHECK(t.logged("_http._tcp.example.test does not exist (NXDOMAIN); keeping the last 1 "
                   "target(s)") == 1);
    CHECK(t.host.next_timer_in_ms() == 20'000u);
    t.fire_next();
    t.answer(kSrv, WEIR_DNS_SRV, {});
    CHECK(d.published().size() == 1);
    CHECK(t.logged("has no SRV records (still)", WEIR_LOG_DEBUG) == 1);
  }
  SUBCASE("clear") {
    auto d = t.start({{"family", "ipv4"}, {"on-empty", "clear"}});
    t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
    t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
    t.fire_next();
    t.answer(kSrv, WEIR_DNS_SRV, {});
    REQUIRE(d.published().size() == 2);
    CHECK(d.last_published().empty());
    CHECK(t.logged("has no SRV records; publishing an empty set") == 1);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: a failing SRV query keeps the set and backs off") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}, {"retry-min", "2s"}, {"retry-max", "5s"}});
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.fire_next();
  std::vector<uint64_t> waits;
  for (int i = 0; i < 3; ++i) {
    t.fail(kSrv, WEIR_DNS_SRV, WEIR_ERROR, "timed out");
    waits.push_back(t.fire_next());
  }
  CHECK(waits == std::vector<uint64_t>{2000, 4000, 5000});
  CHECK(d.published().size() == 1);
  CHECK(t.logged("resolving _http._tcp.example.test (SRV) failed: timed out; keeping the last 1 "
                 "target(s); retrying in 2000ms") == 1);
  CHECK(t.logged("failed") == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: a target host that fails keeps its last addresses (else is skipped); backs off") {
  SrvTest t;
  auto d = t.start({{"ttl-min", "1s"}});
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(0, 1, 80, "b.test")});
  t.host_v4("a.test", {"10.0.0.1"});
  t.fail("b.test", WEIR_DNS_A, WEIR_ERROR, "server failure"); // no earlier addresses: skipped
  t.answer("b.test", WEIR_DNS_AAAA, {});
  REQUIRE(d.published().size() == 1);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(t.logged("resolving SRV target b.test of _http._tcp.example.test (A/AAAA) failed: server "
                 "failure; skipping it; retrying in 1000ms") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u); // degraded: the retry delay, not the TTL

  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(0, 1, 80, "b.test")});
  t.host_v4("a.test", {"10.0.0.1"});
  t.host_v4("b.test", {"10.0.0.2"});
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80", "10.0.0.2:80"});
  CHECK(t.logged("resolving b.test works again", WEIR_LOG_INFO) == 1);
  CHECK(t.host.next_timer_in_ms() == 60'000u);

  // Now b.test fails with addresses known: they are kept, nothing new is published.
  std::vector<uint64_t> waits;
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      waits.push_back(t.fire_next());
    } else {
      t.fire_next();
    }
    t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(0, 1, 80, "b.test")});
    t.host_v4("a.test", {"10.0.0.1"});
    t.answer("b.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.2")});
    t.fail("b.test", WEIR_DNS_AAAA, WEIR_ERROR, "timed out");
  }
  waits.push_back(*t.host.next_timer_in_ms());
  CHECK(waits == std::vector<uint64_t>{1000, 2000, 4000});
  CHECK(d.published().size() == 2);
  CHECK(t.logged("resolving SRV target b.test of _http._tcp.example.test (A/AAAA) failed: timed "
                 "out; keeping its last 1 address(es); retrying in 1000ms") == 1);
  CHECK(t.logged("failed again: timed out", WEIR_LOG_DEBUG) == 2);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: a target host that does not exist is skipped with a warning, once") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}});
  for (int round = 0; round < 3; ++round) {
    if (round > 0) {
      t.fire_next();
    }
    t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(5, 1, 81, "gone.test")});
    t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
    t.fail("gone.test", WEIR_DNS_A, WEIR_ERROR_NOT_FOUND);
  }
  CHECK(d.published().size() == 1);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(t.logged("SRV target gone.test of _http._tcp.example.test does not exist (NXDOMAIN); "
                 "skipping it") == 1);
  CHECK(t.host.next_timer_in_ms() == 60'000u); // not a failure: no back-off
  // A host with no address record is skipped the same way.
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(5, 1, 81, "gone.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.answer("gone.test", WEIR_DNS_A, {});
  CHECK(t.logged("SRV target gone.test does not exist") == 0);
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(5, 1, 81, "gone.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.answer("gone.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.9")});
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80", "10.0.0.9:81"});
  CHECK(t.logged("SRV target gone.test of _http._tcp.example.test has addresses again",
                 WEIR_LOG_INFO) == 1);
  // Every target host missing: an empty answer (kept).
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "gone.test")});
  t.fail("gone.test", WEIR_DNS_A, WEIR_ERROR_NOT_FOUND, {}, 45);
  CHECK(d.published().size() == 2);
  CHECK(t.logged("none of the SRV targets of _http._tcp.example.test has an address; keeping the "
                 "last 2 target(s)") == 1);
  CHECK(t.host.next_timer_in_ms() == 45'000u);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: odd answers: other names and types, \".\" among others, port 0, duplicates") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}});
  t.answer(kSrv, WEIR_DNS_SRV,
           {srv(10, 1, 80, "a.test"),
            FakeDnsRecord::srv(0, 1, 80, "intruder.test", 60, "_other._tcp.example.test"),
            FakeDnsRecord::a("10.9.9.9"), srv(0, 1, 80, "."), srv(0, 1, 0, "zero.test"),
            srv(20, 7, 80, "b.test"),   // the same address as a.test: a.test's record wins
            srv(30, 2, 8080, "b.test"), // the same host on another port: another target
            srv(10, 1, 80, "A.TEST")}); // a.test again, in capitals
  CHECK(t.pending() == std::vector<std::string>{"A a.test", "A b.test"});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.answer("b.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  const std::vector<FakeTarget> expected = {
      {"10.0.0.1:80", 1, true, "10.0.0.1:80", 10, {{"srv-target", "a.test"}}},
      {"10.0.0.1:8080", 2, true, "10.0.0.1:8080", 30, {{"srv-target", "b.test"}}},
  };
  CHECK(d.last_published() == expected);
  CHECK(t.logged("ignored 2 record(s) of other types or names", WEIR_LOG_DEBUG) == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: destroying the instance while target hosts resolve cancels their queries") {
  SrvTest t;
  {
    auto d = t.start();
    t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test"), srv(0, 1, 80, "b.test")});
    t.host_v4("a.test", {"10.0.0.1"});
    CHECK(t.host.pending_dns().size() == 2);
  }
  CHECK(t.host.pending_requests() == 0);
  CHECK(t.host.pending_timers() == 0);
  size_t cancelled = 0;
  for (const FakeDnsQuery& q : t.host.dns_queries()) {
    cancelled += q.state == FakeRequestState::Cancelled ? 1 : 0;
  }
  CHECK(cancelled == 2);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("srv: a set emptied by failing lookups is a failure, even with on-empty = clear") {
  SrvTest t;
  auto d = t.start({{"family", "ipv4"}, {"on-empty", "clear"}});
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "a.test")});
  t.answer("a.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.answer(kSrv, WEIR_DNS_SRV, {srv(0, 1, 80, "new.test")}); // a host never resolved before
  t.fail("new.test", WEIR_DNS_A, WEIR_ERROR, "timed out");
  CHECK(d.published().size() == 1); // not cleared: nothing says the service is empty
  CHECK(t.logged("resolving _http._tcp.example.test (SRV) failed: no SRV target host could be "
                 "resolved; keeping the last 1 target(s); retrying in 1000ms") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u);
  CHECK(t.host.misuse().empty());
}
