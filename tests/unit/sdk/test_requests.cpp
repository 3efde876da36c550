// ABI 1.2 outbound checks and requests: Host::probe / Host::fetch / Host::cancel_request, the state
// the SDK keeps for their callbacks, the fake host's records of them, and the observation fields
// added in 1.2.
#include "probe.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sdk_tests;
using weir::testing::FakeRequestState;

namespace {

/// A health instance whose on_targets runs the test's function with its Host.
std::function<void(weir::sdk::Host, const std::vector<weir::sdk::Target>&)>& targets_probe() {
  static std::function<void(weir::sdk::Host, const std::vector<weir::sdk::Target>&)> fn;
  return fn;
}
struct ActiveProbe {
  explicit ActiveProbe(weir::sdk::Host h) : host(h) {}
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    if (targets_probe()) {
      targets_probe()(host, targets);
    }
  }
  weir::sdk::Host host;
};
constexpr weir_module_t kActive =
    weir::sdk::health_module<weir::sdk::NoConfig, ActiveProbe>("active-probe");

/// Sets targets_probe() for the scope.
struct WithTargetsProbe {
  explicit WithTargetsProbe(
      std::function<void(weir::sdk::Host, const std::vector<weir::sdk::Target>&)> fn) {
    targets_probe() = std::move(fn);
  }
  ~WithTargetsProbe() { targets_probe() = nullptr; }
  WithTargetsProbe(const WithTargetsProbe&) = delete;
  WithTargetsProbe& operator=(const WithTargetsProbe&) = delete;
};

/// A filter (worker-thread kind) that tries to probe.
struct ProbingFilter {
  explicit ProbingFilter(weir::sdk::Host h) : host(h) {}
  weir::sdk::FilterResult on_request(weir::sdk::Http&) {
    id = host.probe({"127.0.0.1:80"}, [](const weir::sdk::ProbeResult&) {});
    return weir::sdk::FilterResult::Continue;
  }
  weir::sdk::Host host;
  static inline weir_request_id_t id = 99;
};
constexpr weir_module_t kProbingFilter =
    weir::sdk::filter_module<weir::sdk::NoConfig, ProbingFilter>("probing-filter");

/// A certificate provider that fetches with the upstream group's TLS (it belongs to no group).
struct FetchingCerts {
  explicit FetchingCerts(weir::sdk::Host h) : host(h) {}
  weir_status_t start() {
    weir::sdk::FetchRequest req;
    req.url = "https://acme.example/directory";
    req.flags = WEIR_FETCH_UPSTREAM_TLS;
    upstream_tls_id = host.fetch(req, [](const weir::sdk::FetchResult&) {});
    req.flags = 0;
    plain_id = host.fetch(req, [](const weir::sdk::FetchResult&) {});
    return WEIR_OK;
  }
  weir::sdk::Host host;
  weir_request_id_t upstream_tls_id = 99;
  weir_request_id_t plain_id = 0;
};
constexpr weir_module_t kFetchingCerts =
    weir::sdk::certs_module<weir::sdk::NoConfig, FetchingCerts>("fetching-certs");

/// A passive checker that keeps what it observed.
struct Observer {
  void on_targets(const std::vector<weir::sdk::Target>&) {}
  void on_observation(const weir::sdk::Observation& o) {
    seen.push_back(o);
    ids.emplace_back(o.target_id);
  }
  static inline std::vector<weir::sdk::Observation> seen;
  static inline std::vector<std::string> ids;
};
constexpr weir_module_t kObserver =
    weir::sdk::health_module<weir::sdk::NoConfig, Observer>("observer");

