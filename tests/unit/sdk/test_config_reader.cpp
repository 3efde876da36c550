// weir::sdk::ConfigReader: typed getters, precise errors with paths, expect_only_keys.
#include "probe.hpp"

#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sdk_tests;
using namespace std::chrono_literals;
using weir::sdk::ConfigReader;

namespace {

struct NullFilter {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
constexpr weir_module_t kModule = weir::sdk::filter_module<ProbeConfig, NullFilter>("probe");

/// Run `fn` on a reader of `table` (with use = "probe" prepended), under path "m".
weir::testing::FakeConfigured
read(FakeHost& host, std::vector<std::pair<std::string, weir::testing::FakeValue>> table,
     std::function<void(ConfigReader&)> fn) {
  table.insert(table.begin(), {"use", "probe"});
  WithConfigProbe probe(std::move(fn));
  return host.configure(kModule, FakeConfig::table(std::move(table)), "m");
}

} // namespace

TEST_CASE("config: string, int, bool, double, duration with defaults") {
  FakeHost host;
  std::string s, s_def;
  std::optional<std::string> s_opt, s_absent;
  int64_t i = 0;
  uint16_t port = 0;
  int i_def = 0;
  bool b = false, b_def = true;
  double d = 0, d_int = 0;
  std::chrono::milliseconds ms1{}, ms2{}, ms3{}, ms_def{};
  auto cfg = read(host,
                  {{"name", "x"},
                   {"count", 42},
                   {"port", 8080},
                   {"on", true},
                   {"ratio", 0.25},
                   {"whole", 3},
                   {"a", "250ms"},
                   {"b", "1h"},
                   {"c", 1500}},
                  [&](ConfigReader& r) {
                    s = r.get_string("name", "def");
                    s_def = r.get_string("nope", "def");
                    s_opt = r.get_string("name");
                    s_absent = r.get_string("nope");
                    i = r.get_int<int64_t>("count", 0, 0, 100);
                    port = r.get_int<uint16_t>("port", 1, 1);
                    i_def = r.get_int("missing", 7);
                    b = r.get_bool("on", false);
                    b_def = r.get_bool("missing", true);
                    d = r.get_double("ratio", 1.0, 0.0, 1.0);
                    d_int = r.get_double("whole", 0.0);
                    ms1 = r.get_duration("a", 1s);
                    ms2 = r.get_duration("b", 1s);
                    ms3 = r.get_duration("c", 1s);
                    ms_def = r.get_duration("missing", 5s);
                    CHECK(r.ok());
                    CHECK(r.path() == "m");
                    CHECK(r.is_table());
                    CHECK(r.size() == 10);
                  });
  CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  CHECK(s == "x");
  CHECK(s_def == "def");
  CHECK(s_opt == "x");
  CHECK_FALSE(s_absent);
  CHECK(i == 42);
  CHECK(port == 8080);
  CHECK(i_def == 7);
  CHECK(b);
  CHECK(b_def);
  CHECK(d == doctest::Approx(0.25));
  CHECK(d_int == doctest::Approx(3.0));
  CHECK(ms1 == 250ms);
  CHECK(ms2 == 1h);
  CHECK(ms3 == 1500ms);
  CHECK(ms_def == 5s);
}

TEST_CASE("config: type and range errors are precise and keep reading") {
  FakeHost host;
  auto cfg = read(host,
                  {{"name", 5},
                   {"count", 101},
                   {"low", -3},
                   {"high", 70000},
                   {"port", "80"},
                   {"on", "yes"},
                   {"ratio", 1.5},
                   {"ratio2", "x"},
                   {"slow", "5 seconds"},
                   {"fast", "10ms"},
                   {"neg", -5}},
                  [&](ConfigReader& r) {
                    CHECK(r.get_string("name", "d") == "d");
                    CHECK(r.get_int<int64_t>("count", 1, 0, 100) == 1);
                    CHECK(r.get_int<int64_t>("low", 1, 0) == 1);
                    CHECK(r.get_int<uint16_t>("high", 9) == 9);
                    CHECK(r.get_int<int>("port", 9) == 9);
                    CHECK(r.get_bool("on", false) == false);
                    CHECK(r.get_double("ratio", 0.5, 0.0, 1.0) == doctest::Approx(0.5));
                    CHECK(r.get_double("ratio2", 0.5) == doctest::Approx(0.5));
                    CHECK(r.get_duration("slow", 1s) == 1s);
                    CHECK(r.get_duration("fast", 1s, 100ms, 1min) == 1s);
                    CHECK(r.get_duration("neg", 1s) == 1s);
                    CHECK(r.error_count() == 11);
                  });
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("m.name", "expected a string, got an integer"), cfg.errors_text());
  CHECK(cfg.has_error("m.count", "must be between 0 and 100, got 101"));
  CHECK(cfg.has_error("m.low", "must be at least 0, got -3"));
  CHECK(cfg.has_error("m.high", "must be between 0 and 65535, got 70000"));
  CHECK(cfg.has_error("m.port", "expected an integer, got a string"));
  CHECK(cfg.has_error("m.on", "expected a boolean, got a string"));
  CHECK(cfg.has_error("m.ratio", "must be between 0 and 1, got 1.5"));
  CHECK(cfg.has_error("m.ratio2", "expected a number, got a string"));
  CHECK(cfg.has_error("m.slow", "expected a duration such as \"250ms\", \"5s\" or \"1h\" (or an "
                                "integer of milliseconds), got a string \"5 seconds\""));
  CHECK(cfg.has_error("m.fast", "must be between 100ms and 60000ms, got 10ms"));
  CHECK(cfg.has_error("m.neg", "expected a duration"));
  CHECK(cfg.errors().size() == 11);
  CHECK(host.misuse().empty());
}

