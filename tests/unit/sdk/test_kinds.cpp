// sdk.hpp per kind: vtables, optional hooks, constructors, the Http view, timers, targets, and the
// descriptor built by WEIR_SDK_PLUGIN (this file is the test binary's one plugin entry point).
#include "probe.hpp"

#include <chrono>
#include <string>
#include <vector>

using namespace sdk_tests;
using namespace std::chrono_literals;

namespace {

// --- filter probing the Http view ---------------------------------------------------------------
struct HttpProbe {
  weir::sdk::FilterResult on_request(weir::sdk::Http& http) {
    CHECK(http.method() == "PUT");
    CHECK(http.path() == "/a/b");
    CHECK(http.query() == "x=1&y=2");
    CHECK(http.host() == "api.example");
    CHECK(http.client_ip() == "2001:db8::7");
    CHECK(http.client_port() == 51000);
    CHECK(http.status() == 0);
    const weir::sdk::Headers req = http.request_headers();
    CHECK(req.which() == WEIR_HEADERS_REQUEST);
    CHECK(req.get("ACCEPT") == "text/html");
    CHECK(req.get("x-multi", 1) == "two");
    CHECK_FALSE(req.get("x-multi", 2));
    CHECK(req.get_all("X-Multi") == std::vector<std::string>{"one", "two"});
    CHECK(req.has("x-multi"));
    CHECK_FALSE(req.has("absent"));
    std::vector<std::string> seen;
    req.each([&](std::string_view n, std::string_view v) {
      seen.push_back(std::string(n) + "=" + std::string(v));
    });
    CHECK(seen == std::vector<std::string>{"Accept=text/html", "X-Multi=one", "x-multi=two"});
    seen.clear();
    req.each([&](std::string_view n, std::string_view) {
      seen.emplace_back(n);
      return seen.size() < 2; // false stops
    });
    CHECK(seen.size() == 2);
    CHECK(req.set("x-multi", "only") == WEIR_OK);
    CHECK(req.add("x-added", "1") == WEIR_OK);
    CHECK(req.remove("accept") == WEIR_OK);
    CHECK(req.remove("never-there") == WEIR_OK);
    CHECK(req.set("bad name", "x") == WEIR_ERROR_INVALID);
    CHECK(req.set("x-ok", "bad\r\nvalue") == WEIR_ERROR_INVALID);
    if (http.path() == "/a/b") {
      CHECK(http.respond(418, "short and stout", "text/x-teapot") == WEIR_OK);
      return weir::sdk::FilterResult::Responded;
    }
    return weir::sdk::FilterResult::Continue;
  }
};
constexpr weir_module_t kHttpProbe =
    weir::sdk::filter_module<weir::sdk::NoConfig, HttpProbe>("http-probe");

// --- optional hooks -----------------------------------------------------------------------------
struct ResponseOnly {
  void on_response(weir::sdk::Http& http) { http.response_headers().set("x-seen", "1"); }
};
constexpr weir_module_t kResponseOnly =
    weir::sdk::filter_module<weir::sdk::NoConfig, ResponseOnly>("response-only");

struct MinimalLb {
  weir_status_t on_targets(const std::vector<weir::sdk::Target>& t) {
    targets = t;
    return WEIR_OK;
  }
  std::optional<size_t> pick(const weir::sdk::PickRequest& req) {
    last_attempt = req.attempt;
    had_http = req.http.has_value();
    if (req.http) {
      last_path = std::string(req.http->path());
    }
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!req.is_excluded(i)) {
        return i;
      }
    }
    return std::nullopt;
  }
  std::vector<weir::sdk::Target> targets;
  uint32_t last_attempt = 0;
  bool had_http = false;
  std::string last_path;
};
constexpr weir_module_t kMinimalLb =
    weir::sdk::lb_module<weir::sdk::NoConfig, MinimalLb>("minimal-lb");

// Remembers the last LB instance made (to look inside from the test).
struct CountingLb;
CountingLb* g_counting_lb = nullptr;
struct CountingLb : MinimalLb {
  CountingLb() { g_counting_lb = this; }
  ~CountingLb() { g_counting_lb = nullptr; }
  CountingLb(const CountingLb&) = delete;
  CountingLb& operator=(const CountingLb&) = delete;
  void on_start(size_t i) { started.push_back(i); }
  void on_done(size_t i, uint32_t status, uint64_t ns) {
    done.push_back(i);
    statuses.push_back(status);
    total_ns += ns;
  }
  std::vector<size_t> started, done;
  std::vector<uint32_t> statuses;
  uint64_t total_ns = 0;
};
constexpr weir_module_t kCountingLb =
    weir::sdk::lb_module<weir::sdk::NoConfig, CountingLb>("counting-lb");

