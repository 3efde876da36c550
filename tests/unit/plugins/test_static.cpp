// discovery/static through the fake host.
#include "common.hpp"

using namespace plugin_tests;

namespace {

const std::string kPath = "upstreams.app.discovery";

struct Static {
  FakeHost host;
  weir::testing::FakePlugin plugin = host.load_library(WEIR_TEST_PLUGIN_STATIC);
  weir::testing::FakeModule module = plugin.module(WEIR_KIND_DISCOVERY, "static");

  weir::testing::FakeConfigured configure(const weir::testing::FakeValue& targets) {
    return host.configure(module, FakeConfig::table({{"use", "static"}, {"targets", targets}}),
                          kPath);
  }
  /// Configure a single target and return the errors (empty when accepted).
  std::string single(const std::string& address) {
    auto cfg = configure(FakeConfig::array({address}));
    return cfg.errors_text();
  }
};

} // namespace

TEST_CASE("static: descriptor") {
  Static t;
  check_descriptor(t.plugin, "discovery-static", WEIR_KIND_DISCOVERY, "static");
}

TEST_CASE("static: publishes string and table targets on start") {
  Static t;
  auto cfg = t.configure(FakeConfig::array(
      {"127.0.0.1:9001", FakeConfig::table({{"address", "127.0.0.1:9002"}, {"weight", 2}})}));
  REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
  auto d = t.host
               .configure(t.module,
                          FakeConfig::table({{"use", "static"},
                                             {"targets", FakeConfig::array({"127.0.0.1:9001"})}}),
                          kPath)
               .discovery();
  auto inst = cfg.discovery();
  REQUIRE(inst.ok());
  CHECK(inst.published().empty()); // nothing before start
  CHECK(inst.start() == WEIR_OK);
  REQUIRE(inst.published().size() == 1);
  const std::vector<FakeTarget> expected = {{"127.0.0.1:9001", 1, true, ""},
                                            {"127.0.0.1:9002", 2, true, ""}};
  CHECK(inst.last_published() == expected);
  CHECK(d.published().empty()); // each instance publishes its own set
  CHECK(t.host.misuse().empty());
}

TEST_CASE("static: accepted address forms") {
  Static t;
  for (const char* address :
       {"127.0.0.1:80", "10.1.2.3:65535", "[::1]:8080", "[2001:db8::1]:443", "backend:80",
        "api.internal.example:8443", "a-b.c:1", "localhost:9000"}) {
    CAPTURE(address);
    CHECK(t.single(address).empty());
  }
  CHECK(t.host.misuse().empty());
}

TEST_CASE("static: rejected addresses name the problem") {
  Static t;
  struct Case {
    const char* address;
    const char* message;
  };
  const Case cases[] = {
      {"127.0.0.1", "missing port"},
      {"backend", "missing port"},
      {"127.0.0.1:", "missing port"},
      {"127.0.0.1:0", "port 0 is out of range (1..65535)"},
      {"127.0.0.1:65536", "port 65536 is out of range (1..65535)"},
      {"127.0.0.1:http", "invalid port 'http'"},
      {"999.1.1.1:80", "'999.1.1.1' is not an IPv4 address"},
      {"1.2.3:80", "'1.2.3' is not an IPv4 address"},
      {"::1:80", "an IPv6 address must be in brackets"},
      {"[::1]", "missing port"},
      {"[::1:80", "missing ']'"},
      {"[zz::1]:80", "'zz::1' is not an IPv6 address"},
      {"[127.0.0.1]:80", "'127.0.0.1' is not an IPv6 address"},
      {"bad_host:80", "'bad_host' is not a valid host name"},
      {"-bad:80", "'-bad' is not a valid host name"},
      {"a..b:80", "'a..b' is not a valid host name"},
      {":80", "missing host"},
      {"unix:run/app.sock", "a unix socket path must be absolute"},
      {"", "empty address"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.address);
    auto cfg = t.configure(FakeConfig::array({c.address}));
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[0]", c.message), cfg.errors_text());
    CHECK(cfg.errors().size() == 1);
  }
}

