// discovery-dns-sd (module "dns-sd") through the fake host: browsing (PTR), instances (SRV, TXT),
// their hosts, TXT metadata and weight, instances appearing and disappearing, failures.
#include "common.hpp"

#include <map>

using namespace discovery_tests;

namespace {

const std::string kService = "_http._tcp.example.test";

std::string instance(const std::string& label) {
  return label + "." + kService;
}

/// What one instance answers: its SRV records and TXT strings (nullopt: no TXT record).
struct Inst {
  std::vector<FakeDnsRecord> srv;
  std::optional<std::vector<std::string>> txt;
};

struct SdTest : Dns {
  SdTest() : Dns(WEIR_TEST_PLUGIN_DISCOVERY_DNS_SD, "dns-sd") {}

  /// A started instance of service = kService, family = ipv4 (one address query per host) plus
  /// `keys`.
  weir::testing::FakeDiscovery start(Keys keys = {}) {
    keys.insert(keys.begin(), {{"service", kService}, {"family", "ipv4"}});
    cfg = configure(std::move(keys));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto d = cfg.discovery();
    REQUIRE(d.ok());
    REQUIRE(d.start() == WEIR_OK);
    return d;
  }

  /// Answer a whole round: the PTR records of the instances (by label), each instance's SRV and
  /// TXT, then each host's A records.
  void round(const std::map<std::string, Inst>& instances,
             const std::map<std::string, std::vector<std::string>>& hosts, uint32_t ttl = 60) {
    std::vector<FakeDnsRecord> ptrs;
    for (const auto& [label, inst] : instances) {
      ptrs.push_back(FakeDnsRecord::ptr(instance(label), ttl));
    }
    answer(kService, WEIR_DNS_PTR, ptrs);
    for (const auto& [label, inst] : instances) {
      answer(instance(label), WEIR_DNS_SRV, inst.srv);
      if (inst.txt) {
        answer(instance(label), WEIR_DNS_TXT, {FakeDnsRecord::text(*inst.txt, ttl)});
      } else {
        answer(instance(label), WEIR_DNS_TXT, {});
      }
    }
    for (const auto& [name, ips] : hosts) {
      std::vector<FakeDnsRecord> records;
      for (const std::string& ip : ips) {
        records.push_back(FakeDnsRecord::a(ip, ttl));
      }
      answer(name, WEIR_DNS_A, records);
    }
  }

  FakeConfigured cfg;
};

FakeDnsRecord srv(uint16_t priority, uint16_t weight, uint16_t port, const char* target) {
  return FakeDnsRecord::srv(priority, weight, port, target, 60);
}

/// The metadata of a target: instance and srv-target first, then `txt`.
Metadata md(const std::string& label, const std::string& host, Metadata txt = {}) {
  Metadata out = {{"instance", instance(label)}, {"srv-target", host}};
  out.insert(out.end(), txt.begin(), txt.end());
  return out;
}

} // namespace

TEST_CASE("dns-sd: descriptor") {
  SdTest t;
  check_descriptor(t.plugin, "discovery-dns-sd", "dns-sd");
}

TEST_CASE("dns-sd: configuration") {
  SdTest t;
  auto ok = t.configure({{"service", "_ipp._tcp.Example.Test."}, {"refresh", "1m"}});
  CHECK_MESSAGE(ok.ok(), ok.errors_text());
  check_errors(t,
               {
                   {{}, kPath, "missing required key 'service' (a DNS-SD service name"},
                   {{{"service", kService}, {"name", "x"}}, kPath + ".name", "unknown key 'name'"},
                   {{{"service", "_http._tcp..test"}}, kPath + ".service", "an empty label"},
                   {{{"service", kService}, {"family", "IPv4"}},
                    kPath + ".family",
                    "expected \"ipv4\", \"ipv6\" or \"both\", got \"IPv4\""},
               });
}

