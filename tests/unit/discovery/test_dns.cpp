// discovery-dns (module "dns") through the fake host: configuration, A/AAAA, TTL-driven and fixed
// refresh, failures and back-off, empty answers, odd answers, cancellation, no overlapping rounds.
// The refresh loop and its rules are shared with srv and dns-sd (dns_common.hpp), so most of them
// are tested here.
#include "common.hpp"

using namespace discovery_tests;

namespace {

const std::string kName = "app.example.test";

struct DnsTest : Dns {
  DnsTest() : Dns(WEIR_TEST_PLUGIN_DISCOVERY_DNS, "dns") {}

  /// A started instance of name = kName, port = 8080 plus `keys`.
  weir::testing::FakeDiscovery start(Keys keys = {}) {
    keys.insert(keys.begin(), {{"name", kName}, {"port", 8080}});
    cfg = configure(std::move(keys));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto d = cfg.discovery();
    REQUIRE(d.ok());
    REQUIRE(d.start() == WEIR_OK);
    return d;
  }
  /// Answer one round of A and AAAA.
  void round(const std::vector<FakeDnsRecord>& a, const std::vector<FakeDnsRecord>& aaaa) {
    answer(kName, WEIR_DNS_A, a);
    answer(kName, WEIR_DNS_AAAA, aaaa);
  }

  FakeConfigured cfg;
};

FakeDnsRecord a(const char* ip, uint32_t ttl = 60) {
  return FakeDnsRecord::a(ip, ttl);
}
FakeDnsRecord aaaa(const char* ip, uint32_t ttl = 60) {
  return FakeDnsRecord::aaaa(ip, ttl);
}

} // namespace

TEST_CASE("dns: descriptor") {
  DnsTest t;
  check_descriptor(t.plugin, "discovery-dns", "dns");
}

