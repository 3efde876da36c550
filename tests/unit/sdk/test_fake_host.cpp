// The fake host itself: config trees and paths, durations, timers, headers, misuse detection.
#include "probe.hpp"

#include <string>
#include <vector>

using namespace sdk_tests;

namespace {

struct NullFilter {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
constexpr weir_module_t kModule = weir::sdk::filter_module<ProbeConfig, NullFilter>("probe");

// A raw-ABI module that keeps its configuration node past config_new (a bug the fake detects).
const weir_config_node_t* g_kept_node = nullptr;
const weir_host_api_t* g_api = nullptr;
int g_token = 0;
weir_status_t keep_config_new(const weir_host_api_t* api, weir_host_ctx_t*,
                              const weir_config_node_t* cfg, weir_plugin_config_t** out) {
  g_kept_node = cfg;
  g_api = api;
  *out = reinterpret_cast<weir_plugin_config_t*>(&g_token);
  return WEIR_OK;
}
void keep_config_destroy(weir_plugin_config_t*) {}
weir_status_t keep_instance_new(const weir_host_api_t*, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t*, weir_discovery_instance_t** out) {
  (void)g_api->config_size(g_kept_node); // too late: config views are dead
  g_api->timer_start(
      ctx, 1000, [](void*) {}, nullptr); // never cancelled
  *out = reinterpret_cast<weir_discovery_instance_t*>(&g_token);
  return WEIR_OK;
}
void keep_instance_destroy(weir_discovery_instance_t*) {}
weir_status_t keep_start(weir_discovery_instance_t*) {
  return WEIR_OK;
}
constexpr weir_discovery_vtable_t kKeepVtable = {
    .struct_size = sizeof(weir_discovery_vtable_t),
    .config_new = &keep_config_new,
    .config_destroy = &keep_config_destroy,
    .instance_new = &keep_instance_new,
    .instance_destroy = &keep_instance_destroy,
    .start = &keep_start,
};
constexpr weir_module_t kKeep = {sizeof(weir_module_t), WEIR_KIND_DISCOVERY, "keep", &kKeepVtable};

} // namespace

TEST_CASE("fake host: config tree types, sizes and paths") {
  FakeHost host;
  WithConfigProbe probe([](weir::sdk::ConfigReader& r) {
    CHECK(r.path() == "upstreams.app.lb");
    CHECK(r.child("use").type() == WEIR_CONFIG_STRING);
    CHECK(r.child("n").type() == WEIR_CONFIG_INTEGER);
    CHECK(r.child("f").type() == WEIR_CONFIG_FLOAT);
    CHECK(r.child("b").type() == WEIR_CONFIG_BOOLEAN);
    CHECK(r.child("arr").type() == WEIR_CONFIG_ARRAY);
    CHECK(r.child("tbl").type() == WEIR_CONFIG_TABLE);
    CHECK(r.child("absent").type() == WEIR_CONFIG_NONE);
    CHECK(r.child("arr").size() == 3);
    CHECK(r.child("tbl").size() == 2);
    CHECK(r.child("n").size() == 0);
    CHECK(r.child("arr").at(2).path() == "upstreams.app.lb.arr[2]");
    CHECK(r.child("arr").at(2).at(0).path() == "upstreams.app.lb.arr[2][0]");
    CHECK(r.child("tbl").child("x.y").path() == "upstreams.app.lb.tbl.\"x.y\"");
    CHECK(r.child("tbl").child("plain_key-1").path() == "upstreams.app.lb.tbl.plain_key-1");
    CHECK(r.child("n").as_int() == 7);
    CHECK(r.child("f").as_double() == doctest::Approx(2.5));
    CHECK(r.child("n").as_double() == doctest::Approx(7.0)); // ints convert
  });
  auto cfg = host.configure(
      kModule,
      FakeConfig::table({{"use", "probe"},
                         {"n", 7},
                         {"f", 2.5},
                         {"b", false},
                         {"arr", FakeConfig::array({1, "two", FakeConfig::array({3})})},
                         {"tbl", FakeConfig::table({{"x.y", 1}, {"plain_key-1", 2}})}}),
      "upstreams.app.lb");
  CHECK(cfg.ok());
  CHECK(host.misuse().empty());
}

TEST_CASE("fake host: durations") {
  FakeHost host;
  struct Case {
    weir::testing::FakeValue value;
    std::optional<int64_t> ms;
  };
  const std::vector<Case> cases = {
      {"250ms", 250},   {"5s", 5000},      {"1m", 60000}, {"1h", 3600000},
      {"1m30s", 90000}, {"2d", 172800000}, {0, 0},        {1500, 1500},
      {"", {}},         {"5", {}},         {"5 s", {}},   {"s", {}},
      {"-1s", {}},      {-1, {}},          {"1.5s", {}},  {true, {}},
  };
  for (const Case& c : cases) {
    std::optional<std::chrono::milliseconds> got;
    WithConfigProbe probe([&](weir::sdk::ConfigReader& r) { got = r.child("d").as_duration(); });
    auto cfg = host.configure(kModule, FakeConfig::table({{"use", "probe"}, {"d", c.value}}));
    if (c.ms) {
      CHECK_MESSAGE(got.has_value(), cfg.errors_text());
      if (got) {
        CHECK(got->count() == *c.ms);
      }
    } else {
      CHECK_FALSE(got.has_value());
      CHECK(cfg.errors().size() == 1);
    }
  }
}

TEST_CASE("fake host: timers fire in due order, can be cancelled, and re-arm") {
  FakeHost host;
  std::vector<int> order;
  struct Ctx {
    std::vector<int>* order;
    int tag;
  };
  Ctx a{&order, 1}, b{&order, 2}, c{&order, 3};
  auto cb = [](void* user) {
    auto* x = static_cast<Ctx*>(user);
    x->order->push_back(x->tag);
  };
  // Drive the raw timer API with a context made by the host for this test.
  auto* ctx =
      reinterpret_cast<weir_host_ctx_t*>(host.new_ctx("timers", WEIR_KIND_DISCOVERY, false));
  const weir_host_api_t* api = host.api();
  const uint64_t t0 = host.now_ns();
  const auto id_c = api->timer_start(ctx, 30, cb, &c);
  api->timer_start(ctx, 20, cb, &b);
  api->timer_start(ctx, 10, cb, &a);
  CHECK(id_c != 0);
  CHECK(host.pending_timers() == 3);
  api->timer_cancel(ctx, id_c);
  api->timer_cancel(ctx, 999); // unknown: ignored
  CHECK(host.fire_due(5) == 0);
  CHECK(host.fire_due(100) == 2);
  CHECK(order == std::vector<int>{1, 2});
  CHECK(host.now_ns() - t0 == 105'000'000u);
  CHECK(api->now_ns() == host.now_ns());
  CHECK(host.pending_timers() == 0);
  CHECK_FALSE(host.next_timer_in_ms());
  CHECK(api->timer_start(ctx, 0, nullptr, nullptr) == 0);
}

TEST_CASE("fake host: headers keep order and compare names case-insensitively") {
  weir::testing::FakeHeaders h = {{"A", "1"}, {"b", "2"}, {"a", "3"}, {"C", "4"}};
  CHECK(h.get("a") == "1");
  CHECK(h.get("A", 1) == "3");
  CHECK_FALSE(h.get("a", 2));
  CHECK(h.count("A") == 2);
  h.set("a", "x"); // replaces at the first position, drops the rest
  CHECK(h.all() ==
        std::vector<std::pair<std::string, std::string>>{{"a", "x"}, {"b", "2"}, {"C", "4"}});
  h.add("B", "5");
  CHECK(h.get_all("b") == std::vector<std::string>{"2", "5"});
  h.remove("B");
  CHECK(h.all() == std::vector<std::pair<std::string, std::string>>{{"a", "x"}, {"C", "4"}});
  h.set("new", "n");
  CHECK(h.all().back() == std::pair<std::string, std::string>{"new", "n"});
}

TEST_CASE("fake host: respond rules") {
  FakeHost host;
  const weir_host_api_t* api = host.api();
  FakeHttp http;
  http.stage = FakeHttp::Stage::Request;
  CHECK(api->http_respond(http.handle(), 99, weir::sdk::str(""), weir::sdk::str("")) ==
        WEIR_ERROR_INVALID);
  CHECK(api->http_respond(http.handle(), 404, weir::sdk::str("text/plain"),
                          weir::sdk::str("nope")) == WEIR_OK);
  CHECK(http.response_headers.get("content-length") == "4");
  CHECK(api->http_respond(http.handle(), 404, weir::sdk::str(""), weir::sdk::str("")) ==
        WEIR_ERROR_STATE);
  CHECK(http.misuse.size() == 1);
  FakeHttp late;
  late.stage = FakeHttp::Stage::Response;
  CHECK(api->http_respond(late.handle(), 200, weir::sdk::str(""), weir::sdk::str("")) ==
        WEIR_ERROR_STATE);
  CHECK(api->header_set(late.handle(), WEIR_HEADERS_REQUEST, weir::sdk::str("a"),
                        weir::sdk::str("b")) == WEIR_ERROR_STATE);
  CHECK(api->header_set(late.handle(), 7, weir::sdk::str("a"), weir::sdk::str("b")) ==
        WEIR_ERROR_INVALID);
}

TEST_CASE("fake host: misuse is recorded (config after config_new, leaked timers)") {
  FakeHost host;
  auto cfg = host.configure(kKeep, FakeConfig::table({{"use", "keep"}}), "d");
  REQUIRE(cfg.ok());
  CHECK(host.misuse().empty());
  {
    auto inst = cfg.discovery();
    CHECK(inst.ok());
  }
  REQUIRE(host.misuse().size() == 2);
  CHECK(host.misuse()[0].find("config_size called outside config_new (node d)") !=
        std::string::npos);
  CHECK(host.misuse()[1].find("destroyed with 1 timer(s) still pending") != std::string::npos);
  CHECK(host.pending_timers() == 0);
}

TEST_CASE("fake host: a module missing a required hook is refused") {
  FakeHost host;
  weir_discovery_vtable_t vt = kKeepVtable;
  vt.start = nullptr;
  const weir_module_t m = {sizeof(weir_module_t), WEIR_KIND_DISCOVERY, "no-start", &vt};
  CHECK(weir::testing::FakePlugin::vtable_problems(m) ==
        std::vector<std::string>{"required hook 'start' is NULL"});
  CHECK_THROWS_AS(host.configure(m, FakeConfig::table({{"use", "no-start"}})), std::logic_error);
}