// --- discovery with timers
// ------------------------------------------------------------------------
struct PollConfig {
  explicit PollConfig(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys({"interval", "address"});
    interval = cfg.get_duration("interval", 1s, 10ms);
    address = cfg.get_string("address", "10.0.0.1:80");
  }
  std::chrono::milliseconds interval;
  std::string address;
};

struct PollingDiscovery {
  PollingDiscovery(weir::sdk::Host host, const PollConfig& config)
      : host_(host), config_(config), timers_(host) {}
  void start() { poll(); }
  void poll() {
    ++polls_;
    const std::vector<weir::sdk::Target> set = {
        {config_.address, static_cast<uint32_t>(polls_), true, "id-" + std::to_string(polls_)}};
    host_.publish_targets(set);
    host_.debug("poll ", polls_);
    timers_.after(config_.interval, [this] { poll(); });
  }
  weir::sdk::Host host_;
  const PollConfig& config_;
  weir::sdk::Timers timers_;
  int polls_ = 0;
};
constexpr weir_module_t kPolling =
    weir::sdk::discovery_module<PollConfig, PollingDiscovery>("polling");

// --- health
// ---------------------------------------------------------------------------------------
struct Passive {
  explicit Passive(weir::sdk::Host host) : host_(host) {}
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    for (const auto& t : targets) {
      host_.report_health(t.key(), true, "initial");
    }
  }
  void on_observation(const weir::sdk::Observation& o) {
    if (o.connect_failed || o.status >= 500) {
      host_.report_health(o.target_id, false,
                          o.connect_failed ? "connect failed"
                                           : "status " + std::to_string(o.status));
    }
  }
  weir::sdk::Host host_;
};
constexpr weir_module_t kPassive =
    weir::sdk::health_module<weir::sdk::NoConfig, Passive>("passive");

struct NoObservation {
  void on_targets(const std::vector<weir::sdk::Target>&) {}
};
constexpr weir_module_t kNoObservation =
    weir::sdk::health_module<weir::sdk::NoConfig, NoObservation>("no-observation");

// --- certs
// ----------------------------------------------------------------------------------------
struct Certs {
  Certs(weir::sdk::Host host, const weir::sdk::NoConfig&) : host_(host) {}
  weir_status_t start() {
    host_.info("managing ", 0, " certificates");
    return WEIR_OK;
  }
  weir::sdk::Host host_;
};
constexpr weir_module_t kCerts = weir::sdk::certs_module<weir::sdk::NoConfig, Certs>("certs");

} // namespace

// The test binary is itself a plugin: several modules, one descriptor.
WEIR_SDK_PLUGIN("sdk-test", "9.9.9", kHttpProbe, kMinimalLb, kPolling, kPassive, kCerts,
                weir::sdk::filter_module<weir::sdk::NoConfig, ResponseOnly>("response-only"))

TEST_CASE("WEIR_SDK_PLUGIN: descriptor, modules, ABI stamp") {
  FakeHost host;
  auto plugin = host.load(&weir_plugin_entry);
  const weir_plugin_descriptor_t* d = plugin.descriptor();
  REQUIRE(d != nullptr);
  CHECK(plugin.problems().empty());
  CHECK(d->struct_size == sizeof(weir_plugin_descriptor_t));
  CHECK(d->abi_major == WEIR_ABI_MAJOR);
  CHECK(d->abi_minor == WEIR_ABI_MINOR);
  CHECK(std::string(d->name) == "sdk-test");
  CHECK(std::string(d->version) == "9.9.9");
  REQUIRE(d->module_count == 6);
  CHECK(d->modules[0].kind == WEIR_KIND_FILTER);
  CHECK(d->modules[1].kind == WEIR_KIND_LB);
  CHECK(d->modules[2].kind == WEIR_KIND_DISCOVERY);
  CHECK(d->modules[3].kind == WEIR_KIND_HEALTH);
  CHECK(d->modules[4].kind == WEIR_KIND_CERTS);
  CHECK(std::string(d->modules[5].name) == "response-only");
  CHECK(weir_plugin_entry() == d); // the same static descriptor every time
  auto cfg = host.configure(plugin.module(WEIR_KIND_LB, "minimal-lb"),
                            FakeConfig::table({{"use", "minimal-lb"}}));
  CHECK(cfg.ok());
  CHECK_THROWS_AS(plugin.module(WEIR_KIND_LB, "nope"), std::out_of_range);
}