TEST_CASE("dns: accepted configurations") {
  DnsTest t;
  for (const Keys& keys : std::vector<Keys>{
           {{"name", "app.example.test"}, {"port", 80}},
           {{"name", "App.Example.Test."}, {"port", 65535}, {"weight", 65535}},
           {{"name", "svc_1.internal"}, {"port", 1}, {"refresh", "ttl"}},
           {{"name", "a.test"}, {"port", 80}, {"refresh", "30s"}, {"family", "ipv6"}},
           {{"name", "a.test"}, {"port", 80}, {"refresh", 5000}, {"on-empty", "clear"}},
           {{"name", "a.test"},
            {"port", 80},
            {"ttl-min", "100ms"},
            {"ttl-max", "100ms"},
            {"retry-min", "5s"}},
           {{"name", "a.test"}, {"port", 80}, {"retry-min", "2s"}, {"retry-max", "2s"}}}) {
    auto cfg = t.configure(keys);
    CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: configuration errors name the key and the problem") {
  DnsTest t;
  const Keys base = {{"name", "app.example.test"}, {"port", 8080}};
  auto with = [&base](Keys more) {
    Keys out = base;
    for (auto& [k, v] : more) {
      bool replaced = false;
      for (auto& b : out) {
        if (b.first == k) {
          b.second = v;
          replaced = true;
        }
      }
      if (!replaced) {
        out.emplace_back(k, v);
      }
    }
    return out;
  };
  check_errors(
      t,
      {
          {{{"port", 8080}}, kPath, "missing required key 'name' (a host name to resolve"},
          {{{"name", "a.test"}}, kPath, "missing required key 'port' (1..65535)"},
          {with({{"port", 0}}), kPath + ".port", "must be between 1 and 65535, got 0"},
          {with({{"port", 65536}}), kPath + ".port", "must be between 1 and 65535, got 65536"},
          {with({{"port", "80"}}), kPath + ".port", "expected an integer, got a string"},
          {with({{"name", 5}}), kPath + ".name", "expected a string, got an integer"},
          {with({{"name", "10.0.0.1"}}), kPath + ".name",
           "'10.0.0.1' is an IP address, not a name to resolve (use the static discovery"},
          {with({{"name", "::1"}}), kPath + ".name", "is an IP address"},
          {with({{"name", "bad name.test"}}), kPath + ".name",
           "'bad name.test' is not a valid DNS name: it has a character that is not a letter, a "
           "digit, '-' or '_' in label 'bad name'"},
          {with({{"name", "a..test"}}), kPath + ".name", "it has an empty label"},
          {with({{"name", ""}}), kPath + ".name", "is not a valid DNS name: it is empty"},
          {with({{"name", std::string(64, 'x') + ".test"}}), kPath + ".name",
           "has a label longer than 63 characters"},
          {with({{"weight", 0}}), kPath + ".weight", "must be between 1 and 65535, got 0"},
          {with({{"refresh", "soon"}}), kPath + ".refresh",
           "expected \"ttl\" or a duration such as \"30s\" (or an integer of milliseconds), got a "
           "string \"soon\""},
          {with({{"refresh", true}}), kPath + ".refresh", "got a boolean"},
          {with({{"refresh", "50ms"}}), kPath + ".refresh",
           "must be \"ttl\" or at least 100ms, got 50ms"},
          {with({{"ttl-min", "10ms"}}), kPath + ".ttl-min", "must be at least 100ms, got 10ms"},
          {with({{"ttl-min", "10s"}, {"ttl-max", "5s"}}), kPath + ".ttl-max",
           "must be at least ttl-min (10000ms), got 5000ms"},
          {with({{"retry-min", "50ms"}}), kPath + ".retry-min", "must be at least 100ms, got 50ms"},
          {with({{"retry-min", "1m"}, {"retry-max", "30s"}}), kPath + ".retry-max",
           "must be at least retry-min (60000ms), got 30000ms"},
          {with({{"on-empty", "drop"}}), kPath + ".on-empty",
           "expected \"keep\" or \"clear\", got \"drop\""},
          {with({{"family", "v4"}}), kPath + ".family",
           "expected \"ipv4\", \"ipv6\" or \"both\", got \"v4\""},
          {with({{"ttl_max", "5m"}}), kPath + ".ttl_max",
           "unknown key 'ttl_max' (did you mean 'ttl-max'?)"},
          {with({{"service", "_http._tcp.a.test"}}), kPath + ".service", "unknown key 'service'"},
      });
  // A long ttl-min without ttl-max raises the default ttl-max with it.
  auto cfg = t.configure(with({{"ttl-min", "10m"}, {"retry-min", "1m"}}));
  CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  // Every problem at once.
  auto many = t.configure({{"port", 0}, {"family", "all"}, {"on-empty", 1}});
  CHECK(many.errors().size() == 4);
}

TEST_CASE("dns: a host without dns_query is refused with a clear error") {
  DnsTest t;
  SUBCASE("at configuration") {
    t.host.api_table().struct_size = offsetof(weir_host_api_t, probe_start);
    t.host.api_table().abi_minor = 1;
    auto cfg = t.configure({{"name", "a.test"}, {"port", 80}});
    CHECK_FALSE(cfg.ok());
    CHECK_MESSAGE(cfg.has_error(kPath, "DNS discovery needs a weir whose plugin ABI is 1.2 or "
                                       "later (weir resolves the names); this host speaks ABI 1.1"),
                  cfg.errors_text());
  }
  SUBCASE("at instance creation") {
    auto cfg = t.configure({{"name", "a.test"}, {"port", 80}});
    REQUIRE(cfg.ok());
    t.host.api_table().dns_query = nullptr;
    auto d = cfg.discovery();
    CHECK_FALSE(d.ok());
    CHECK(t.host.logged("plugin ABI is 1.2 or later", WEIR_LOG_ERROR));
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: A and AAAA, sorted, one target per address, nothing before the first answer") {
  DnsTest t;
  auto d = t.start({{"weight", 3}});
  CHECK(t.pending() == std::vector<std::string>{"A " + kName, "AAAA " + kName});
  CHECK(d.published().empty()); // the host serves 503 until the first answer
  t.answer(kName, WEIR_DNS_A, {a("10.0.0.10"), a("10.0.0.9"), a("10.0.0.10")});
  CHECK(d.published().empty()); // AAAA still running
  t.answer(kName, WEIR_DNS_AAAA, {aaaa("2001:DB8::2"), aaaa("2001:db8:0::1")});
  REQUIRE(d.published().size() == 1);
  const std::vector<FakeTarget> expected = {
      {"10.0.0.9:8080", 3, true, "10.0.0.9:8080"},
      {"10.0.0.10:8080", 3, true, "10.0.0.10:8080"},
      {"[2001:db8::1]:8080", 3, true, "[2001:db8::1]:8080"},
      {"[2001:db8::2]:8080", 3, true, "[2001:db8::2]:8080"},
  };
  CHECK(d.last_published() == expected);
  CHECK(t.logged("published 4 target(s): 10.0.0.9:8080, 10.0.0.10:8080", WEIR_LOG_INFO) == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: family chooses the address records asked for") {
  DnsTest t;
  SUBCASE("ipv4") {
    auto d = t.start({{"family", "ipv4"}});
    CHECK(t.pending() == std::vector<std::string>{"A " + kName});
    t.answer(kName, WEIR_DNS_A, {a("192.0.2.1")});
    CHECK(addresses(d.last_published()) == std::vector<std::string>{"192.0.2.1:8080"});
  }
  SUBCASE("ipv6") {
    auto d = t.start({{"family", "ipv6"}});
    CHECK(t.pending() == std::vector<std::string>{"AAAA " + kName});
    t.answer(kName, WEIR_DNS_AAAA, {aaaa("::1")});
    CHECK(addresses(d.last_published()) == std::vector<std::string>{"[::1]:8080"});
  }
  SUBCASE("a name given in capitals and with a trailing dot is asked in lowercase") {
    t.cfg = t.configure({{"name", "APP.Example.TEST."}, {"port", 80}});
    REQUIRE(t.cfg.ok());
    auto d = t.cfg.discovery();
    REQUIRE(d.start() == WEIR_OK);
    t.round({a("10.0.0.1")}, {});
    CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: the refresh follows the smallest TTL, clamped to [ttl-min, ttl-max]") {
  DnsTest t;
  SUBCASE("the smallest TTL of the records used") {
    auto d = t.start();
    t.round({a("10.0.0.1", 30), a("10.0.0.2", 45)}, {aaaa("::1", 20)});
    CHECK(t.host.next_timer_in_ms() == 20'000u);
    CHECK(t.fire_next() == 20'000u);
    CHECK(t.pending().size() == 2);    // the next round
    t.round({a("10.0.0.1", 100)}, {}); // AAAA: no record, its (unknown) negative TTL ignored
    CHECK(t.host.next_timer_in_ms() == 100'000u);
  }
  SUBCASE("below ttl-min") {
    auto d = t.start({{"ttl-min", "5s"}});
    t.round({a("10.0.0.1", 1)}, {});
    CHECK(t.host.next_timer_in_ms() == 5'000u);
  }
  SUBCASE("a TTL of 0 gets the default ttl-min, 1s") {
    auto d = t.start();
    t.round({a("10.0.0.1", 0)}, {});
    CHECK(t.host.next_timer_in_ms() == 1'000u);
  }
  SUBCASE("above ttl-max (default 5m)") {
    auto d = t.start();
    t.round({a("10.0.0.1", 86400)}, {});
    CHECK(t.host.next_timer_in_ms() == 300'000u);
  }
  SUBCASE("above a configured ttl-max") {
    auto d = t.start({{"ttl-max", "1m"}});
    t.round({a("10.0.0.1", 3600)}, {aaaa("::1", 7200)});
    CHECK(t.host.next_timer_in_ms() == 60'000u);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: a fixed refresh ignores the TTL; an unchanged set is not published again") {
  DnsTest t;
  auto d = t.start({{"refresh", "10s"}});
  t.round({a("10.0.0.1", 3600)}, {});
  CHECK(t.host.next_timer_in_ms() == 10'000u);
  REQUIRE(d.published().size() == 1);
  CHECK(t.fire_next() == 10'000u);
  t.round({a("10.0.0.1", 5)}, {}); // the same set
  CHECK(d.published().size() == 1);
  CHECK(t.host.next_timer_in_ms() == 10'000u);
  t.fire_next();
  t.round({a("10.0.0.1"), a("10.0.0.2")}, {}); // a change
  REQUIRE(d.published().size() == 2);
  CHECK(addresses(d.last_published()) ==
        std::vector<std::string>{"10.0.0.1:8080", "10.0.0.2:8080"});
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: SERVFAIL and timeouts keep the last set and back off (doubling, capped)") {
  DnsTest t;
  auto d = t.start({{"ttl-max", "1m"}, {"retry-max", "10s"}});
  t.round({a("10.0.0.1", 60)}, {});
  REQUIRE(d.published().size() == 1);
  const std::vector<FakeTarget> good = d.last_published();
  CHECK(t.fire_next() == 60'000u);

  // Failure streak: 1s, 2s, 4s, 8s, then capped at retry-max 10s.
  std::vector<uint64_t> waits;
  for (int i = 0; i < 6; ++i) {
    if (i % 2 == 0) {
      t.fail(kName, WEIR_DNS_A, WEIR_ERROR, "server failure");
      t.answer(kName, WEIR_DNS_AAAA, {aaaa("::1")}); // one family failing fails the round
    } else {
      t.answer(kName, WEIR_DNS_A, {a("10.0.0.9")});
      t.fail(kName, WEIR_DNS_AAAA, WEIR_ERROR, "timed out");
    }
    waits.push_back(t.fire_next());
  }
  CHECK(waits == std::vector<uint64_t>{1000, 2000, 4000, 8000, 10'000, 10'000});
  CHECK(d.published().size() == 1); // nothing published while failing: the last set stays
  CHECK(d.last_published() == good);
  // One warning for the streak, not one per retry.
  CHECK(t.logged("resolving app.example.test (A/AAAA) failed: server failure; keeping the last 1 "
                 "target(s); retrying in 1000ms") == 1);
  CHECK(t.logged("failed") == 1);
  CHECK(t.logged("failed again: timed out; retrying in 2000ms", WEIR_LOG_DEBUG) == 1);

  // The streak ends: logged at info, the TTL rules again, the set is published.
  t.round({a("10.0.0.2", 30)}, {});
  CHECK(t.logged("resolving app.example.test works again", WEIR_LOG_INFO) == 1);
  CHECK(t.host.next_timer_in_ms() == 30'000u);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.2:8080"});

  // A new streak starts again from retry-min, with a new warning.
  t.fire_next();
  t.fail(kName, WEIR_DNS_A);
  t.fail(kName, WEIR_DNS_AAAA);
  CHECK(t.host.next_timer_in_ms() == 1000u);
  CHECK(t.logged("failed: server failure") == 2);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: a failure before any answer publishes nothing") {
  DnsTest t;
  auto d = t.start({{"family", "ipv4"}});
  t.fail(kName, WEIR_DNS_A, WEIR_ERROR, "refused");
  CHECK(d.published().empty());
  CHECK(t.logged("failed: refused; nothing published yet; retrying in 1000ms") == 1);
  CHECK(t.fire_next() == 1000u);
  t.answer(kName, WEIR_DNS_A, {a("10.0.0.1")});
  CHECK(d.published().size() == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: NXDOMAIN and empty answers with on-empty = keep (the default)") {
  DnsTest t;
  auto d = t.start();
  t.round({a("10.0.0.1", 60)}, {});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.fail(kName, WEIR_DNS_A, WEIR_ERROR_NOT_FOUND, {}, 30);
  t.fail(kName, WEIR_DNS_AAAA, WEIR_ERROR_NOT_FOUND, {}, 40);
  CHECK(d.published().size() == 1); // kept
  CHECK(t.logged("app.example.test does not exist (NXDOMAIN); keeping the last 1 target(s)") == 1);
  CHECK(t.host.next_timer_in_ms() == 30'000u); // the negative TTL, clamped as a TTL
  t.fire_next();
  t.round({}, {});                            // NODATA: the name exists without addresses
  CHECK(t.host.next_timer_in_ms() == 1'000u); // no negative TTL known: ttl-min
  t.fire_next();
  t.round({}, {});
  CHECK(d.published().size() == 1);
  CHECK(t.logged("does not exist") + t.logged("has no A/AAAA records") == 1); // once per streak
  CHECK(t.logged("has no A/AAAA records (still)", WEIR_LOG_DEBUG) == 2);
  t.fire_next();
  t.round({a("10.0.0.2")}, {});
  CHECK(t.logged("app.example.test has 1 target(s) again", WEIR_LOG_INFO) == 1);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.2:8080"});
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: an empty first answer publishes nothing with keep, the empty set with clear") {
  DnsTest t;
  SUBCASE("keep") {
    auto d = t.start();
    t.round({}, {});
    CHECK(d.published().empty());
    CHECK(t.logged("has no A/AAAA records; nothing published yet") == 1);
  }
  SUBCASE("clear") {
    auto d = t.start({{"on-empty", "clear"}});
    t.round({}, {});
    REQUIRE(d.published().size() == 1);
    CHECK(d.last_published().empty());
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: on-empty = clear publishes the empty set, once, and the next good answer") {
  DnsTest t;
  auto d = t.start({{"on-empty", "clear"}});
  t.round({a("10.0.0.1")}, {aaaa("::1")});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.fail(kName, WEIR_DNS_A, WEIR_ERROR_NOT_FOUND);
  t.fail(kName, WEIR_DNS_AAAA, WEIR_ERROR_NOT_FOUND);
  REQUIRE(d.published().size() == 2);
  CHECK(d.last_published().empty());
  CHECK(t.logged("does not exist (NXDOMAIN); publishing an empty set") == 1);
  t.fire_next();
  t.round({}, {});
  CHECK(d.published().size() == 2); // still empty: not published again
  t.fire_next();
  t.round({a("10.0.0.1")}, {});
  REQUIRE(d.published().size() == 3);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:8080"});
  // An error is not an empty answer: the set is kept even with clear.
  t.fire_next();
  t.fail(kName, WEIR_DNS_A);
  t.fail(kName, WEIR_DNS_AAAA);
  CHECK(d.published().size() == 3);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: odd answers: other types, other names, bad addresses are ignored; CNAMEs work") {
  DnsTest t;
  auto d = t.start();
  SUBCASE("ignored records") {
    t.answer(kName, WEIR_DNS_A,
             {a("10.0.0.1"), FakeDnsRecord::aaaa("::9"),               // an AAAA in an A answer
              FakeDnsRecord::a("10.0.0.66", 60, "other.example.test"), // another name
              FakeDnsRecord::a("not-an-ip"), FakeDnsRecord::a("::2"),  // not IPv4 addresses
              FakeDnsRecord::srv(0, 0, 80, "x.test")});
    t.answer(kName, WEIR_DNS_AAAA, {FakeDnsRecord::aaaa("10.0.0.3"), aaaa("::1")});
    CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:8080", "[::1]:8080"});
    CHECK(t.logged("ignored 6 record(s) of other types or names, or with a bad address",
                   WEIR_LOG_DEBUG) == 1);
  }
  SUBCASE("an alias: the records are owned by the CNAME's target") {
    t.answer(kName, WEIR_DNS_A,
             {FakeDnsRecord::a("10.0.0.5", 60, "lb.example.net"),
              FakeDnsRecord::a("10.0.0.6", 60, "LB.example.net.")});
    t.answer(kName, WEIR_DNS_AAAA, {});
    CHECK(addresses(d.last_published()) ==
          std::vector<std::string>{"10.0.0.5:8080", "10.0.0.6:8080"});
  }
  SUBCASE("an answer with nothing usable is an empty answer") {
    t.answer(kName, WEIR_DNS_A, {FakeDnsRecord::a("bogus"), FakeDnsRecord::aaaa("::1")});
    t.answer(kName, WEIR_DNS_AAAA, {});
    CHECK(d.published().empty());
    CHECK(t.logged("has no A/AAAA records") == 1);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: destroying the instance cancels its queries and timers (no misuse)") {
  DnsTest t;
  SUBCASE("while a round runs") {
    {
      auto d = t.start();
      t.answer(kName, WEIR_DNS_A, {a("10.0.0.1")});
      CHECK(t.host.pending_dns().size() == 1);
    }
    CHECK(t.host.pending_requests() == 0);
    CHECK(t.host.dns_queries().back().state == FakeRequestState::Cancelled);
  }
  SUBCASE("while it waits for the next round") {
    {
      auto d = t.start();
      t.round({a("10.0.0.1")}, {});
      CHECK(t.host.pending_timers() == 1);
    }
    CHECK(t.host.pending_timers() == 0);
    CHECK(t.host.pending_requests() == 0);
  }
  CHECK(t.host.pending_dns().empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: rounds never overlap; a round the host never finishes is abandoned") {
  DnsTest t;
  auto d = t.start({{"refresh", "1s"}});
  t.round({a("10.0.0.1")}, {});
  CHECK(t.fire_next() == 1000u);
  REQUIRE(t.host.pending_dns().size() == 2);
  const size_t started = t.host.dns_queries().size();
  // Long after the fixed refresh, no new round starts while this one runs.
  t.host.fire_due(100'000);
  CHECK(t.host.dns_queries().size() == started);
  CHECK(t.host.pending_dns().size() == 2);
  // The host never answers: after 120s the round is cancelled and counts as failed.
  t.host.fire_due(20'000);
  CHECK(t.host.pending_dns().empty());
  CHECK(t.host.dns_queries().back().state == FakeRequestState::Cancelled);
  CHECK(t.logged("failed: no answer from weir's resolver within 120000ms") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u); // retry-min
  CHECK(t.fire_next() == 1000u);
  CHECK(t.host.pending_dns().size() == 2); // the next round
  CHECK(d.published().size() == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: a query the host refuses to start counts as a failure") {
  DnsTest t;
  t.host.set_refuse_requests(true);
  auto d = t.start();
  CHECK(t.host.pending_dns().empty());
  CHECK(t.logged("failed: the query could not start (see weir's log); nothing published yet") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u);
  t.host.set_refuse_requests(false);
  t.fire_next();
  t.round({a("10.0.0.1")}, {});
  CHECK(d.published().size() == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns: start twice starts one round") {
  DnsTest t;
  auto d = t.start();
  CHECK(d.start() == WEIR_OK);
  CHECK(t.host.pending_dns().size() == 2);
  CHECK(t.host.misuse().empty());
}
