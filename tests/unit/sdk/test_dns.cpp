// ABI 1.2 DNS queries and target fields: Host::can_resolve / Host::dns_query, the SDK's reading of
// weir_dns_result_t (struct_size rules), the fake host's records of queries (answer_dns,
// fail_dns, cancellation, refusals, misuse), and Target::priority / Target::metadata in both
// directions.
#include "probe.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sdk_tests;
using weir::sdk::DnsResult;
using weir::sdk::DnsStatus;
using weir::sdk::DnsType;
using weir::testing::FakeDnsRecord;
using weir::testing::FakeRequestState;

namespace {

/// A discovery instance whose start() runs the test's function with its Host.
std::function<void(weir::sdk::Host)>& start_probe() {
  static std::function<void(weir::sdk::Host)> fn;
  return fn;
}
struct Starter {
  explicit Starter(weir::sdk::Host h) : host(h) {}
  void start() {
    if (start_probe()) {
      start_probe()(host);
    }
  }
  weir::sdk::Host host;
};
constexpr weir_module_t kStarter =
    weir::sdk::discovery_module<weir::sdk::NoConfig, Starter>("starter");

/// Sets start_probe() for the scope.
struct WithStart {
  explicit WithStart(std::function<void(weir::sdk::Host)> fn) { start_probe() = std::move(fn); }
  ~WithStart() { start_probe() = nullptr; }
  WithStart(const WithStart&) = delete;
  WithStart& operator=(const WithStart&) = delete;
};

/// A filter (worker-thread kind) that tries to resolve.
struct ResolvingFilter {
  explicit ResolvingFilter(weir::sdk::Host h) : host(h) {}
  weir::sdk::FilterResult on_request(weir::sdk::Http&) {
    id = host.dns_query("example.test", DnsType::A, [](const DnsResult&) {});
    return weir::sdk::FilterResult::Continue;
  }
  weir::sdk::Host host;
  static inline weir_request_id_t id = 99;
};
constexpr weir_module_t kResolvingFilter =
    weir::sdk::filter_module<weir::sdk::NoConfig, ResolvingFilter>("resolving-filter");

/// A load balancer that keeps the targets it was given.
struct KeepingLb {
  void on_targets(const std::vector<weir::sdk::Target>& t) { seen = t; }
  std::optional<size_t> pick(const weir::sdk::PickRequest&) { return 0; }
  static inline std::vector<weir::sdk::Target> seen;
};
constexpr weir_module_t kKeepingLb =
    weir::sdk::lb_module<weir::sdk::NoConfig, KeepingLb>("keeping-lb");

/// A raw-ABI discovery module that starts a query and never cancels it (weir cancels it).
int g_raw_token = 0;
weir_status_t raw_config_new(const weir_host_api_t*, weir_host_ctx_t*, const weir_config_node_t*,
                             weir_plugin_config_t** out) {
  *out = reinterpret_cast<weir_plugin_config_t*>(&g_raw_token);
  return WEIR_OK;
}
void raw_config_destroy(weir_plugin_config_t*) {}
weir_status_t raw_instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                               const weir_plugin_config_t*, weir_discovery_instance_t** out) {
  const weir_request_id_t id = api->dns_query(
      ctx, weir::sdk::str("svc.example.test"), WEIR_DNS_A,
      [](void*, const weir_dns_result_t*) { FAIL("an abandoned query called back"); }, nullptr);
  CHECK(id != 0);
  *out = reinterpret_cast<weir_discovery_instance_t*>(&g_raw_token);
  return WEIR_OK;
}
void raw_instance_destroy(weir_discovery_instance_t*) {}
weir_status_t raw_start(weir_discovery_instance_t*) {
  return WEIR_OK;
}
constexpr weir_discovery_vtable_t kRawVtable = {
    .struct_size = sizeof(weir_discovery_vtable_t),
    .config_new = &raw_config_new,
    .config_destroy = &raw_config_destroy,
    .instance_new = &raw_instance_new,
    .instance_destroy = &raw_instance_destroy,
    .start = &raw_start,
};
constexpr weir_module_t kRaw = {sizeof(weir_module_t), WEIR_KIND_DISCOVERY, "raw-dns", &kRawVtable};