TEST_CASE("vtables: optional hooks are NULL unless the Instance defines them") {
  const auto* filter = static_cast<const weir_filter_vtable_t*>(kResponseOnly.vtable);
  CHECK(filter->struct_size == sizeof(weir_filter_vtable_t));
  CHECK((filter->on_request == nullptr));
  CHECK((filter->on_response != nullptr));
  const auto* lb = static_cast<const weir_lb_vtable_t*>(kMinimalLb.vtable);
  CHECK((lb->on_start == nullptr));
  CHECK((lb->on_done == nullptr));
  const auto* counting = static_cast<const weir_lb_vtable_t*>(kCountingLb.vtable);
  CHECK((counting->on_start != nullptr));
  CHECK((counting->on_done != nullptr));
  CHECK(
      (static_cast<const weir_health_vtable_t*>(kNoObservation.vtable)->on_observation == nullptr));
  CHECK((static_cast<const weir_health_vtable_t*>(kPassive.vtable)->on_observation != nullptr));
  for (const weir_module_t& m : {kHttpProbe, kResponseOnly, kMinimalLb, kCountingLb, kPolling,
                                 kPassive, kNoObservation, kCerts}) {
    CAPTURE(m.name);
    CHECK(weir::testing::FakePlugin::vtable_problems(m).empty());
  }
}

TEST_CASE("Http view: request accessors, headers, respond") {
  FakeHost host;
  auto f = host.configure(kHttpProbe, FakeConfig::table({{"use", "http-probe"}})).filter();
  FakeHttp http;
  http.method = "PUT";
  http.path = "/a/b";
  http.query = "x=1&y=2";
  http.host = "api.example";
  http.client_ip = "2001:db8::7";
  http.client_port = 51000;
  http.request_headers = {{"Accept", "text/html"}, {"X-Multi", "one"}, {"x-multi", "two"}};
  CHECK(f.on_request(http) == WEIR_FILTER_RESPONDED);
  CHECK(http.request_headers.all() ==
        std::vector<std::pair<std::string, std::string>>{{"x-multi", "only"}, {"x-added", "1"}});
  REQUIRE(http.local_response);
  CHECK(http.local_response->status == 418);
  CHECK(http.local_response->body == "short and stout");
  CHECK(http.response_headers.get("content-type") == "text/x-teapot");
  CHECK(http.misuse.empty());
  CHECK(host.misuse().empty());

  auto r = host.configure(kResponseOnly, FakeConfig::table({{"use", "response-only"}})).filter();
  CHECK_FALSE(r.has_on_request());
  FakeHttp other;
  CHECK(r.on_request(other) == WEIR_FILTER_CONTINUE);
  other.upstream_response(200);
  CHECK(r.on_response(other) == WEIR_FILTER_CONTINUE); // void hook = continue
  CHECK(other.response_headers.get("x-seen") == "1");
}

TEST_CASE("LB: pick request, excluded flags, on_start/on_done") {
  FakeHost host;
  auto cfg = host.configure(kCountingLb, FakeConfig::table({{"use", "counting-lb"}}));
  auto lb = cfg.lb();
  REQUIRE(g_counting_lb != nullptr);
  REQUIRE(lb.set_targets({{"a:1", 3, true, "ida"}, {"b:1", 0, false, ""}}) == WEIR_OK);
  REQUIRE(g_counting_lb->targets.size() == 2);
  CHECK(g_counting_lb->targets[0].key() == "ida");
  CHECK(g_counting_lb->targets[1].key() == "b:1");
  CHECK(g_counting_lb->targets[1].weight == 1); // 0 means 1
  CHECK_FALSE(g_counting_lb->targets[1].healthy);
  FakeHttp http;
  http.path = "/pick";
  CHECK(lb.pick({1, 0}, 3, &http) == std::optional<size_t>(1));
  CHECK(g_counting_lb->last_attempt == 3);
  CHECK(g_counting_lb->had_http);
  CHECK(g_counting_lb->last_path == "/pick");
  CHECK(lb.pick() == std::optional<size_t>(0));
  CHECK_FALSE(g_counting_lb->had_http);
  CHECK_FALSE(lb.pick({1, 1}));
  CHECK(lb.last_status() == WEIR_ERROR_NOT_FOUND);
  lb.on_start(1);
  lb.on_done(1, 502, 1500);
  CHECK(g_counting_lb->started == std::vector<size_t>{1});
  CHECK(g_counting_lb->done == std::vector<size_t>{1});
  CHECK(g_counting_lb->statuses == std::vector<uint32_t>{502});
  CHECK(g_counting_lb->total_ns == 1500);
}