TEST_CASE("static: table entries: weight range, required address, unknown keys") {
  Static t;
  SUBCASE("weight 0 and 10001 are out of range, 1 and 10000 are fine") {
    auto cfg = t.configure(FakeConfig::array({
        FakeConfig::table({{"address", "10.0.0.1:80"}, {"weight", 0}}),
        FakeConfig::table({{"address", "10.0.0.2:80"}, {"weight", 10001}}),
        FakeConfig::table({{"address", "10.0.0.3:80"}, {"weight", 1}}),
        FakeConfig::table({{"address", "10.0.0.4:80"}, {"weight", 10000}}),
    }));
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[0].weight", "must be between 1 and 10000, got 0"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".targets[1].weight", "must be between 1 and 10000, got 10001"));
    CHECK(cfg.errors().size() == 2);
  }
  SUBCASE("weight must be an integer") {
    auto cfg = t.configure(
        FakeConfig::array({FakeConfig::table({{"address", "10.0.0.1:80"}, {"weight", "2"}})}));
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[0].weight", "expected an integer, got a string"),
                  cfg.errors_text());
  }
  SUBCASE("address is required; a misspelt key gets a suggestion") {
    auto cfg = t.configure(FakeConfig::array({FakeConfig::table({{"adress", "10.0.0.1:80"}})}));
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[0].adress",
                                "unknown key 'adress' (did you mean 'address'?)"),
                  cfg.errors_text());
    CHECK(cfg.has_error(kPath + ".targets[0]", "missing required key 'address'"));
  }
  SUBCASE("a bad address inside a table is reported at the address") {
    auto cfg = t.configure(FakeConfig::array({FakeConfig::table({{"address", "nope"}})}));
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[0].address", "missing port"), cfg.errors_text());
  }
  SUBCASE("an entry of another type") {
    auto cfg = t.configure(FakeConfig::array({"10.0.0.1:80", 42}));
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[1]",
                                "expected an address string or a table { address = \"...\", "
                                "weight = N }, got an integer"),
                  cfg.errors_text());
  }
}

TEST_CASE("static: the target list itself") {
  Static t;
  SUBCASE("missing") {
    auto cfg = t.host.configure(t.module, FakeConfig::table({{"use", "static"}}), kPath);
    CHECK(cfg.status() == WEIR_ERROR_CONFIG);
    CHECK_MESSAGE(cfg.has_error(kPath, "missing required key 'targets'"), cfg.errors_text());
  }
  SUBCASE("empty") {
    auto cfg = t.configure(FakeConfig::array({}));
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets", "at least one target is required"),
                  cfg.errors_text());
  }
  SUBCASE("not an array") {
    auto cfg = t.configure("127.0.0.1:80");
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets", "expected an array, got a string"),
                  cfg.errors_text());
  }
  SUBCASE("duplicates") {
    auto cfg = t.configure(FakeConfig::array(
        {"10.0.0.1:80", FakeConfig::table({{"address", "10.0.0.1:80"}, {"weight", 3}})}));
    CHECK_MESSAGE(cfg.has_error(kPath + ".targets[1]", "duplicate target '10.0.0.1:80' (also at " +
                                                           kPath + ".targets[0])"),
                  cfg.errors_text());
  }
  SUBCASE("misspelt top-level key") {
    auto cfg = t.host.configure(
        t.module, FakeConfig::table({{"use", "static"}, {"target", FakeConfig::array({"a:1"})}}),
        kPath);
    CHECK_MESSAGE(
        cfg.has_error(kPath + ".target", "unknown key 'target' (did you mean 'targets'?)"),
        cfg.errors_text());
    CHECK(cfg.has_error(kPath, "missing required key 'targets'"));
  }
  SUBCASE("every bad entry is reported at once") {
    auto cfg = t.configure(FakeConfig::array({"a", "b:1", "c", "[::1]"}));
    CHECK(cfg.errors().size() == 3);
    CHECK(cfg.has_error(kPath + ".targets[0]", "missing port"));
    CHECK(cfg.has_error(kPath + ".targets[2]", "missing port"));
    CHECK(cfg.has_error(kPath + ".targets[3]", "missing port"));
  }
  CHECK(t.host.misuse().empty());
}