weir::testing::FakeConfigured configure(FakeHost& host, const weir_module_t& m) {
  auto cfg = host.configure(m, FakeConfig::table({{"use", m.name}}), "upstreams.app.discovery");
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  return cfg;
}

/// One line per record, for comparisons.
std::string line(const weir::sdk::DnsRecord& r) {
  std::string out =
      weir::sdk::dns_type_name(r.type) + " " + std::to_string(r.ttl) + " " + std::string(r.name);
  if (!r.address.empty()) {
    out += " addr=" + std::string(r.address);
  }
  if (!r.target.empty()) {
    out += " target=" + std::string(r.target);
  }
  if (r.type == DnsType::Srv) {
    out += " " + std::to_string(r.priority) + "/" + std::to_string(r.weight) + "/" +
           std::to_string(r.port);
  }
  for (std::string_view t : r.txt) {
    out += " \"" + std::string(t) + "\"";
  }
  return out;
}

} // namespace

TEST_CASE("dns: the ABI 1.2 layout and type names") {
  CHECK(offsetof(weir_host_api_t, dns_query) ==
        offsetof(weir_host_api_t, request_cancel) + sizeof(void*));
  CHECK(offsetof(weir_dns_result_t, status) == 4);
  CHECK(offsetof(weir_target_t, priority) >= offsetof(weir_target_t, id) + sizeof(weir_str_t));
  CHECK(weir::sdk::dns_type_name(DnsType::A) == "A");
  CHECK(weir::sdk::dns_type_name(DnsType::Aaaa) == "AAAA");
  CHECK(weir::sdk::dns_type_name(DnsType::Srv) == "SRV");
  CHECK(weir::sdk::dns_type_name(DnsType::Txt) == "TXT");
  CHECK(weir::sdk::dns_type_name(DnsType::Ptr) == "PTR");
  CHECK(weir::sdk::dns_type_name(static_cast<DnsType>(65)) == "TYPE65");
  CHECK(WEIR_SDK_VERSION_MINOR >= 4);
}

TEST_CASE("dns: can_resolve follows the host's table") {
  FakeHost host;
  CHECK(weir::sdk::Host(host.api(), nullptr).can_resolve());
  CHECK_FALSE(weir::sdk::Host().can_resolve());
  CHECK(weir::sdk::Host().dns_query("a.test", DnsType::A, nullptr) == 0);
  auto cfg = configure(host, kStarter);
  bool called = false;
  WithStart start([&](weir::sdk::Host h) {
    CHECK_FALSE(h.can_resolve());
    CHECK(h.dns_query("a.test", DnsType::A, [&](const DnsResult&) { called = true; }) == 0);
    CHECK(h.pending_requests() == 0);
  });
  SUBCASE("a host older than ABI 1.2") {
    host.api_table().struct_size = offsetof(weir_host_api_t, probe_start);
    host.api_table().abi_minor = 1;
    CHECK(cfg.discovery().start() == WEIR_OK);
  }
  SUBCASE("a table that ends before dns_query") {
    host.api_table().struct_size = offsetof(weir_host_api_t, dns_query);
    CHECK(weir::sdk::Host(host.api(), nullptr).can_probe()); // probes are there
    CHECK(cfg.discovery().start() == WEIR_OK);
  }
  SUBCASE("dns_query is NULL") {
    host.api_table().dns_query = nullptr;
    CHECK(cfg.discovery().start() == WEIR_OK);
  }
  CHECK(host.dns_queries().empty());
  CHECK_FALSE(called);
  CHECK(host.misuse().empty());
}