TEST_CASE("targets from a newer host: elements are strided by their struct_size") {
  // A host of a later minor may append fields to weir_target_t; the SDK must still read the array.
  struct TargetV2 {
    weir_target_t v1;
    uint64_t appended;
  };
  FakeHost host;
  auto lb = host.configure(kCountingLb, FakeConfig::table({{"use", "counting-lb"}})).lb();
  TargetV2 arr[2]{};
  const char* names[2] = {"n1:1", "n2:2"};
  for (size_t i = 0; i < 2; ++i) {
    arr[i].v1.struct_size = sizeof(TargetV2);
    arr[i].v1.address = weir::sdk::str(names[i]);
    arr[i].v1.weight = static_cast<uint32_t>(i + 7);
    arr[i].v1.healthy = 1;
    arr[i].appended = 0xdeadbeef;
  }
  static_assert(sizeof(TargetV2) > sizeof(weir_target_t));
  REQUIRE(lb.vtable()->on_targets(lb.raw(), reinterpret_cast<const weir_target_t*>(&arr[0]), 2) ==
          WEIR_OK);
  REQUIRE(g_counting_lb != nullptr);
  REQUIRE(g_counting_lb->targets.size() == 2);
  CHECK(g_counting_lb->targets[1].address == "n2:2");
  CHECK(g_counting_lb->targets[1].weight == 8);
}

TEST_CASE("discovery: Timers drive periodic publishing; destroy cancels") {
  FakeHost host;
  auto cfg = host.configure(
      kPolling,
      FakeConfig::table({{"use", "polling"}, {"interval", "5s"}, {"address", "[::1]:80"}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  {
    auto d = cfg.discovery();
    CHECK(d.start() == WEIR_OK);
    REQUIRE(d.published().size() == 1);
    CHECK(d.last_published() == std::vector<FakeTarget>{{"[::1]:80", 1, true, "id-1"}});
    CHECK(host.pending_timers() == 1);
    CHECK(host.next_timer_in_ms() == 5000u);
    CHECK(host.fire_due(4999) == 0);
    CHECK(host.fire_due(1) == 1);
    CHECK(host.fire_due(10000) == 2); // 10s later, two more polls: the callbacks re-arm
    CHECK(d.published().size() == 4);
    CHECK(d.last_published()[0].weight == 4);
    CHECK(host.logged("poll 4", WEIR_LOG_DEBUG));
  }
  CHECK(host.pending_timers() == 0); // Timers cancelled in the destructor
  CHECK(host.misuse().empty());
}

TEST_CASE("health: reports and observations") {
  FakeHost host;
  auto h = host.configure(kPassive, FakeConfig::table({{"use", "passive"}})).health();
  CHECK(h.set_targets({{"a:1", 1, true, "A"}, {"b:1"}}) == WEIR_OK);
  CHECK(h.observe("A", 200));
  CHECK(h.observe("b:1", 503));
  CHECK(h.observe("A", 0, true));
  const auto reports = h.reports();
  REQUIRE(reports.size() == 4);
  CHECK(reports[0].target_id == "A");
  CHECK(reports[0].healthy);
  CHECK(reports[1].target_id == "b:1");
  CHECK(reports[2].target_id == "b:1");
  CHECK_FALSE(reports[2].healthy);
  CHECK(reports[2].reason == "status 503");
  CHECK(reports[3].reason == "connect failed");

  auto quiet =
      host.configure(kNoObservation, FakeConfig::table({{"use", "no-observation"}})).health();
  CHECK_FALSE(quiet.observe("A", 500)); // hook absent
  CHECK(host.misuse().empty());
}

TEST_CASE("certs: start, and logging only formats enabled levels") {
  FakeHost host;
  auto c = host.configure(kCerts, FakeConfig::table({{"use", "certs"}})).certs();
  CHECK(c.start() == WEIR_OK);
  CHECK(host.logged("managing 0 certificates", WEIR_LOG_INFO));
  host.clear_records();
  host.set_log_level(WEIR_LOG_WARN);
  CHECK(c.start() == WEIR_OK);
  CHECK(host.logs().empty());
}

TEST_CASE("kind mismatches and misuse are caught by the fake host") {
  FakeHost host;
  auto cfg = host.configure(kCerts, FakeConfig::table({{"use", "certs"}}));
  CHECK_THROWS_AS((void)cfg.lb(), std::logic_error);
  // publishing from something that is not a discovery instance
  weir::sdk::Host fake_ctx(host.api(), nullptr);
  CHECK(fake_ctx.publish_targets(std::vector<weir::sdk::Target>{}) == WEIR_ERROR_INVALID);
}