TEST_CASE("dns-sd: browse three instances: SRV, TXT metadata, TXT weight, one host query each") {
  SdTest t;
  auto d = t.start();
  CHECK(t.pending() == std::vector<std::string>{"PTR " + kService});
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-2")),
            FakeDnsRecord::ptr(instance("web-3"))});
  CHECK(t.pending() ==
        std::vector<std::string>{"SRV " + instance("web-1"), "SRV " + instance("web-2"),
                                 "SRV " + instance("web-3"), "TXT " + instance("web-1"),
                                 "TXT " + instance("web-2"), "TXT " + instance("web-3")});
  t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 10, 8080, "host1.example.test")});
  t.answer(instance("web-1"), WEIR_DNS_TXT,
           {FakeDnsRecord::text({"txtvers=1", "path=/api", "Weight=5"})});
  t.answer(instance("web-2"), WEIR_DNS_SRV, {srv(0, 0, 8080, "host2.example.test")});
  t.answer(instance("web-2"), WEIR_DNS_TXT,
           {FakeDnsRecord::text({"zone=eu", "ZONE=us", "secure", "", "=orphan", "note="})});
  t.answer(instance("web-3"), WEIR_DNS_SRV,
           {srv(1, 3, 9090, "host1.example.test")}); // the same host as web-1, another port
  t.answer(instance("web-3"), WEIR_DNS_TXT, {});
  CHECK(t.pending() ==
        std::vector<std::string>{"A host1.example.test", "A host2.example.test"}); // once each
  CHECK(d.published().empty());
  t.answer("host1.example.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.answer("host2.example.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.2")});
  REQUIRE(d.published().size() == 1);
  const std::vector<FakeTarget> expected = {
      {"10.0.0.1:8080", 5, true, "10.0.0.1:8080", 0,
       md("web-1", "host1.example.test", {{"txtvers", "1"}, {"path", "/api"}, {"weight", "5"}})},
      {"10.0.0.2:8080", 1, true, "10.0.0.2:8080", 0,
       md("web-2", "host2.example.test", {{"zone", "eu"}, {"secure", "true"}, {"note", ""}})},
      {"10.0.0.1:9090", 3, true, "10.0.0.1:9090", 1, md("web-3", "host1.example.test")},
  };
  CHECK(d.last_published() == expected);
  CHECK(t.host.next_timer_in_ms() == 60'000u);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: instances that disappear and appear are followed") {
  SdTest t;
  auto d = t.start();
  t.round({{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}},
           {"web-2", {{srv(0, 1, 80, "h2.test")}, {}}},
           {"web-3", {{srv(0, 1, 80, "h3.test")}, {}}}},
          {{"h1.test", {"10.0.0.1"}}, {"h2.test", {"10.0.0.2"}}, {"h3.test", {"10.0.0.3"}}});
  CHECK(addresses(d.last_published()) ==
        std::vector<std::string>{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"});
  t.fire_next();
  // web-2 leaves, web-4 arrives.
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-3")),
            FakeDnsRecord::ptr(instance("web-4"))});
  CHECK(t.pending() ==
        std::vector<std::string>{"SRV " + instance("web-1"), "SRV " + instance("web-3"),
                                 "SRV " + instance("web-4"), "TXT " + instance("web-1"),
                                 "TXT " + instance("web-3"), "TXT " + instance("web-4")});
  for (const char* label : {"web-1", "web-3"}) {
    t.answer(instance(label), WEIR_DNS_SRV,
             {srv(0, 1, 80, label == std::string("web-1") ? "h1.test" : "h3.test")});
    t.answer(instance(label), WEIR_DNS_TXT, {});
  }
  t.answer(instance("web-4"), WEIR_DNS_SRV, {srv(0, 1, 80, "h4.test")});
  t.answer(instance("web-4"), WEIR_DNS_TXT, {FakeDnsRecord::text({"role=canary"})});
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  t.answer("h3.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.3")});
  t.answer("h4.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.4")});
  REQUIRE(d.published().size() == 2);
  CHECK(addresses(d.last_published()) ==
        std::vector<std::string>{"10.0.0.1:80", "10.0.0.3:80", "10.0.0.4:80"});
  CHECK(d.last_published()[2].metadata == md("web-4", "h4.test", {{"role", "canary"}}));
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: names are compared without regard to case") {
  SdTest t;
  auto cfg = t.configure({{"service", "_HTTP._TCP.Example.Test"}, {"family", "ipv4"}});
  REQUIRE(cfg.ok());
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  // Asked in lowercase; two PTR records naming the same instance in other cases count once.
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr("Web-1._HTTP._tcp.example.test."),
            FakeDnsRecord::ptr(instance("web-1"))});
  CHECK(t.pending() ==
        std::vector<std::string>{"SRV " + instance("web-1"), "TXT " + instance("web-1")});
  t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 1, 80, "H1.Test.")});
  t.answer(instance("web-1"), WEIR_DNS_TXT, {});
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: a bad TXT weight is ignored with a warning, once") {
  SdTest t;
  auto d = t.start();
  for (int i = 0; i < 2; ++i) {
    if (i > 0) {
      t.fire_next();
    }
    t.round({{"a", {{srv(0, 4, 80, "h1.test")}, std::vector<std::string>{"weight=abc"}}},
             {"b", {{srv(0, 4, 81, "h1.test")}, std::vector<std::string>{"weight=0"}}},
             {"c", {{srv(0, 4, 82, "h1.test")}, std::vector<std::string>{"weight=65535"}}}},
            {{"h1.test", {"10.0.0.1"}}});
  }
  REQUIRE(d.published().size() == 1);
  const auto& set = d.last_published();
  REQUIRE(set.size() == 3);
  // Ordered by priority, then address and port (not by weight).
  CHECK(addresses(set) == std::vector<std::string>{"10.0.0.1:80", "10.0.0.1:81", "10.0.0.1:82"});
  CHECK(set[0].weight == 4);
  CHECK(set[1].weight == 4);
  CHECK(set[2].weight == 65535);
  CHECK(t.logged("DNS-SD instance a._http._tcp.example.test: TXT weight \"abc\" is not an integer "
                 "1..65535; using the SRV weight") == 1);
  CHECK(t.logged("TXT weight \"0\" is not an integer") == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: an instance whose SRV or TXT lookup fails keeps its last targets; back-off") {
  SdTest t;
  auto d = t.start();
  const std::map<std::string, Inst> both = {{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}},
                                            {"web-2", {{srv(0, 1, 80, "h2.test")}, {}}}};
  t.round(both, {{"h1.test", {"10.0.0.1"}}, {"h2.test", {"10.0.0.2"}}});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-2"))});
  t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 1, 80, "h1.test")});
  t.answer(instance("web-1"), WEIR_DNS_TXT, {});
  t.fail(instance("web-2"), WEIR_DNS_SRV, WEIR_ERROR, "timed out");
  t.answer(instance("web-2"), WEIR_DNS_TXT, {});
  CHECK(t.pending() == std::vector<std::string>{"A h1.test"}); // not h2: web-2 is kept as is
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  CHECK(d.published().size() == 1); // unchanged: web-2's targets were kept
  CHECK(t.logged("resolving DNS-SD instance web-2._http._tcp.example.test failed (SRV: timed "
                 "out); keeping its last 1 target(s); retrying in 1000ms") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u);
  // A TXT failure counts the same; the back-off doubles.
  t.fire_next();
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-2"))});
  t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 1, 80, "h1.test")});
  t.answer(instance("web-1"), WEIR_DNS_TXT, {});
  t.answer(instance("web-2"), WEIR_DNS_SRV, {srv(0, 1, 80, "h2.test")});
  t.fail(instance("web-2"), WEIR_DNS_TXT);
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  CHECK(d.published().size() == 1);
  CHECK(t.host.next_timer_in_ms() == 2000u);
  CHECK(t.logged("failed") == 1); // still one warning
  // It works again.
  t.fire_next();
  t.round(both, {{"h1.test", {"10.0.0.1"}}, {"h2.test", {"10.0.0.2"}}});
  CHECK(t.logged("resolving DNS-SD instance web-2._http._tcp.example.test works again",
                 WEIR_LOG_INFO) == 1);
  CHECK(t.host.next_timer_in_ms() == 60'000u);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: a new instance whose lookup fails is skipped") {
  SdTest t;
  auto d = t.start();
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-2"))});
  t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 1, 80, "h1.test")});
  t.answer(instance("web-1"), WEIR_DNS_TXT, {});
  t.fail(instance("web-2"), WEIR_DNS_SRV);
  t.fail(instance("web-2"), WEIR_DNS_TXT);
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(t.logged("failed (SRV: server failure); skipping it") == 1);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: an instance without an SRV record is skipped with a warning, once") {
  SdTest t;
  auto d = t.start();
  for (int i = 0; i < 2; ++i) {
    if (i > 0) {
      t.fire_next();
    }
    t.round({{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}},
             {"web-2", {{}, {}}},                                             // no SRV record
             {"web-3", {{srv(0, 1, 80, "."), srv(0, 1, 0, "h3.test")}, {}}}}, // none usable
            {{"h1.test", {"10.0.0.1"}}});
  }
  CHECK(d.published().size() == 1);
  CHECK(addresses(d.last_published()) == std::vector<std::string>{"10.0.0.1:80"});
  CHECK(t.logged("DNS-SD instance web-2._http._tcp.example.test of _http._tcp.example.test has no "
                 "usable SRV record; skipping it") == 1);
  CHECK(t.logged("DNS-SD instance web-3._http._tcp.example.test of") == 1);
  CHECK(t.host.next_timer_in_ms() == 60'000u); // not a failure
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: odd answers: PTR and SRV records of other names or types are ignored") {
  SdTest t;
  auto d = t.start();
  t.answer(kService, WEIR_DNS_PTR,
           {FakeDnsRecord::ptr(instance("web-1")),
            FakeDnsRecord::ptr("x._ipp._tcp.example.test", 60, "_ipp._tcp.example.test"),
            FakeDnsRecord::srv(0, 1, 80, "h9.test")});
  CHECK(t.pending() ==
        std::vector<std::string>{"SRV " + instance("web-1"), "TXT " + instance("web-1")});
  t.answer(
      instance("web-1"), WEIR_DNS_SRV,
      {srv(0, 1, 80, "h1.test"), FakeDnsRecord::srv(0, 1, 80, "h8.test", 60, instance("web-2"))});
  t.answer(instance("web-1"), WEIR_DNS_TXT,
           {FakeDnsRecord::text({"k=v"}),
            FakeDnsRecord::text({"k=w", "j=1"}, 60, instance("web-2")),
            FakeDnsRecord::text({"k2=v2", "K=z"})}); // two TXT records: read in order
  CHECK(t.pending() == std::vector<std::string>{"A h1.test"});
  t.answer("h1.test", WEIR_DNS_A, {FakeDnsRecord::a("10.0.0.1")});
  REQUIRE(d.published().size() == 1);
  CHECK(d.last_published()[0].metadata == md("web-1", "h1.test", {{"k", "v"}, {"k2", "v2"}}));
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: an empty service follows on-empty; a PTR failure keeps the set") {
  SdTest t;
  SUBCASE("keep") {
    auto d = t.start();
    t.round({{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}}}, {{"h1.test", {"10.0.0.1"}}});
    t.fire_next();
    t.answer(kService, WEIR_DNS_PTR, {}, 25);
    CHECK(d.published().size() == 1);
    CHECK(t.logged("_http._tcp.example.test has no instances (no PTR records); keeping the last "
                   "1 target(s)") == 1);
    CHECK(t.host.next_timer_in_ms() == 25'000u);
    t.fire_next();
    t.fail(kService, WEIR_DNS_PTR, WEIR_ERROR, "refused");
    CHECK(d.published().size() == 1);
    CHECK(t.logged("resolving _http._tcp.example.test (PTR) failed: refused; keeping the last 1 "
                   "target(s); retrying in 1000ms") == 1);
  }
  SUBCASE("clear") {
    auto d = t.start({{"on-empty", "clear"}});
    t.round({{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}}}, {{"h1.test", {"10.0.0.1"}}});
    t.fire_next();
    t.fail(kService, WEIR_DNS_PTR, WEIR_ERROR_NOT_FOUND);
    REQUIRE(d.published().size() == 2);
    CHECK(d.last_published().empty());
    CHECK(t.logged("_http._tcp.example.test does not exist (NXDOMAIN); publishing an empty set") ==
          1);
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: destroying the instance mid-round cancels its queries; rounds never overlap") {
  SdTest t;
  {
    auto d = t.start({{"refresh", "1s"}});
    t.answer(kService, WEIR_DNS_PTR,
             {FakeDnsRecord::ptr(instance("web-1")), FakeDnsRecord::ptr(instance("web-2"))});
    t.answer(instance("web-1"), WEIR_DNS_SRV, {srv(0, 1, 80, "h1.test")});
    CHECK(t.host.pending_dns().size() == 3);
    const size_t started = t.host.dns_queries().size();
    t.host.fire_due(60'000); // far beyond the refresh: no new round while this one runs
    CHECK(t.host.dns_queries().size() == started);
  }
  CHECK(t.host.pending_requests() == 0);
  CHECK(t.host.pending_timers() == 0);
  size_t cancelled = 0;
  for (const FakeDnsQuery& q : t.host.dns_queries()) {
    cancelled += q.state == FakeRequestState::Cancelled ? 1 : 0;
  }
  CHECK(cancelled == 3);
  CHECK(t.host.misuse().empty());
}

TEST_CASE("dns-sd: a set emptied by failing lookups is a failure, even with on-empty = clear") {
  SdTest t;
  auto d = t.start({{"on-empty", "clear"}});
  t.round({{"web-1", {{srv(0, 1, 80, "h1.test")}, {}}}}, {{"h1.test", {"10.0.0.1"}}});
  REQUIRE(d.published().size() == 1);
  t.fire_next();
  t.answer(kService, WEIR_DNS_PTR, {FakeDnsRecord::ptr(instance("web-9"))}); // never resolved
  t.fail(instance("web-9"), WEIR_DNS_SRV);
  t.answer(instance("web-9"), WEIR_DNS_TXT, {});
  CHECK(d.published().size() == 1);
  CHECK(t.logged("resolving _http._tcp.example.test (PTR) failed: no instance (or no SRV target "
                 "host) could be resolved; keeping the last 1 target(s)") == 1);
  CHECK(t.host.next_timer_in_ms() == 1000u);
  CHECK(t.host.misuse().empty());
}