/// A raw-ABI health module that starts a probe and never cancels it (weir cancels it at destroy).
const weir_host_api_t* g_raw_api = nullptr;
int g_raw_token = 0;
weir_status_t raw_config_new(const weir_host_api_t* api, weir_host_ctx_t*,
                             const weir_config_node_t*, weir_plugin_config_t** out) {
  g_raw_api = api;
  *out = reinterpret_cast<weir_plugin_config_t*>(&g_raw_token);
  return WEIR_OK;
}
void raw_config_destroy(weir_plugin_config_t*) {}
weir_status_t raw_instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                               const weir_plugin_config_t*, weir_health_instance_t** out) {
  weir_probe_t p{};
  p.struct_size = sizeof(p);
  p.address = weir::sdk::str("10.0.0.9:80");
  const weir_request_id_t id = api->probe_start(
      ctx, &p, [](void*, const weir_probe_result_t*) { FAIL("an abandoned probe called back"); },
      nullptr);
  CHECK(id != 0);
  *out = reinterpret_cast<weir_health_instance_t*>(&g_raw_token);
  return WEIR_OK;
}
void raw_instance_destroy(weir_health_instance_t*) {}
weir_status_t raw_on_targets(weir_health_instance_t*, const weir_target_t*, size_t) {
  return WEIR_OK;
}
constexpr weir_health_vtable_t kRawVtable = {
    .struct_size = sizeof(weir_health_vtable_t),
    .config_new = &raw_config_new,
    .config_destroy = &raw_config_destroy,
    .instance_new = &raw_instance_new,
    .instance_destroy = &raw_instance_destroy,
    .on_targets = &raw_on_targets,
    .on_observation = nullptr,
};
constexpr weir_module_t kRaw = {sizeof(weir_module_t), WEIR_KIND_HEALTH, "raw", &kRawVtable};

weir::testing::FakeConfigured configure(FakeHost& host, const weir_module_t& m) {
  auto cfg = host.configure(m, FakeConfig::table({{"use", m.name}}), "upstreams.app.health");
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  return cfg;
}

} // namespace

TEST_CASE("requests: the ABI 1.2 layout") {
  CHECK(WEIR_ABI_MAJOR == 1);
  CHECK(WEIR_ABI_MINOR == 2);
  // Appended after the last 1.1 function: older plugins see the table they know.
  CHECK(offsetof(weir_host_api_t, probe_start) ==
        offsetof(weir_host_api_t, remove_certificate) + sizeof(void*));
  CHECK(offsetof(weir_host_api_t, fetch_start) ==
        offsetof(weir_host_api_t, probe_start) + sizeof(void*));
  CHECK(offsetof(weir_host_api_t, request_cancel) ==
        offsetof(weir_host_api_t, fetch_start) + sizeof(void*));
  // dns_query, the last 1.2 function, follows them.
  CHECK(offsetof(weir_host_api_t, dns_query) ==
        offsetof(weir_host_api_t, request_cancel) + sizeof(void*));
  CHECK(sizeof(weir_host_api_t) == offsetof(weir_host_api_t, dns_query) + sizeof(void*));
  // The observation grew at its end; its 1.0 part is unchanged.
  CHECK(offsetof(weir_health_observation_t, connect_failed) == 8 + sizeof(weir_str_t) + 4);
  CHECK(offsetof(weir_health_observation_t, timed_out) ==
        offsetof(weir_health_observation_t, connect_failed) + 4);
  CHECK(offsetof(weir_health_observation_t, duration_ns) >
        offsetof(weir_health_observation_t, timed_out));
  CHECK(offsetof(weir_probe_result_t, status) == 4);
  CHECK(offsetof(weir_fetch_result_t, status) == 4);
}

