// Unit test of the built plugin through the SDK's fake host (no weir needed).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <weir/testing/fake_host.hpp>

using weir::testing::FakeConfig;
using weir::testing::FakeHost;
using weir::testing::FakeHttp;

TEST_CASE("hello-header adds x-hello with the configured greeting") {
  FakeHost host;
  auto plugin = host.load_library(HELLO_HEADER_PLUGIN);
  REQUIRE(plugin.problems().empty());
  auto module = plugin.module(WEIR_KIND_FILTER, "hello-header");

  auto cfg =
      host.configure(module, FakeConfig::table({{"use", "hello-header"}, {"greeting", "hi"}}),
                     "routes[0].filters[0]");
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto filter = cfg.filter();
  FakeHttp http;
  http.upstream_response(200, {{"X-Hello", "upstream"}});
  CHECK(filter.on_response(http) == WEIR_FILTER_CONTINUE);
  CHECK(http.response_headers.get_all("x-hello") == std::vector<std::string>{"upstream", "hi"});
}

TEST_CASE("hello-header defaults to hello and rejects bad configuration") {
  FakeHost host;
  auto plugin = host.load_library(HELLO_HEADER_PLUGIN);
  auto module = plugin.module(WEIR_KIND_FILTER, "hello-header");
  auto filter = host.configure(module, FakeConfig::table({{"use", "hello-header"}})).filter();
  FakeHttp http;
  http.upstream_response(204);
  filter.on_response(http);
  CHECK(http.response_headers.get("X-HELLO") == "hello");

  auto bad =
      host.configure(module, FakeConfig::table({{"use", "hello-header"}, {"greting", "x"}}), "f");
  CHECK(bad.has_error("f.greting", "did you mean 'greeting'?"));
  auto crlf = host.configure(
      module, FakeConfig::table({{"use", "hello-header"}, {"greeting", "a\r\nb"}}), "f");
  CHECK(crlf.has_error("f.greeting", "must not contain CR, LF or NUL"));
}