TEST_CASE("dns: a query is recorded, stays pending, and its answer reads back") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  std::vector<std::string> results;
  weir::sdk::Host seen;
  std::vector<weir_request_id_t> ids;
  WithStart start([&](weir::sdk::Host h) {
    seen = h;
    auto on_result = [&results](const DnsResult& r) {
      std::string out = r.ok() ? "ok" : (r.not_found() ? "not-found" : "error");
      out += " [" + std::string(r.error) + "] neg=" + std::to_string(r.negative_ttl);
      for (const auto& rec : r.records) {
        out += " | " + line(rec);
      }
      results.push_back(out);
    };
    ids.push_back(h.dns_query("App.Example.Test.", DnsType::A, on_result));
    ids.push_back(h.dns_query("_http._tcp.example.test", DnsType::Srv, on_result));
    ids.push_back(h.dns_query("web._http._tcp.example.test", DnsType::Txt, on_result));
    ids.push_back(h.dns_query("_http._tcp.example.test", DnsType::Ptr, on_result));
    ids.push_back(h.dns_query("gone.example.test", DnsType::Aaaa, on_result));
    ids.push_back(h.dns_query("slow.example.test", DnsType::A, on_result));
    CHECK(results.empty()); // never from inside the start call
    CHECK(h.pending_requests() == 6);
  });
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  REQUIRE(ids.size() == 6);
  const auto pending = host.pending_dns();
  REQUIRE(pending.size() == 6);
  CHECK(d.pending_dns().size() == 6);
  CHECK(pending[0].id == ids[0]);
  CHECK(pending[0].name == "App.Example.Test."); // as given
  CHECK(pending[0].type == WEIR_DNS_A);
  CHECK(pending[0].source == d.name());
  CHECK(pending[0].state == FakeRequestState::Pending);
  CHECK(pending[1].type == WEIR_DNS_SRV);
  CHECK(pending[2].type == WEIR_DNS_TXT);
  CHECK(pending[3].type == WEIR_DNS_PTR);
  CHECK(pending[4].type == WEIR_DNS_AAAA);
  CHECK(host.pending_requests() == 6);

  CHECK(host.answer_dns(ids[0], {FakeDnsRecord::a("10.0.0.1", 30),
                                 FakeDnsRecord::a("10.0.0.2", 20, "LB.Example.NET.")}));
  CHECK(host.answer_dns(ids[1], {FakeDnsRecord::srv(10, 5, 8080, "Web1.Example.Test."),
                                 FakeDnsRecord::srv(20, 0, 8081, ".")}));
  CHECK(host.answer_dns(ids[2], {FakeDnsRecord::text({"weight=3", "", "flag"}, 60)}));
  CHECK(host.answer_dns(ids[3], {}, 45)); // no record: the name exists, negative TTL 45s
  CHECK(host.fail_dns(ids[4], WEIR_ERROR_NOT_FOUND, {}, 120));
  CHECK(host.fail_dns(ids[5], WEIR_ERROR, "timed out"));
  CHECK_FALSE(host.answer_dns(ids[5], {})); // once only
  CHECK_FALSE(host.fail_dns(ids[0]));
  REQUIRE(results.size() == 6);
  CHECK(results[0] ==
        "ok [] neg=0 | A 30 app.example.test addr=10.0.0.1 | A 20 lb.example.net addr=10.0.0.2");
  CHECK(results[1] == "ok [] neg=0 | SRV 300 _http._tcp.example.test target=web1.example.test "
                      "10/5/8080 | SRV 300 _http._tcp.example.test target=. 20/0/8081");
  CHECK(results[2] ==
        "ok [] neg=0 | TXT 60 web._http._tcp.example.test \"weight=3\" \"\" \"flag\"");
  CHECK(results[3] == "ok [] neg=45");
  CHECK(results[4] == "not-found [no such name] neg=120");
  CHECK(results[5] == "error [timed out] neg=0");
  CHECK(host.dns_queries()[0].state == FakeRequestState::Completed);
  CHECK(host.pending_dns().empty());
  CHECK(seen.pending_requests() == 0);
  CHECK_THROWS_AS(host.fail_dns(ids[0], WEIR_OK), std::invalid_argument);
  CHECK(host.misuse().empty());
}