TEST_CASE("config: arrays, sub-tables, string tables") {
  FakeHost host;
  std::vector<std::string> names, bad, absent;
  std::vector<std::pair<std::string, std::string>> table;
  std::string nested;
  auto cfg = read(host,
                  {{"names", FakeConfig::array({"a", "b"})},
                   {"bad", FakeConfig::array({"a", 1, "c", false})},
                   {"env", FakeConfig::table({{"A", "1"}, {"B", 2}, {"C", "3"}})},
                   {"sub", FakeConfig::table({{"inner", FakeConfig::table({{"x", "deep"}})}})},
                   {"not-table", 3}},
                  [&](ConfigReader& r) {
                    names = r.get_string_array("names");
                    bad = r.get_string_array("bad");
                    absent = r.get_string_array("absent");
                    table = r.get_string_table("env");
                    auto sub = r.get_table("sub");
                    REQUIRE(sub);
                    auto inner = sub->get_table("inner");
                    REQUIRE(inner);
                    nested = inner->get_string("x", "");
                    CHECK(inner->path() == "m.sub.inner");
                    CHECK_FALSE(r.get_table("absent"));
                    CHECK_FALSE(r.get_table("not-table"));
                    CHECK_FALSE(r.get_array("not-table"));
                    auto arr = r.get_array("names");
                    REQUIRE(arr);
                    REQUIRE(arr->elements().size() == 2);
                    CHECK(arr->at(1).path() == "m.names[1]");
                    CHECK_FALSE(arr->at(2).present());
                  });
  CHECK(names == std::vector<std::string>{"a", "b"});
  CHECK(bad.empty());
  CHECK(absent.empty());
  CHECK(table == std::vector<std::pair<std::string, std::string>>{{"A", "1"}, {"C", "3"}});
  CHECK(nested == "deep");
  CHECK_MESSAGE(cfg.has_error("m.bad[1]", "expected a string, got an integer"), cfg.errors_text());
  CHECK(cfg.has_error("m.bad[3]", "expected a string, got a boolean"));
  CHECK(cfg.has_error("m.env.B", "expected a string, got an integer"));
  CHECK(cfg.has_error("m.not-table", "expected a table, got an integer"));
  CHECK(cfg.has_error("m.not-table", "expected an array, got an integer"));
  CHECK(cfg.errors().size() == 5);
}

