// The exception barrier of sdk.hpp: a throwing hook becomes an error code plus a log line, and
// nothing unwinds into the host (the fake host's functions are noexcept: an exception crossing one
// would terminate the test).
#include "probe.hpp"

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sdk_tests;

namespace {

// --- an LB whose hooks throw on demand ----------------------------------------------------------
struct ThrowingLb {
  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    if (!targets.empty() && targets[0].address == "oom:1") {
      throw std::bad_alloc();
    }
    n = targets.size();
  }
  std::optional<size_t> pick(const weir::sdk::PickRequest& req) {
    if (req.attempt == 1) {
      throw std::runtime_error("boom pick");
    }
    if (req.attempt == 2) {
      return n + 5; // out of range
    }
    return 0;
  }
  void on_start(size_t) { throw 42; } // not a std::exception
  void on_done(size_t, uint32_t, uint64_t) { throw std::logic_error("boom done"); }
  size_t n = 0;
};
constexpr weir_module_t kThrowingLb =
    weir::sdk::lb_module<weir::sdk::NoConfig, ThrowingLb>("throwing-lb");

// --- a filter whose hooks throw -----------------------------------------------------------------
struct ThrowingFilter {
  weir::sdk::FilterResult on_request(weir::sdk::Http& http) {
    if (http.path() == "/each") {
      // Throws from inside header_each's callback: the SDK must carry it past the host.
      http.request_headers().each([](std::string_view name, std::string_view) {
        if (name == "x-throw") {
          throw std::runtime_error("boom inside header_each");
        }
      });
      return weir::sdk::FilterResult::Continue;
    }
    throw std::runtime_error("boom request");
  }
  weir::sdk::FilterResult on_response(weir::sdk::Http&) { throw "a C string"; }
};
constexpr weir_module_t kThrowingFilter =
    weir::sdk::filter_module<weir::sdk::NoConfig, ThrowingFilter>("throwing-filter");

// --- construction failures ----------------------------------------------------------------------
struct ThrowingInstance {
  explicit ThrowingInstance(const ProbeConfig&) { throw std::runtime_error("boom instance"); }
  weir_status_t start() { return WEIR_OK; }
};
constexpr weir_module_t kThrowingInstance =
    weir::sdk::discovery_module<ProbeConfig, ThrowingInstance>("throwing-instance");

struct ThrowingStart {
  explicit ThrowingStart(weir::sdk::Host host) : timers(host) {}
  weir_status_t start() {
    timers.after(std::chrono::milliseconds(10), [] { throw std::runtime_error("boom timer"); });
    timers.after(std::chrono::milliseconds(20), [this] { ++fired; });
    throw std::out_of_range("boom start");
  }
  weir::sdk::Timers timers;
  int fired = 0;
};
constexpr weir_module_t kThrowingStart =
    weir::sdk::discovery_module<weir::sdk::NoConfig, ThrowingStart>("throwing-start");

struct NullFilter {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
constexpr weir_module_t kProbeFilter =
    weir::sdk::filter_module<ProbeConfig, NullFilter>("probe-filter");

} // namespace

TEST_CASE("barrier: a throwing pick becomes WEIR_ERROR plus an error log line") {
  FakeHost host;
  auto cfg = host.configure(kThrowingLb, FakeConfig::table({{"use", "throwing-lb"}}));
  REQUIRE(cfg.ok());
  auto lb = cfg.lb();
  REQUIRE(lb.set_targets({{"a:1"}, {"b:1"}}) == WEIR_OK);
  CHECK(lb.pick({}, 0) == std::optional<size_t>(0));
  CHECK_FALSE(lb.pick({}, 1));
  CHECK(lb.last_status() == WEIR_ERROR);
  CHECK_MESSAGE(host.logged("uncaught exception in pick: boom pick", WEIR_LOG_ERROR),
                host.logs_text());
  // the instance keeps working afterwards
  CHECK(lb.pick({}, 0) == std::optional<size_t>(0));
}

TEST_CASE("barrier: bad_alloc becomes WEIR_ERROR_NOMEM; non-std exceptions are caught too") {
  FakeHost host;
  auto cfg = host.configure(kThrowingLb, FakeConfig::table({{"use", "throwing-lb"}}));
  auto lb = cfg.lb();
  CHECK(lb.set_targets({{"oom:1"}}) == WEIR_ERROR_NOMEM);
  CHECK(host.logged("uncaught exception in on_targets: out of memory", WEIR_LOG_ERROR));
  REQUIRE(lb.set_targets({{"a:1"}}) == WEIR_OK);
  lb.on_start(0); // throws 42: void hook, logged
  CHECK(host.logged("uncaught exception in on_start: unknown exception", WEIR_LOG_ERROR));
  lb.on_done(0, 200, 1000);
  CHECK(host.logged("uncaught exception in on_done: boom done", WEIR_LOG_ERROR));
}