TEST_CASE("requests: can_probe follows the host's table") {
  FakeHost host;
  CHECK(weir::sdk::Host(host.api(), nullptr).can_probe());
  CHECK_FALSE(weir::sdk::Host().can_probe());
  CHECK(weir::sdk::Host().probe({"127.0.0.1:1"}, nullptr) == 0);
  CHECK(weir::sdk::Host().fetch({}, nullptr) == 0);
  weir::sdk::Host().cancel_request(5); // nothing to cancel, no table: ignored
  // A host older than ABI 1.2: its table ends before probe_start.
  host.api_table().struct_size = offsetof(weir_host_api_t, probe_start);
  host.api_table().abi_minor = 1;
  CHECK_FALSE(weir::sdk::Host(host.api(), nullptr).can_probe());
  auto cfg = configure(host, kActive);
  bool called = false;
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) {
    CHECK_FALSE(h.can_probe());
    CHECK(h.probe({"127.0.0.1:1"}, [&](const weir::sdk::ProbeResult&) { called = true; }) == 0);
    weir::sdk::FetchRequest req;
    req.url = "http://a/";
    CHECK(h.fetch(req, [&](const weir::sdk::FetchResult&) { called = true; }) == 0);
    CHECK(h.pending_requests() == 0);
  });
  {
    auto health = cfg.health();
    CHECK(health.set_targets({{"127.0.0.1:1"}}) == WEIR_OK);
  }
  CHECK(host.probes().empty());
  CHECK_FALSE(called);
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: a probe is recorded, stays pending, and calls back once when completed") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  std::vector<std::string> results;
  weir::sdk::Host seen;
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>& targets) {
    seen = h;
    for (const weir::sdk::Target& t : targets) {
      weir::sdk::ProbeRequest req;
      req.address = t.address;
      req.kind =
          t.address.ends_with(":443") ? weir::sdk::ProbeKind::Tls : weir::sdk::ProbeKind::Tcp;
      req.timeout = std::chrono::milliseconds(1500);
      const weir_request_id_t id =
          h.probe(req, [&results, key = t.address](const weir::sdk::ProbeResult& r) {
            results.push_back(key + (r.ok ? " ok " : " failed ") + std::string(r.error) + " " +
                              std::to_string(r.duration_ns));
          });
      CHECK(id != 0);
    }
    CHECK(results.empty()); // never from inside the start call
  });
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}, {"10.0.0.2:443"}}) == WEIR_OK);
  CHECK(seen.pending_requests() == 2);
  const auto pending = host.pending_probes();
  REQUIRE(pending.size() == 2);
  CHECK(health.pending_probes().size() == 2);
  CHECK(pending[0].address == "10.0.0.1:80");
  CHECK(pending[0].kind == WEIR_PROBE_TCP);
  CHECK(pending[0].timeout_ms == 1500);
  CHECK(pending[0].source == health.name());
  CHECK(pending[0].state == FakeRequestState::Pending);
  CHECK(pending[1].kind == WEIR_PROBE_TLS);
  CHECK(pending[0].id != pending[1].id);
  CHECK(host.pending_requests() == 2);

  host.fire_due(250); // the fake time passes: the duration is measured on the fake clock
  CHECK(host.complete_probe(pending[1].id, false, "handshake failed: unknown CA"));
  CHECK(host.complete_probe(pending[0].id));
  CHECK(results == std::vector<std::string>{"10.0.0.2:443 failed handshake failed: unknown CA "
                                            "250000000",
                                            "10.0.0.1:80 ok  250000000"});
  CHECK_FALSE(host.complete_probe(pending[0].id)); // once only
  CHECK(host.probes()[0].state == FakeRequestState::Completed);
  CHECK(host.pending_probes().empty());
  CHECK(seen.pending_requests() == 0);
  CHECK(results.size() == 2);
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: a fetch carries every field, and its result reads back") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  std::vector<std::string> results;
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) {
    weir::sdk::FetchRequest req;
    req.method = "POST";
    req.url = "https://svc.example:8443/healthz?deep=1";
    req.connect_to = "10.0.0.7:8443";
    req.headers = {{"accept", "application/json"}, {"x-check", "1"}};
    req.body = "{}";
    req.timeout = std::chrono::seconds(3);
    req.max_body = 4;
    req.flags = WEIR_FETCH_UPSTREAM_TLS;
    req.ca_file = "/etc/ca.pem";
    auto on_result = [&](const weir::sdk::FetchResult& r) {
      std::string line = (r.ok ? "ok " : "failed ") + std::string(r.error) + " " +
                         std::to_string(r.status) + " body=" + std::string(r.body) +
                         (r.truncated ? " truncated" : "");
      if (auto ct = r.header("CONTENT-TYPE")) {
        line += " ct=" + std::string(*ct);
      }
      line += " headers=" + std::to_string(r.headers.size());
      results.push_back(line);
    };
    CHECK(h.fetch(req, on_result) != 0);
    req.method.clear();
    req.url = "http://plain.example/";
    req.headers.clear();
    req.flags = 0;
    req.max_body = 0;
    CHECK(h.fetch(req, on_result) != 0);
  });
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.7:8443"}}) == WEIR_OK);
  const auto fetches = host.pending_fetches();
  REQUIRE(fetches.size() == 2);
  const weir::testing::FakeFetch& f = fetches[0];
  CHECK(f.method == "POST");
  CHECK(f.url == "https://svc.example:8443/healthz?deep=1");
  CHECK(f.connect_to == "10.0.0.7:8443");
  CHECK(f.headers.all() == std::vector<std::pair<std::string, std::string>>{
                               {"accept", "application/json"}, {"x-check", "1"}});
  CHECK(f.body == "{}");
  CHECK(f.timeout_ms == 3000);
  CHECK(f.max_body == 4);
  CHECK(f.flags == WEIR_FETCH_UPSTREAM_TLS);
  CHECK(f.ca_file == "/etc/ca.pem");
  CHECK(f.source == health.name());
  CHECK(fetches[1].method.empty());
  CHECK(fetches[1].effective_method() == "GET");
  CHECK(fetches[1].max_body == 0);
  CHECK(health.pending_fetches().size() == 2);

  CHECK(host.complete_fetch(f.id, 503, {{"Content-Type", "text/plain"}, {"Retry-After", "1"}},
                            "unavailable"));
  CHECK(host.fail_fetch(fetches[1].id, "connection refused"));
  CHECK_FALSE(host.fail_fetch(fetches[1].id)); // already finished
  CHECK_FALSE(host.complete_probe(f.id));      // not a probe
  REQUIRE(results.size() == 2);
  CHECK(results[0] == "ok  503 body=unav truncated ct=text/plain headers=2"); // max_body 4
  CHECK(results[1] == "failed connection refused 0 body= headers=0");
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: a cancelled request never calls back and its state is freed") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> watch = token;
  int calls = 0;
  weir_request_id_t id = 0;
  weir::sdk::Host seen;
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) {
    seen = h;
    id = h.probe({"10.0.0.1:80"},
                 [&calls, t = std::move(token)](const weir::sdk::ProbeResult&) { calls += *t; });
  });
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  REQUIRE(id != 0);
  CHECK_FALSE(watch.expired()); // the callback (and what it holds) is kept while it runs
  seen.cancel_request(id);
  CHECK(watch.expired()); // freed at cancel
  CHECK(seen.pending_requests() == 0);
  CHECK(host.probes()[0].state == FakeRequestState::Cancelled);
  CHECK_FALSE(host.complete_probe(id));
  seen.cancel_request(id);   // already cancelled: ignored
  seen.cancel_request(4242); // unknown: ignored
  CHECK(calls == 0);
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: destroying an instance cancels what it left running, without leaks") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> watch = token;
  bool called = false;
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) {
    h.probe({"10.0.0.1:80"}, [&called, token](const weir::sdk::ProbeResult&) { called = true; });
    weir::sdk::FetchRequest req;
    req.url = "http://10.0.0.1/";
    h.fetch(req, [&called, token](const weir::sdk::FetchResult&) { called = true; });
  });
  {
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
    token.reset(); // only the two callbacks hold it now
    CHECK(host.pending_requests() == 2);
    CHECK_FALSE(watch.expired());
  }
  CHECK(watch.expired());
  CHECK(host.pending_requests() == 0);
  CHECK(host.probes()[0].state == FakeRequestState::Cancelled); // by the SDK's instance_destroy
  CHECK(host.fetches()[0].state == FakeRequestState::Cancelled);
  CHECK_FALSE(called);
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: the host cancels what a raw plugin leaves running (not misuse)") {
  FakeHost host;
  auto cfg = configure(host, kRaw);
  {
    auto health = cfg.health();
    REQUIRE(health.ok());
    CHECK(host.pending_requests() == 1);
  }
  CHECK(host.pending_requests() == 0);
  REQUIRE(host.probes().size() == 1);
  CHECK(host.probes()[0].state == FakeRequestState::Abandoned);
  CHECK_FALSE(host.complete_probe(host.probes()[0].id));
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: a throwing callback is logged; a callback may start the next request") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  int round = 0;
  std::function<void(weir::sdk::Host)> start;
  start = [&](weir::sdk::Host h) {
    h.probe({"10.0.0.1:80"}, [&, h](const weir::sdk::ProbeResult&) {
      ++round;
      start(h); // re-arm from inside the callback
      if (round == 2) {
        throw std::runtime_error("boom in probe callback");
      }
    });
  };
  WithTargetsProbe probe(
      [&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) { start(h); });
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  for (int i = 0; i < 3; ++i) {
    const auto pending = host.pending_probes();
    REQUIRE(pending.size() == 1);
    CHECK(host.complete_probe(pending[0].id));
  }
  CHECK(round == 3);
  CHECK(host.pending_probes().size() == 1);
  CHECK(
      host.logged("uncaught exception in probe callback: boom in probe callback", WEIR_LOG_ERROR));
  CHECK(host.misuse().empty());
}

