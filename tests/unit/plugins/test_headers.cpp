// filters/headers through the fake host.
#include "common.hpp"

#include <string>
#include <vector>

using namespace plugin_tests;

namespace {

const std::string kPath = "routes[0].filters[1]";

struct Headers {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_HEADERS);
  weir::testing::FakeModule module = plugin.module(WEIR_KIND_FILTER, "headers");

  weir::testing::FakeConfigured
  configure(std::vector<std::pair<std::string, weir::testing::FakeValue>> keys) {
    keys.insert(keys.begin(), {"use", "headers"});
    return host.configure(module, FakeConfig::table(std::move(keys)), kPath);
  }
  weir::testing::FakeFilter
  filter(std::vector<std::pair<std::string, weir::testing::FakeValue>> keys) {
    auto cfg = configure(std::move(keys));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto f = cfg.filter();
    REQUIRE(f.ok());
    return f;
  }
};

using Pairs = std::vector<std::pair<std::string, std::string>>;

} // namespace

TEST_CASE("headers: descriptor") {
  Headers t;
  check_descriptor(t.plugin, "filter-headers", WEIR_KIND_FILTER, "headers");
}

TEST_CASE("headers: request edits, case-insensitive names, order kept") {
  Headers t;
  auto f = t.filter({
      {"request-remove", FakeConfig::array({"X-DEBUG", "cookie"})},
      {"request-set", FakeConfig::table({{"x-forwarded-proto", "https"}})},
      {"request-add", FakeConfig::table({{"Via", "1.1 weir"}})},
  });
  FakeHttp http;
  http.request_headers = {{"Host", "example.test"},
                          {"X-Forwarded-Proto", "http"},
                          {"x-debug", "1"},
                          {"Via", "1.1 edge"},
                          {"X-Debug", "2"},
                          {"Accept", "*/*"},
                          {"X-FORWARDED-PROTO", "ftp"}};
  CHECK(f.on_request(http) == WEIR_FILTER_CONTINUE);
  const Pairs expected = {{"Host", "example.test"},
                          {"x-forwarded-proto", "https"},
                          {"Via", "1.1 edge"},
                          {"Accept", "*/*"},
                          {"Via", "1.1 weir"}};
  CHECK(http.request_headers.all() == expected);
  CHECK(http.response_headers.size() == 0);
  CHECK(http.misuse.empty());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("headers: remove, then set, then add") {
  Headers t;
  auto f = t.filter({
      {"response-add", FakeConfig::table({{"x-a", "added"}})},
      {"response-set", FakeConfig::table({{"X-A", "set"}})},
      {"response-remove", FakeConfig::array({"x-a"})},
  });
  FakeHttp http;
  http.upstream_response(
      200, {{"x-a", "upstream-1"}, {"content-type", "text/html"}, {"X-A", "upstream-2"}});
  CHECK(f.on_response(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.response_headers.get_all("x-a") == std::vector<std::string>{"set", "added"});
  CHECK(http.response_headers.get("Content-Type") == "text/html");
}

TEST_CASE("headers: request edits stay on the request, response edits on the response") {
  Headers t;
  auto f = t.filter({
      {"request-set", FakeConfig::table({{"x-req", "1"}})},
      {"response-set", FakeConfig::table({{"x-resp", "2"}})},
      {"response-remove", FakeConfig::array({"Server"})},
  });
  FakeHttp http;
  http.request_headers = {{"server", "client-sent"}};
  CHECK(f.on_request(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.request_headers.get("X-Req") == "1");
  CHECK(http.request_headers.has("server"));
  CHECK_FALSE(http.request_headers.has("x-resp"));

  http.upstream_response(200, {{"Server", "nginx"}, {"content-length", "0"}});
  CHECK(f.on_response(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.response_headers.get("x-resp") == "2");
  CHECK_FALSE(http.response_headers.has("server"));
  CHECK_FALSE(http.response_headers.has("x-req"));
  CHECK(http.misuse.empty());
}

TEST_CASE("headers: add keeps existing headers and several values") {
  Headers t;
  auto f = t.filter(
      {{"response-add", FakeConfig::table({{"set-cookie", "a=1"}, {"Set-Cookie", "b=2"}})}});
  FakeHttp http;
  http.upstream_response(200, {{"Set-Cookie", "up=0"}});
  CHECK(f.on_response(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.response_headers.get_all("SET-COOKIE") ==
        std::vector<std::string>{"up=0", "a=1", "b=2"});
}

TEST_CASE("headers: configuration errors") {
  Headers t;
  SUBCASE("framing headers belong to weir") {
    auto cfg = t.configure({
        {"request-set", FakeConfig::table({{"Content-Length", "5"}})},
        {"response-remove", FakeConfig::array({"transfer-encoding"})},
    });
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(cfg.has_error(kPath + ".request-set.Content-Length", "frames the message"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".response-remove[0]", "frames the message"));
  }
  SUBCASE("invalid names") {
    auto cfg = t.configure({
        {"request-set", FakeConfig::table({{"bad header", "x"}, {"x-ok", "y"}})},
        {"response-remove", FakeConfig::array({"fine", "no:colon", ""})},
        {"request-add", FakeConfig::table({{"", "x"}})},
    });
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(
        cfg.has_error(kPath + ".request-set.\"bad header\"", "invalid header name 'bad header'"),
        cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".response-remove[1]", "invalid header name 'no:colon'"));
    CHECK(cfg.has_error(kPath + ".response-remove[2]", "invalid header name ''"));
    CHECK(cfg.has_error(kPath + ".request-add.\"\"", "invalid header name ''"));
    CHECK(cfg.errors().size() == 4);
  }
  SUBCASE("invalid values") {
    auto cfg = t.configure({
        {"response-add", FakeConfig::table({{"x-evil", "a\r\nSet-Cookie: pwned"}})},
        {"response-set", FakeConfig::table({{"x-nul", std::string("a\0b", 3)}, {"x-lf", "a\nb"}})},
    });
    CHECK(
        cfg.has_error(kPath + ".response-add.x-evil",
                      "invalid value for header 'x-evil': values must not contain CR, LF or NUL"));
    CHECK(cfg.has_error(kPath + ".response-set.x-nul", "must not contain CR, LF or NUL"));
    CHECK(cfg.has_error(kPath + ".response-set.x-lf", "must not contain CR, LF or NUL"));
  }
  SUBCASE("wrong types") {
    auto cfg = t.configure({
        {"request-set", FakeConfig::array({"x"})},
        {"request-add", FakeConfig::table({{"x-num", 5}})},
        {"request-remove", FakeConfig::array({"x-a", true})},
        {"response-remove", "server"},
    });
    CHECK_MESSAGE(cfg.has_error(kPath + ".request-set", "expected a table, got an array"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".request-add.x-num", "expected a string, got an integer"));
    CHECK(cfg.has_error(kPath + ".request-remove[1]", "expected a string, got a boolean"));
    CHECK(cfg.has_error(kPath + ".response-remove", "expected an array, got a string"));
  }
  SUBCASE("the same name twice in a set table, ignoring case") {
    auto cfg = t.configure({{"request-set", FakeConfig::table({{"X-A", "1"}, {"x-a", "2"}})}});
    CHECK_MESSAGE(cfg.has_error(kPath + ".request-set.x-a",
                                "header 'x-a' is set twice (as 'X-A'; names are case-insensitive)"),
                  cfg.errors_text());
  }
  SUBCASE("unknown keys get suggestions") {
    auto cfg = t.configure({{"request-sett", FakeConfig::table({})},
                            {"response_remove", FakeConfig::array({})},
                            {"colour", "blue"}});
    CHECK_MESSAGE(cfg.has_error(kPath + ".request-sett",
                                "unknown key 'request-sett' (did you mean 'request-set'?)"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".response_remove", "(did you mean 'response-remove'?)"));
    CHECK(cfg.has_error(kPath + ".colour",
                        "unknown key 'colour' (expected one of: request-set, request-add, "
                        "request-remove, response-set, response-add, response-remove)"));
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("headers: an empty configuration is valid but warned about") {
  Headers t;
  auto f = t.filter({});
  CHECK(t.host.logged("has nothing to do", WEIR_LOG_WARN));
  FakeHttp http;
  http.request_headers = {{"a", "1"}};
  CHECK(f.on_request(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.request_headers.size() == 1);
}