TEST_CASE("dns: fail_dns defaults, and a callback may start the next query") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  std::vector<std::string> errors;
  std::function<void(weir::sdk::Host)> ask = [&](weir::sdk::Host h) {
    const weir_request_id_t id = h.dns_query("x.test", DnsType::A, [&, h](const DnsResult& r) {
      errors.emplace_back(r.error);
      if (errors.size() < 3) {
        ask(h); // re-arm from inside the callback
      }
      if (errors.size() == 2) {
        throw std::runtime_error("boom in DNS callback");
      }
    });
    CHECK(id != 0);
  };
  WithStart start(ask);
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  REQUIRE(host.fail_dns(host.pending_dns().at(0).id));
  REQUIRE(host.fail_dns(host.pending_dns().at(0).id, WEIR_ERROR_NOT_FOUND));
  REQUIRE(host.fail_dns(host.pending_dns().at(0).id, WEIR_ERROR, "refused"));
  CHECK(errors == std::vector<std::string>{"server failure", "no such name", "refused"});
  CHECK(host.pending_dns().empty());
  CHECK(host.logged("uncaught exception in DNS callback: boom in DNS callback", WEIR_LOG_ERROR));
  CHECK(host.misuse().empty());
}

TEST_CASE("dns: a cancelled query never calls back; destroy cancels; the host abandons raw ones") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> watch = token;
  int calls = 0;
  std::vector<weir_request_id_t> ids;
  weir::sdk::Host seen;
  WithStart start([&](weir::sdk::Host h) {
    seen = h;
    ids.push_back(
        h.dns_query("a.test", DnsType::A, [&calls, token](const DnsResult&) { calls += *token; }));
    ids.push_back(h.dns_query("b.test", DnsType::Srv,
                              [&calls, token](const DnsResult&) { calls += *token; }));
  });
  {
    auto d = cfg.discovery();
    REQUIRE(d.start() == WEIR_OK);
    token.reset(); // only the callbacks hold it now
    REQUIRE(ids.size() == 2);
    seen.cancel_request(ids[0]);
    CHECK(host.dns_queries()[0].state == FakeRequestState::Cancelled);
    CHECK_FALSE(host.answer_dns(ids[0], {}));
    CHECK(seen.pending_requests() == 1);
    CHECK_FALSE(watch.expired());
  }
  CHECK(watch.expired()); // the SDK cancelled the other at destroy and freed its callback
  CHECK(host.dns_queries()[1].state == FakeRequestState::Cancelled);
  CHECK(host.pending_requests() == 0);
  CHECK(calls == 0);

  auto raw = configure(host, kRaw);
  {
    auto d = raw.discovery();
    REQUIRE(d.ok());
    CHECK(host.pending_dns().size() == 1);
  }
  CHECK(host.dns_queries().back().state == FakeRequestState::Abandoned);
  CHECK(host.pending_requests() == 0);
  CHECK(host.misuse().empty());
}

