// health-active's http module through the fake host: its keys, the request it asks the host for,
// and how it judges the response.
#include "common.hpp"

using namespace health_tests;

namespace {

struct Http {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_HEALTH_ACTIVE);
  weir::testing::FakeModule module = plugin.module(WEIR_KIND_HEALTH, "http");

  FakeConfigured configure(std::vector<std::pair<std::string, FakeValue>> keys = {}) {
    return host.configure(module, table("http", std::move(keys)), kPath);
  }
  /// The one fetch running now.
  weir::testing::FakeFetch running() {
    const auto pending = host.pending_fetches();
    REQUIRE(pending.size() == 1);
    return pending[0];
  }
};

/// fall 1, rise 1, no jitter: every check result that changes the state is reported.
std::vector<std::pair<std::string, FakeValue>>
eager(std::vector<std::pair<std::string, FakeValue>> more = {}) {
  return with_defaults({{"interval", "1s"}, {"jitter", 0}, {"fall", 1}, {"rise", 1}},
                       std::move(more));
}

} // namespace

TEST_CASE("http: configuration errors name the key and the problem") {
  Http t;
  struct Case {
    std::vector<std::pair<std::string, FakeValue>> keys;
    std::string path;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"method", "G T"}}, kPath + ".method", "\"G T\" is not a valid method"},
      {{{"method", "CONNECT"}}, kPath + ".method", "CONNECT cannot be used"},
      {{{"path", "healthz"}}, kPath + ".path", "must start with \"/\", got \"healthz\""},
      {{{"path", "/a b"}}, kPath + ".path", "must not contain spaces"},
      {{{"path", "/a#frag"}}, kPath + ".path", "must not contain a fragment"},
      {{{"host", "bad host"}}, kPath + ".host", "'bad host' is not a valid host name"},
      {{{"host", "app.example:0"}}, kPath + ".host", "port 0 is out of range (1..65535)"},
      {{{"host", "::1"}}, kPath + ".host", "an IPv6 address must be in brackets"},
      {{{"host", "[::g]"}}, kPath + ".host", "'::g' is not an IPv6 address"},
      {{{"scheme", "ftp"}}, kPath + ".scheme", "expected \"http\" or \"https\", got \"ftp\""},
      {{{"expect-status", FakeConfig::array(std::vector<FakeValue>{})}},
       kPath + ".expect-status",
       "at least one status or range is required"},
      {{{"expect-status", FakeConfig::array({99})}},
       kPath + ".expect-status[0]",
       "status 99 is out of range (100..599)"},
      {{{"expect-status", FakeConfig::array({200, "600"})}},
       kPath + ".expect-status[1]",
       "status 600 is out of range (100..599)"},
      {{{"expect-status", FakeConfig::array({"400-300"})}},
       kPath + ".expect-status[0]",
       "range \"400-300\" is empty"},
      {{{"expect-status", FakeConfig::array({"2xx"})}},
       kPath + ".expect-status[0]",
       "\"2xx\" is not a status or a range such as \"200-399\""},
      {{{"expect-status", FakeConfig::array({true})}},
       kPath + ".expect-status[0]",
       "expected a status (an integer) or a range such as \"200-399\", got a boolean"},
      {{{"body-contains", ""}}, kPath + ".body-contains", "must not be empty"},
      {{{"method", "HEAD"}, {"body-contains", "ok"}},
       kPath + ".body-contains",
       "cannot be used with method \"HEAD\""},
      {{{"body-contains", std::string(65537, 'x')}},
       kPath + ".body-contains",
       "is longer than the 65536 body bytes a check reads"},
      {{{"headers", FakeConfig::table({{"Host", "x"}})}},
       kPath + ".headers.Host",
       "set the Host header with the 'host' key"},
      {{{"headers", FakeConfig::table({{"bad name", "x"}})}},
       kPath + ".headers.\"bad name\"",
       "header name \"bad name\" is not a token"},
      {{{"headers", FakeConfig::table({{"x-a", "1\r\n2"}})}},
       kPath + ".headers.x-a",
       "must not contain CR, LF or NUL"},
      {{{"headers", FakeConfig::table({{"x-a", 1}})}},
       kPath + ".headers.x-a",
       "expected a string, got an integer"},
      {{{"headers", FakeConfig::table({{"Content-Length", "1"}})}},
       kPath + ".headers.Content-Length",
       "is set by weir"},
      {{{"headers", "x"}}, kPath + ".headers", "expected a table, got a string"},
      {{{"expect-stauts", 200}}, kPath + ".expect-stauts", "did you mean 'expect-status'?"},
  };
  for (const Case& c : cases) {
    auto cfg = t.configure(c.keys);
    CAPTURE(c.message);
    CHECK_FALSE(cfg.ok());
    CHECK_MESSAGE(cfg.has_error(c.path, c.message), cfg.errors_text());
    CHECK(cfg.errors().size() == 1);
  }
  // Accepted forms.
  for (const FakeValue& host :
       {FakeValue("app.example"), FakeValue("app.example:8443"), FakeValue("10.0.0.1"),
        FakeValue("[::1]:8080"), FakeValue("localhost")}) {
    auto cfg = t.configure({{"host", host}});
    CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  }
  auto cfg = t.configure({{"method", "OPTIONS"},
                          {"path", "/health/ready?verbose=1&x=%20"},
                          {"scheme", "https"},
                          {"expect-status", FakeConfig::array({200, "204", "300-302"})},
                          {"body-contains", "ok"},
                          {"headers", FakeConfig::table({{"Accept", "text/plain"}})}});
  CHECK_MESSAGE(cfg.ok(), cfg.errors_text());
  CHECK(t.configure({{"expect-status", 204}}).ok());
  CHECK(t.configure({{"expect-status", "200-299"}}).ok());
  CHECK(t.host.misuse().empty());
}