TEST_CASE("config: expect_only_keys reports every unknown key with a suggestion") {
  FakeHost host;
  bool all_known = true;
  auto cfg =
      read(host,
           {{"timeout", "1s"},
            {"retires", 3},
            {"Timeout", "2s"},
            {"max-conections", 5},
            {"zzz", 1},
            {"interval", "5s"}},
           [&](ConfigReader& r) {
             all_known = r.expect_only_keys({"timeout", "retries", "interval", "max-connections"});
           });
  CHECK_FALSE(all_known);
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK_MESSAGE(cfg.has_error("m.retires", "unknown key 'retires' (did you mean 'retries'?)"),
                cfg.errors_text());
  CHECK(cfg.has_error("m.Timeout", "unknown key 'Timeout' (did you mean 'timeout'?)"));
  CHECK(cfg.has_error("m.max-conections",
                      "unknown key 'max-conections' (did you mean 'max-connections'?)"));
  CHECK(cfg.has_error("m.zzz", "unknown key 'zzz' (expected one of: timeout, retries, interval, "
                               "max-connections)"));
  CHECK(cfg.errors().size() == 4); // `use` is always allowed
}

TEST_CASE("config: expect_only_keys on something that is not a table") {
  FakeHost host;
  auto cfg = read(host, {{"list", FakeConfig::array({1})}},
                  [&](ConfigReader& r) { CHECK_FALSE(r.child("list").expect_only_keys({"a"})); });
  CHECK_MESSAGE(cfg.has_error("m.list", "expected a table, got an array"), cfg.errors_text());
}

TEST_CASE("config: errors about absent keys land on the nearest present node") {
  FakeHost host;
  auto cfg = read(host, {{"sub", FakeConfig::table({})}}, [&](ConfigReader& r) {
    CHECK_FALSE(r.require_string("address"));
    r.child("sub").child("deeper").child("x").error("custom");
    CHECK_FALSE(r.child("missing").present());
    CHECK_FALSE(r.has("missing"));
    CHECK(r.has("sub"));
  });
  CHECK_MESSAGE(cfg.has_error("m", "missing required key 'address' (a string)"), cfg.errors_text());
  CHECK(cfg.has_error("m.sub", "custom"));
  CHECK(host.misuse().empty());
}

TEST_CASE("config: fail() stops reading and rejects without a log line") {
  FakeHost host;
  bool after = false;
  auto cfg = read(host, {{"mode", "bad"}}, [&](ConfigReader& r) {
    r.child("mode").fail("mode 'bad' is not supported");
    after = true; // not reached
  });
  CHECK_FALSE(after);
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK(cfg.has_error("m.mode", "mode 'bad' is not supported"));
  CHECK(host.logs().empty());
}

TEST_CASE("config: each() visits in order; an exception in the visitor does not cross the host") {
  FakeHost host;
  std::vector<std::string> keys;
  auto cfg = read(host, {{"b", 1}, {"a", 2}, {"c", 3}}, [&](ConfigReader& r) {
    r.each([&](std::string_view k, const ConfigReader&) { keys.emplace_back(k); });
    r.each([&](std::string_view k, const ConfigReader&) {
      if (k == "a") {
        throw std::invalid_argument("stop at a");
      }
    });
  });
  CHECK(keys == std::vector<std::string>{"use", "b", "a", "c"});
  CHECK(cfg.status() == WEIR_ERROR_CONFIG);
  CHECK(host.logged("uncaught exception in config_new: stop at a"));
}