TEST_CASE("requests: the SDK ignores a completion for a request it does not know") {
  // A host that calls back twice (a host bug): the second call finds nothing.
  FakeHost host;
  static weir_probe_cb s_cb = nullptr;
  static void* s_user = nullptr;
  host.api_table().probe_start = [](weir_host_ctx_t*, const weir_probe_t*, weir_probe_cb cb,
                                    void* user) -> weir_request_id_t {
    s_cb = cb;
    s_user = user;
    return 77;
  };
  host.api_table().request_cancel = [](weir_host_ctx_t*, weir_request_id_t) {};
  weir::sdk::Host h(host.api(), nullptr);
  int calls = 0;
  std::string error;
  CHECK(h.probe({"10.0.0.1:80"}, [&](const weir::sdk::ProbeResult& r) {
    ++calls;
    error = std::string(r.error);
    CHECK_FALSE(r.ok);
  }) == 77);
  CHECK(h.pending_requests() == 1);
  // A result too short to hold a status is a failure, never a success.
  weir_probe_result_t shorty{};
  shorty.struct_size = 2;
  s_cb(s_user, &shorty);
  s_cb(s_user, &shorty);
  s_cb(s_user, nullptr);
  CHECK(calls == 1);
  CHECK(error == "the host delivered no result");
  CHECK(h.pending_requests() == 0);
}