TEST_CASE("http: the request carries the method, URL, Host, headers and flags") {
  Http t;
  SUBCASE("defaults: GET / over http, Host from the target's address") {
    auto cfg = t.configure(eager({{"timeout", "750ms"}}));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:8080"}}) == WEIR_OK);
    fire_next(t.host);
    const auto f = t.running();
    CHECK(f.effective_method() == "GET");
    CHECK(f.url == "http://10.0.0.1/");
    CHECK(f.connect_to == "10.0.0.1:8080");
    CHECK(f.flags == 0);
    CHECK(f.timeout_ms == 750);
    CHECK(f.max_body == 1024);    // nothing to look for in the body
    CHECK(f.headers.size() == 0); // User-Agent, Host, Connection: the host's
    CHECK(f.body.empty());
    CHECK(f.source == health.name());
  }
  SUBCASE("every key set, https with the group's TLS settings") {
    auto cfg = t.configure(eager({{"method", "HEAD"},
                                  {"path", "/healthz?deep=1"},
                                  {"host", "app.example:8443"},
                                  {"scheme", "https"},
                                  {"headers", FakeConfig::table({{"Accept", "text/plain"},
                                                                 {"User-Agent", "probe/1"},
                                                                 {"x-check", "1"}})}}));
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"10.0.0.1:8443"}}) == WEIR_OK);
    fire_next(t.host);
    const auto f = t.running();
    CHECK(f.method == "HEAD");
    CHECK(f.url == "https://app.example:8443/healthz?deep=1");
    CHECK(f.connect_to == "10.0.0.1:8443");
    CHECK((f.flags & WEIR_FETCH_UPSTREAM_TLS) != 0);
    CHECK((f.flags & WEIR_FETCH_NO_VERIFY) == 0);
    CHECK(f.headers.all() ==
          std::vector<std::pair<std::string, std::string>>{
              {"Accept", "text/plain"}, {"User-Agent", "probe/1"}, {"x-check", "1"}});
  }
  SUBCASE("IPv6 and Unix socket targets") {
    auto cfg = t.configure(eager({{"path", "/ready"}}));
    REQUIRE(cfg.ok());
    auto health = cfg.health();
    REQUIRE(health.set_targets({{"[2001:db8::1]:8080"}, {"unix:/run/app.sock"}}) == WEIR_OK);
    t.host.fire_due(1000);
    const auto pending = t.host.pending_fetches();
    REQUIRE(pending.size() == 2);
    for (const auto& f : pending) {
      if (f.connect_to == "unix:/run/app.sock") {
        CHECK(f.url == "http://localhost/ready");
      } else {
        CHECK(f.connect_to == "[2001:db8::1]:8080");
        CHECK(f.url == "http://[2001:db8::1]/ready");
      }
    }
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("http: expect-status ranges decide") {
  Http t;
  auto cfg = t.configure(
      eager({{"path", "/healthz"}, {"expect-status", FakeConfig::array({"200", 204, "300-302"})}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  const auto respond = [&](uint32_t status) {
    fire_next(t.host);
    REQUIRE(t.host.complete_fetch(t.running().id, status));
  };
  for (uint32_t ok : {200u, 204u, 300u, 301u, 302u}) {
    respond(ok);
  }
  CHECK(health.reports().empty());
  respond(303);
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].reason ==
        "HTTP check GET /healthz: status 303 (expected 200, 204, 300-302); 1 consecutive failed "
        "check");
  respond(204);
  REQUIRE(health.reports().size() == 2);
  CHECK(health.reports()[1].reason ==
        "HTTP check GET /healthz: status 204; 1 consecutive successful check");
  respond(503);
  respond(404);
  REQUIRE(health.reports().size() == 3); // still unhealthy: no new report
  CHECK(t.host.misuse().empty());
}

TEST_CASE("http: the default expectation is 200-399") {
  Http t;
  auto cfg = t.configure({{"path", "/healthz"}, {"interval", "1s"}, {"jitter", 0}});
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  for (uint32_t status : {200u, 399u, 400u, 503u, 503u}) {
    fire_next(t.host);
    REQUIRE(t.host.complete_fetch(t.running().id, status));
  }
  REQUIRE(health.reports().size() == 1); // fall = 3 by default
  CHECK(health.reports()[0].reason ==
        "HTTP check GET /healthz: status 503 (expected 200-399); 3 consecutive failed checks");
}

TEST_CASE("http: body-contains") {
  Http t;
  auto cfg = t.configure(eager({{"body-contains", "ok"}}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}}) == WEIR_OK);
  fire_next(t.host);
  CHECK(t.running().max_body == 65536);
  REQUIRE(
      t.host.complete_fetch(t.running().id, 200, {{"content-type", "text/plain"}}, "status: ok\n"));
  CHECK(health.reports().empty());
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 200, {}, "status: degraded"));
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].reason ==
        "HTTP check GET /: body does not contain \"ok\"; 1 consecutive failed check");
  // The status is checked first.
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 500, {}, "ok"));
  CHECK(health.reports().size() == 1);
  // A long body: only its first 64 KiB are looked at.
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 200, {}, std::string(70000, '.') + "ok"));
  CHECK(health.reports().size() == 1);
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 200, {}, std::string(100, '.') + "ok"));
  REQUIRE(health.reports().size() == 2);
  CHECK(health.reports()[1].healthy);
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 200, {}, std::string(70000, '.') + "ok"));
  REQUIRE(health.reports().size() == 3);
  CHECK(health.reports()[2].reason ==
        "HTTP check GET /: body does not contain \"ok\" (in its first 65536 bytes); 1 "
        "consecutive failed check");
  CHECK(t.host.misuse().empty());
}