TEST_CASE("dns: what the fake host refuses (returns 0, no callback, not misuse)") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  int calls = 0;
  auto on_result = [&](const DnsResult&) { ++calls; };
  WithStart start([&](weir::sdk::Host h) {
    CHECK(h.dns_query("", DnsType::A, on_result) == 0);
    CHECK(h.dns_query(".", DnsType::A, on_result) == 0);
    CHECK(h.dns_query("a..test", DnsType::A, on_result) == 0);
    CHECK(h.dns_query(std::string(64, 'a') + ".test", DnsType::A, on_result) == 0);
    CHECK(h.dns_query("a\nb.test", DnsType::A, on_result) == 0);
    CHECK(h.dns_query("a.test", static_cast<DnsType>(5), on_result) == 0); // CNAME: not offered
    host.set_refuse_requests(true);
    CHECK(h.dns_query("a.test", DnsType::A, on_result) == 0);
    host.set_refuse_requests(false);
    // Accepted: a trailing dot, a DNS-SD instance name with spaces and an escaped dot.
    CHECK(h.dns_query("a.test.", DnsType::A, on_result) != 0);
    CHECK(h.dns_query("My Printer\\.2._ipp._tcp.example.test", DnsType::Srv, on_result) != 0);
    CHECK(h.dns_query(std::string(63, 'a') + ".test", DnsType::A, on_result) != 0);
  });
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  const auto& refusals = host.request_refusals();
  REQUIRE(refusals.size() == 7);
  CHECK(refusals[0].find("dns_query from starter#") == 0);
  CHECK(refusals[0].find("empty name") != std::string::npos);
  CHECK(refusals[1].find("empty name") != std::string::npos);
  CHECK(refusals[2].find("empty label") != std::string::npos);
  CHECK(refusals[3].find("longer than 63") != std::string::npos);
  CHECK(refusals[4].find("control character") != std::string::npos);
  CHECK(refusals[5].find("unsupported record type 5") != std::string::npos);
  CHECK(refusals[6].find("set_refuse_requests") != std::string::npos);
  CHECK(host.dns_queries().size() == 3);
  CHECK(calls == 0);
  CHECK(host.misuse().empty());
}

TEST_CASE("dns: worker-thread objects and config_new may not query (misuse)") {
  FakeHost host;
  SUBCASE("a filter") {
    auto cfg = host.configure(kResolvingFilter, FakeConfig::table({{"use", "resolving-filter"}}));
    REQUIRE(cfg.ok());
    auto filter = cfg.filter();
    FakeHttp http;
    CHECK(filter.on_request(http) == WEIR_FILTER_CONTINUE);
    CHECK(ResolvingFilter::id == 0);
    CHECK(host.dns_queries().empty());
    REQUIRE(host.misuse().size() == 1);
    CHECK(host.misuse()[0].find("dns_query from resolving-filter#") == 0);
    CHECK(host.misuse()[0].find("not a control-thread instance") != std::string::npos);
  }
  SUBCASE("config_new") {
    weir_request_id_t id = 99;
    WithConfigProbe probe([&](weir::sdk::ConfigReader& r) {
      id = r.host().dns_query("a.test", DnsType::A, [](const DnsResult&) {});
    });
    auto cfg = host.configure(weir::sdk::discovery_module<ProbeConfig, Starter>("cfg-dns"),
                              FakeConfig::table({{"use", "cfg-dns"}}));
    CHECK(cfg.ok());
    CHECK(id == 0);
    REQUIRE(host.misuse().size() == 1);
    CHECK(host.misuse()[0].find("during config_new") != std::string::npos);
  }
}

namespace {
// A host whose dns_query the test drives by hand, to deliver results of other shapes.
weir_dns_cb g_cb = nullptr;
void* g_user = nullptr;
weir_request_id_t hand_query(weir_host_ctx_t*, weir_str_t, weir_dns_type_t, weir_dns_cb cb,
                             void* user) {
  g_cb = cb;
  g_user = user;
  return 41;
}
void hand_cancel(weir_host_ctx_t*, weir_request_id_t) {}
} // namespace