TEST_CASE("requests: worker-thread objects and config_new may not start requests (misuse)") {
  FakeHost host;
  SUBCASE("a filter") {
    auto cfg = host.configure(kProbingFilter, FakeConfig::table({{"use", "probing-filter"}}));
    REQUIRE(cfg.ok());
    auto filter = cfg.filter();
    FakeHttp http;
    CHECK(filter.on_request(http) == WEIR_FILTER_CONTINUE);
    CHECK(ProbingFilter::id == 0);
    CHECK(host.probes().empty());
    REQUIRE(host.misuse().size() == 1);
    CHECK(host.misuse()[0].find("probe_start from probing-filter#") == 0);
    CHECK(host.misuse()[0].find("not a control-thread instance") != std::string::npos);
  }
  SUBCASE("config_new") {
    weir_request_id_t id = 99;
    WithConfigProbe probe([&](weir::sdk::ConfigReader& r) {
      id = r.host().probe({"127.0.0.1:1"}, [](const weir::sdk::ProbeResult&) {});
    });
    auto cfg = host.configure(weir::sdk::health_module<ProbeConfig, ActiveProbe>("cfg-probe"),
                              FakeConfig::table({{"use", "cfg-probe"}}));
    CHECK(cfg.ok());
    CHECK(id == 0);
    REQUIRE(host.misuse().size() == 1);
    CHECK(host.misuse()[0].find("during config_new") != std::string::npos);
  }
}