TEST_CASE("config: NoConfig accepts only `use`") {
  FakeHost host;
  struct F {
    weir::sdk::FilterResult on_request(weir::sdk::Http&) {
      return weir::sdk::FilterResult::Continue;
    }
  };
  constexpr weir_module_t m = weir::sdk::filter_module<weir::sdk::NoConfig, F>("plain");
  CHECK(host.configure(m, FakeConfig::table({{"use", "plain"}})).ok());
  auto bad = host.configure(m, FakeConfig::table({{"use", "plain"}, {"x", 1}}), "f");
  CHECK(bad.has_error("f.x", "unknown key 'x' (this module takes no keys besides 'use')"));
}

TEST_CASE("config: a host of another ABI major is refused") {
  FakeHost host;
  host.api_table().abi_major = WEIR_ABI_MAJOR + 1;
  auto cfg = host.configure(kModule, FakeConfig::table({{"use", "probe"}}));
  CHECK(cfg.status() == WEIR_ERROR_UNSUPPORTED);
}

TEST_CASE("sdk helpers: edit distance, suggestions, header syntax") {
  using weir::sdk::did_you_mean;
  using weir::sdk::edit_distance;
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("weight", "wieght") == 1); // transposition
  CHECK(edit_distance("Targets", "targets") == 0);
  CHECK(edit_distance("kitten", "sitting") == 3);
  const std::vector<std::string_view> keys = {"address", "weight"};
  CHECK(did_you_mean("adress", keys) == "address");
  CHECK(did_you_mean("wieght", keys) == "weight");
  CHECK(did_you_mean("colour", keys).empty());
  CHECK(did_you_mean("x", keys).empty());

  CHECK(weir::sdk::is_header_name("X-Forwarded-For"));
  CHECK(weir::sdk::is_header_name("!#$%&'*+-.^_`|~09azAZ"));
  CHECK_FALSE(weir::sdk::is_header_name(""));
  CHECK_FALSE(weir::sdk::is_header_name("a b"));
  CHECK_FALSE(weir::sdk::is_header_name("a:b"));
  CHECK_FALSE(weir::sdk::is_header_name("é"));
  CHECK(weir::sdk::is_header_value(""));
  CHECK(weir::sdk::is_header_value("text/html; charset=utf-8\t"));
  CHECK_FALSE(weir::sdk::is_header_value("a\rb"));
  CHECK_FALSE(weir::sdk::is_header_value("a\nb"));
  CHECK_FALSE(weir::sdk::is_header_value(std::string_view("a\0b", 3)));
  CHECK(weir::sdk::iequals("Content-Type", "content-TYPE"));
  CHECK_FALSE(weir::sdk::iequals("a", "ab"));
  CHECK(weir::sdk::cat("a", 1, '-', 2.5) == "a1-2.5");
}

TEST_CASE("config: a range error names the bound that was crossed") {
  FakeHost host;
  auto cfg = read(host, {{"neg", -1}, {"big", 70000}, {"low", 0}, {"small", -0.5}, {"large", 2.5}},
                  [&](ConfigReader& r) {
                    CHECK(r.get_int<uint32_t>("neg", 5, 0, 1000) == 5); // below an unsigned 0
                    CHECK(r.get_int<uint16_t>("big", 5, 1) == 5);       // above the type's max
                    CHECK(r.get_int<uint32_t>("low", 5, 1) == 5);
                    CHECK(r.get_double("small", 1.0, 0.0) == doctest::Approx(1.0));
                    CHECK(r.get_double("large", 1.0, -std::numeric_limits<double>::infinity(),
                                       2.0) == doctest::Approx(1.0));
                  });
  CHECK_MESSAGE(cfg.has_error("m.neg", "must be between 0 and 1000, got -1"), cfg.errors_text());
  CHECK(cfg.has_error("m.big", "must be between 1 and 65535, got 70000"));
  CHECK(cfg.has_error("m.low", "must be at least 1, got 0"));
  CHECK(cfg.has_error("m.small", "must be at least 0, got -0.5"));
  CHECK(cfg.has_error("m.large", "must be at most 2, got 2.5"));
  CHECK(cfg.errors().size() == 5);
}