TEST_CASE("http: a failed exchange is a failed check, with the host's reason") {
  Http t;
  auto cfg = t.configure(eager({{"scheme", "https"}, {"timeout", "300ms"}}));
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:443"}}) == WEIR_OK);
  fire_next(t.host);
  REQUIRE(t.host.fail_fetch(t.running().id, "TLS handshake failed: certificate has expired"));
  REQUIRE(health.reports().size() == 1);
  CHECK(health.reports()[0].reason == "HTTPS check GET /: TLS handshake failed: certificate has "
                                      "expired; 1 consecutive failed check");
  fire_next(t.host);
  REQUIRE(t.host.complete_fetch(t.running().id, 200));
  fire_next(t.host);
  REQUIRE(t.host.fail_fetch(t.running().id, "timed out"));
  REQUIRE(health.reports().size() == 3);
  CHECK(health.reports()[2].reason ==
        "HTTPS check GET /: timed out after 300ms; 1 consecutive failed check");
  CHECK(t.host.misuse().empty());
}

TEST_CASE("http: removing a target cancels its running fetch") {
  Http t;
  auto cfg = t.configure(eager());
  REQUIRE(cfg.ok());
  auto health = cfg.health();
  REQUIRE(health.set_targets({{"10.0.0.1:80"}, {"10.0.0.2:80"}}) == WEIR_OK);
  t.host.fire_due(1000);
  REQUIRE(t.host.pending_fetches().size() == 2);
  REQUIRE(health.set_targets({{"10.0.0.2:80"}}) == WEIR_OK);
  const auto pending = t.host.pending_fetches();
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].connect_to == "10.0.0.2:80");
  for (const auto& f : t.host.fetches()) {
    CHECK(f.state == (f.connect_to == "10.0.0.1:80" ? FakeRequestState::Cancelled
                                                    : FakeRequestState::Pending));
  }
  CHECK(t.host.pending_timers() == 1); // the remaining fetch's guard
  CHECK(health.reports().empty());
  CHECK(t.host.misuse().empty());
}