TEST_CASE("barrier: a pick outside the target set is refused") {
  FakeHost host;
  auto cfg = host.configure(kThrowingLb, FakeConfig::table({{"use", "throwing-lb"}}));
  auto lb = cfg.lb();
  REQUIRE(lb.set_targets({{"a:1"}, {"b:1"}}) == WEIR_OK);
  CHECK_FALSE(lb.pick({}, 2));
  CHECK(lb.last_status() == WEIR_ERROR);
  CHECK_MESSAGE(host.logged("pick returned index 7 outside the target set of 2", WEIR_LOG_ERROR),
                host.logs_text());
  CHECK(host.misuse().empty());
}

TEST_CASE("barrier: throwing filter hooks become WEIR_FILTER_FAILED plus a log line") {
  FakeHost host;
  auto cfg = host.configure(kThrowingFilter, FakeConfig::table({{"use", "throwing-filter"}}));
  auto f = cfg.filter();
  FakeHttp http;
  CHECK(f.on_request(http) == WEIR_FILTER_FAILED);
  CHECK(host.logged("uncaught exception in on_request: boom request", WEIR_LOG_ERROR));
  CHECK(f.on_response(http) == WEIR_FILTER_FAILED);
  CHECK(host.logged("uncaught exception in on_response: unknown exception", WEIR_LOG_ERROR));

  FakeHttp each;
  each.path = "/each";
  each.request_headers = {{"a", "1"}, {"x-throw", "2"}, {"b", "3"}};
  CHECK(f.on_request(each) == WEIR_FILTER_FAILED);
  CHECK(host.logged("uncaught exception in on_request: boom inside header_each", WEIR_LOG_ERROR));
}

TEST_CASE("barrier: a throwing Config constructor is a configuration error, logged and reported") {
  FakeHost host;
  WithConfigProbe probe([](weir::sdk::ConfigReader&) { throw std::runtime_error("boom config"); });
  auto cfg = host.configure(kProbeFilter, FakeConfig::table({{"use", "probe-filter"}}),
                            "routes[0].filters[0]");
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK(cfg.raw() == nullptr);
  CHECK(host.logged("uncaught exception in config_new: boom config", WEIR_LOG_ERROR));
  CHECK_MESSAGE(cfg.has_error("routes[0].filters[0]", "plugin error: boom config"),
                cfg.errors_text());
  CHECK(host.misuse().empty());
}

TEST_CASE("barrier: a Config constructor that throws bad_alloc") {
  FakeHost host;
  WithConfigProbe probe([](weir::sdk::ConfigReader&) { throw std::bad_alloc(); });
  auto cfg = host.configure(kProbeFilter, FakeConfig::table({{"use", "probe-filter"}}));
  CHECK(cfg.status() == WEIR_ERROR_NOMEM);
  CHECK(host.logged("config_new: out of memory", WEIR_LOG_ERROR));
}

TEST_CASE("barrier: throwing Instance constructor and start") {
  FakeHost host;
  SUBCASE("instance_new") {
    auto cfg = host.configure(kThrowingInstance, FakeConfig::table({{"use", "throwing-instance"}}));
    REQUIRE(cfg.ok());
    auto d = cfg.discovery();
    CHECK(d.status() == WEIR_ERROR);
    CHECK(d.raw() == nullptr);
    CHECK(host.logged("uncaught exception in instance_new: boom instance", WEIR_LOG_ERROR));
  }
  SUBCASE("start, and a timer callback") {
    auto cfg = host.configure(kThrowingStart, FakeConfig::table({{"use", "throwing-start"}}));
    auto d = cfg.discovery();
    CHECK(d.start() == WEIR_ERROR);
    CHECK(host.logged("uncaught exception in start: boom start", WEIR_LOG_ERROR));
    CHECK(host.pending_timers() == 2);
    CHECK(host.fire_due(10) == 1);
    CHECK(host.logged("uncaught exception in timer callback: boom timer", WEIR_LOG_ERROR));
    CHECK(host.fire_due(10) == 1); // the next timer still runs
    CHECK(host.pending_timers() == 0);
    CHECK(host.misuse().empty());
  }
}