TEST_CASE("requests: what the fake host refuses (returns 0, no callback, not misuse)") {
  FakeHost host;
  auto cfg = configure(host, kActive);
  int calls = 0;
  auto on_probe = [&](const weir::sdk::ProbeResult&) { ++calls; };
  auto on_fetch = [&](const weir::sdk::FetchResult&) { ++calls; };
  WithTargetsProbe probe([&](weir::sdk::Host h, const std::vector<weir::sdk::Target>&) {
    CHECK(h.probe({""}, on_probe) == 0);
    weir::sdk::FetchRequest req;
    req.url = "ftp://x/";
    CHECK(h.fetch(req, on_fetch) == 0);
    req.url = "http:///path";
    CHECK(h.fetch(req, on_fetch) == 0);
    req.url = "http://ok/";
    req.headers = {{"bad name", "x"}};
    CHECK(h.fetch(req, on_fetch) == 0);
    req.headers.clear();
    req.method = "G T";
    CHECK(h.fetch(req, on_fetch) == 0);
    req.method = "GET";
    host.set_refuse_requests(true);
    CHECK(h.fetch(req, on_fetch) == 0);
    host.set_refuse_requests(false);
    // The host's own headers are dropped, as weir drops them.
    req.headers = {{"Host", "other"}, {"x-a", "1"}, {"Content-Length", "9"}, {"Connection", "x"}};
    CHECK(h.fetch(req, on_fetch) != 0);
    CHECK(h.pending_requests() == 1);
  });
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  const auto& refusals = host.request_refusals();
  REQUIRE(refusals.size() == 6);
  CHECK(refusals[0].find("empty address") != std::string::npos);
  CHECK(refusals[1].find("is not absolute http or https") != std::string::npos);
  CHECK(refusals[2].find("has no host") != std::string::npos);
  CHECK(refusals[3].find("bad header 'bad name'") != std::string::npos);
  CHECK(refusals[4].find("is not a token") != std::string::npos);
  CHECK(refusals[5].find("set_refuse_requests") != std::string::npos);
  REQUIRE(host.fetches().size() == 1);
  CHECK(host.fetches()[0].headers.all() ==
        std::vector<std::pair<std::string, std::string>>{{"x-a", "1"}});
  CHECK(calls == 0);
  CHECK(host.misuse().empty());

  // WEIR_FETCH_UPSTREAM_TLS from an object that belongs to no upstream group
  auto certs_cfg = host.configure(kFetchingCerts, FakeConfig::table({{"use", "fetching-certs"}}));
  REQUIRE(certs_cfg.ok());
  auto certs = certs_cfg.certs();
  CHECK(certs.start() == WEIR_OK);
  CHECK(certs.pending_fetches().size() == 1);
  CHECK(host.request_refusals().back().find("belongs to no upstream group") != std::string::npos);
  CHECK(host.misuse().empty());

  host.clear_records(); // finished ones go, running ones stay
  CHECK(host.request_refusals().empty());
  CHECK(host.fetches().size() == 2);
}

TEST_CASE("observations: timed_out and duration_ns from an ABI 1.2 host, not from older ones") {
  FakeHost host;
  auto cfg = configure(host, kObserver);
  auto health = cfg.health();
  Observer::seen.clear();
  Observer::ids.clear();
  CHECK(health.observe("a:1", 0, false, true, 2'000'000'000));
  weir::testing::FakeObservation old;
  old.target_id = "b:1";
  old.status = 502;
  old.timed_out = true;    // filled by the fake, but beyond the struct_size:
  old.duration_ns = 12345; // the SDK must not read them
  old.struct_size = offsetof(weir_health_observation_t, timed_out);
  CHECK(health.observe(old));
  CHECK(health.observe("c:1", 200));
  REQUIRE(Observer::seen.size() == 3);
  CHECK(Observer::ids == std::vector<std::string>{"a:1", "b:1", "c:1"});
  CHECK(Observer::seen[0].timed_out);
  CHECK(Observer::seen[0].duration_ns == 2'000'000'000u);
  CHECK(Observer::seen[0].status == 0);
  CHECK(Observer::seen[1].status == 502);
  CHECK_FALSE(Observer::seen[1].timed_out);
  CHECK(Observer::seen[1].duration_ns == 0);
  CHECK_FALSE(Observer::seen[2].timed_out);
  CHECK(host.misuse().empty());
}