TEST_CASE("dns: the SDK reads only what the host's struct_size covers") {
  FakeHost host;
  host.api_table().dns_query = &hand_query;
  host.api_table().request_cancel = &hand_cancel;
  weir::sdk::Host h(host.api(), nullptr);
  std::vector<std::string> out;
  auto ask = [&] {
    REQUIRE(h.dns_query("a.test", DnsType::Srv, [&](const DnsResult& r) {
      std::string s = (r.ok() ? "ok" : (r.not_found() ? "not-found" : "error"));
      s += " [" + std::string(r.error) + "] neg=" + std::to_string(r.negative_ttl);
      for (const auto& rec : r.records) {
        s += " | " + line(rec);
      }
      out.push_back(s);
    }) == 41);
  };

  SUBCASE("records of a newer host are longer: strided by the first one's struct_size") {
    struct RecordV2 {
      weir_dns_record_t v1;
      uint64_t appended;
    };
    RecordV2 recs[2]{};
    const char* targets[2] = {"one.test", "two.test"};
    for (size_t i = 0; i < 2; ++i) {
      recs[i].v1.struct_size = sizeof(RecordV2);
      recs[i].v1.type = WEIR_DNS_SRV;
      recs[i].v1.ttl = 10;
      recs[i].v1.name = weir::sdk::str("a.test");
      recs[i].v1.target = weir::sdk::str(targets[i]);
      recs[i].v1.port = static_cast<uint16_t>(80 + i);
      recs[i].appended = 0xdeadbeef;
    }
    weir_dns_result_t r{};
    r.struct_size = sizeof(r);
    r.status = WEIR_OK;
    r.records = &recs[0].v1;
    r.count = 2;
    ask();
    g_cb(g_user, &r);
    REQUIRE(out.size() == 1);
    CHECK(out[0] ==
          "ok [] neg=0 | SRV 10 a.test target=one.test 0/0/80 | SRV 10 a.test target=two.test "
          "0/0/81");
  }
  SUBCASE("a result that ends before negative_ttl; records that end before txt") {
    weir_dns_record_t recs[1]{};
    recs[0].struct_size = offsetof(weir_dns_record_t, txt);
    recs[0].type = WEIR_DNS_TXT;
    recs[0].name = weir::sdk::str("a.test");
    const weir_str_t strings[1] = {weir::sdk::str("must not be read")};
    recs[0].txt = strings; // beyond its struct_size
    recs[0].txt_count = 1;
    weir_dns_result_t r{};
    r.struct_size = offsetof(weir_dns_result_t, negative_ttl);
    r.status = WEIR_OK;
    r.records = recs;
    r.count = 1;
    r.negative_ttl = 99; // beyond the struct_size
    ask();
    g_cb(g_user, &r);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == "ok [] neg=0 | TXT 0 a.test");
  }
  SUBCASE("records too short to hold a type are not read") {
    weir_dns_record_t recs[1]{};
    recs[0].struct_size = 4;
    weir_dns_result_t r{};
    r.struct_size = sizeof(r);
    r.status = WEIR_OK;
    r.records = recs;
    r.count = 1;
    ask();
    g_cb(g_user, &r);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == "ok [] neg=0");
  }
  SUBCASE("a result too short for a status is a failure, and a second completion is ignored") {
    weir_dns_result_t shorty{};
    shorty.struct_size = 2;
    ask();
    g_cb(g_user, &shorty);
    g_cb(g_user, &shorty);
    g_cb(g_user, nullptr);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == "error [the host delivered no result] neg=0");
  }
  SUBCASE("another negative status is an error, with a default message") {
    weir_dns_result_t r{};
    r.struct_size = sizeof(r);
    r.status = WEIR_ERROR_NOMEM;
    ask();
    g_cb(g_user, &r);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == "error [failed] neg=0");
  }
  CHECK(h.pending_requests() == 0);
}

