// filters/respond through the fake host.
#include "common.hpp"

#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

const std::string kPath = "routes[2].filters[0]";

struct Respond {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_RESPOND);
  weir::testing::FakeModule module = plugin.module(WEIR_KIND_FILTER, "respond");

  weir::testing::FakeConfigured
  configure(std::vector<std::pair<std::string, weir::testing::FakeValue>> keys) {
    keys.insert(keys.begin(), {"use", "respond"});
    return host.configure(module, FakeConfig::table(std::move(keys)), kPath);
  }
};

} // namespace

TEST_CASE("respond: descriptor") {
  Respond t;
  check_descriptor(t.plugin, "filter-respond", WEIR_KIND_FILTER, "respond");
}

TEST_CASE("respond: defaults answer 200, empty body, text/plain") {
  Respond t;
  auto cfg = t.configure({});
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto f = cfg.filter();
  FakeHttp http;
  http.path = "/anything";
  CHECK(f.on_request(http) == WEIR_FILTER_RESPONDED);
  REQUIRE(http.local_response);
  CHECK(http.local_response->status == 200);
  CHECK(http.local_response->body.empty());
  CHECK(http.local_response->content_type == "text/plain");
  CHECK(f.on_response(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.response_headers.get("content-type") == "text/plain");
  CHECK(http.misuse.empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("respond: status, body, content-type and extra headers") {
  Respond t;
  auto cfg = t.configure({
      {"status", 503},
      {"body", "down for maintenance\n"},
      {"content-type", "text/plain; charset=utf-8"},
      {"headers", FakeConfig::table({{"Retry-After", "120"}, {"cache-control", "no-store"}})},
  });
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto f = cfg.filter();
  CHECK(f.has_on_request());
  CHECK(f.has_on_response());
  for (int i = 0; i < 3; ++i) { // answers every request, the same way
    FakeHttp http;
    http.method = "POST";
    CHECK(f.on_request(http) == WEIR_FILTER_RESPONDED);
    REQUIRE(http.local_response);
    CHECK(http.local_response->status == 503);
    CHECK(http.local_response->body == "down for maintenance\n");
    CHECK(http.local_response->content_type == "text/plain; charset=utf-8");
    CHECK(f.on_response(http) == WEIR_FILTER_CONTINUE);
    CHECK(http.status == 503);
    CHECK(http.response_headers.get("retry-after") == "120");
    CHECK(http.response_headers.get("Cache-Control") == "no-store");
    CHECK(http.response_headers.count("retry-after") == 1);
    CHECK(http.misuse.empty());
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("respond: an empty content-type sends none") {
  Respond t;
  auto cfg = t.configure({{"status", 204}, {"content-type", ""}});
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto f = cfg.filter();
  FakeHttp http;
  CHECK(f.on_request(http) == WEIR_FILTER_RESPONDED);
  CHECK(http.local_response->status == 204);
  CHECK_FALSE(http.response_headers.has("content-type"));
}

TEST_CASE("respond: configuration errors") {
  Respond t;
  SUBCASE("status range") {
    for (int status : {0, 99, 100, 199, 600, -1}) {
      CAPTURE(status);
      auto cfg = t.configure({{"status", status}});
      CHECK(cfg.status() == WEIR_ERROR_CONFIG);
      CHECK_MESSAGE(cfg.has_error(kPath + ".status",
                                  "must be between 200 and 599, got " + std::to_string(status)),
                    cfg.errors_text());
    }
    for (int status : {200, 599}) {
      CHECK(t.configure({{"status", status}}).ok());
    }
  }
  SUBCASE("types") {
    auto cfg = t.configure({{"status", "200"},
                            {"body", 12},
                            {"content-type", false},
                            {"headers", FakeConfig::array({})}});
    CHECK_MESSAGE(cfg.has_error(kPath + ".status", "expected an integer, got a string"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".body", "expected a string, got an integer"));
    CHECK(cfg.has_error(kPath + ".content-type", "expected a string, got a boolean"));
    CHECK(cfg.has_error(kPath + ".headers", "expected a table, got an array"));
    CHECK(cfg.errors().size() == 4);
  }
  SUBCASE("header names and values") {
    auto cfg = t.configure(
        {{"content-type", "text/html\r\nx: y"},
         {"headers", FakeConfig::table(
                         {{"bad name", "1"}, {"x-ok", "a\nb"}, {"X-Dup", "1"}, {"x-dup", "2"}})}});
    CHECK_MESSAGE(cfg.has_error(kPath + ".content-type", "must not contain CR, LF or NUL"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".headers.\"bad name\"", "invalid header name 'bad name'"));
    CHECK(cfg.has_error(kPath + ".headers.x-ok", "must not contain CR, LF or NUL"));
    CHECK(cfg.has_error(kPath + ".headers.x-dup", "is set twice"));
  }
  SUBCASE("unknown keys") {
    auto cfg = t.configure({{"stauts", 404}, {"code", 404}});
    CHECK_MESSAGE(cfg.has_error(kPath + ".stauts", "unknown key 'stauts' (did you mean 'status'?)"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".code", "(expected one of: status, body, content-type, headers)"));
  }
  CHECK(t.host.misuse().empty());
}