TEST_CASE("targets: priority and metadata are published and received (ABI 1.2)") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  weir_status_t published = WEIR_ERROR;
  WithStart start([&](weir::sdk::Host h) {
    std::vector<weir::sdk::Target> set(3);
    set[0].address = "10.0.0.1:80";
    set[0].priority = 10;
    set[0].metadata = {{"srv-target", "a.test"}, {"zone", "eu"}};
    set[1].address = "10.0.0.2:80";
    set[1].weight = 3;
    set[1].id = "two";
    set[2] = weir::sdk::Target("[::1]:80", 2);
    set[2].metadata = {{"flag", ""}};
    published = h.publish_targets(set);
  });
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  CHECK(published == WEIR_OK);
  const std::vector<FakeTarget> expected = {
      {"10.0.0.1:80", 1, true, "", 10, {{"srv-target", "a.test"}, {"zone", "eu"}}},
      {"10.0.0.2:80", 3, true, "two"},
      {"[::1]:80", 2, true, "", 0, {{"flag", ""}}}};
  CHECK(d.last_published() == expected);
  CHECK(FakeTarget("a:1") == FakeTarget("a:1", 1, true, "", 0, {})); // defaults compare equal
  CHECK_FALSE(FakeTarget("a:1") == FakeTarget("a:1", 1, true, "", 1));

  // And back: a load balancer receives them through the SDK.
  auto lb = host.configure(kKeepingLb, FakeConfig::table({{"use", "keeping-lb"}})).lb();
  REQUIRE(lb.set_targets(expected) == WEIR_OK);
  REQUIRE(KeepingLb::seen.size() == 3);
  CHECK(KeepingLb::seen[0].priority == 10);
  CHECK(KeepingLb::seen[0].metadata ==
        std::vector<std::pair<std::string, std::string>>{{"srv-target", "a.test"}, {"zone", "eu"}});
  CHECK(KeepingLb::seen[1].priority == 0);
  CHECK(KeepingLb::seen[1].metadata.empty());
  CHECK(KeepingLb::seen[1].id == "two");
  CHECK(KeepingLb::seen[2].metadata.size() == 1);
  CHECK(host.misuse().empty());
}

TEST_CASE("targets: an older host's short weir_target_t gives priority 0 and no metadata") {
  FakeHost host;
  auto lb = host.configure(kKeepingLb, FakeConfig::table({{"use", "keeping-lb"}})).lb();
  // An ABI 1.1 array: elements of the 1.0/1.1 size, packed at that stride. What follows `id` in
  // the buffer belongs to the next element and must not be read as priority or metadata.
  constexpr size_t v1 = offsetof(weir_target_t, id) + sizeof(weir_str_t);
  alignas(weir_target_t) unsigned char buffer[3 * v1 + sizeof(weir_target_t)]{};
  const char* names[3] = {"a:1", "b:2", "c:3"};
  for (size_t i = 0; i < 3; ++i) {
    weir_target_t t{};
    t.struct_size = static_cast<uint32_t>(v1);
    t.address = weir::sdk::str(names[i]);
    t.weight = static_cast<uint32_t>(i + 1);
    t.healthy = 1;
    std::memcpy(buffer + i * v1, &t, v1);
  }
  REQUIRE(lb.vtable()->on_targets(lb.raw(), reinterpret_cast<const weir_target_t*>(buffer), 3) ==
          WEIR_OK);
  REQUIRE(KeepingLb::seen.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(KeepingLb::seen[i].address == names[i]);
    CHECK(KeepingLb::seen[i].weight == i + 1);
    CHECK(KeepingLb::seen[i].priority == 0);
    CHECK(KeepingLb::seen[i].metadata.empty());
  }
}

TEST_CASE("targets: the fake host accepts a set published by an older plugin (short struct)") {
  FakeHost host;
  auto cfg = configure(host, kStarter);
  weir_status_t published = WEIR_ERROR;
  WithStart start([&](weir::sdk::Host h) {
    constexpr size_t v1 = offsetof(weir_target_t, id) + sizeof(weir_str_t);
    alignas(weir_target_t) unsigned char buffer[2 * v1 + sizeof(weir_target_t)]{};
    const char* names[2] = {"a:1", "b:2"};
    for (size_t i = 0; i < 2; ++i) {
      weir_target_t t{};
      t.struct_size = static_cast<uint32_t>(v1);
      t.address = weir::sdk::str(names[i]);
      t.weight = 2;
      std::memcpy(buffer + i * v1, &t, v1);
    }
    published =
        h.api()->publish_targets(h.ctx(), reinterpret_cast<const weir_target_t*>(buffer), 2);
  });
  auto d = cfg.discovery();
  REQUIRE(d.start() == WEIR_OK);
  CHECK(published == WEIR_OK);
  CHECK(d.last_published() == std::vector<FakeTarget>{{"a:1", 2}, {"b:2", 2}});
  CHECK(host.misuse().empty());
}
