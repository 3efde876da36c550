// ABI 1.1 certificate functions: Host::install_certificate / remove_certificate, the fake host's
// records of them, and the test plugin cert-installer driven through the fake host.
#include "probe.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace sdk_tests;

namespace {

constexpr const char* kChain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                               "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
constexpr const char* kKey = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

/// A certs instance whose start() runs a probe with its Host.
std::function<weir_status_t(weir::sdk::Host)>& start_probe() {
  static std::function<weir_status_t(weir::sdk::Host)> fn;
  return fn;
}
struct ProbeCerts {
  explicit ProbeCerts(weir::sdk::Host h) : host(h) {}
  weir_status_t start() { return start_probe() ? start_probe()(host) : WEIR_OK; }
  weir::sdk::Host host;
};
constexpr weir_module_t kCerts = weir::sdk::certs_module<weir::sdk::NoConfig, ProbeCerts>("probe");

struct ProbeFilter {
  explicit ProbeFilter(weir::sdk::Host h) : host(h) {}
  weir::sdk::FilterResult on_request(weir::sdk::Http&) {
    status = host.install_certificate(kChain, kKey);
    return weir::sdk::FilterResult::Continue;
  }
  weir::sdk::Host host;
  static inline weir_status_t status = WEIR_OK;
};
constexpr weir_module_t kFilter =
    weir::sdk::filter_module<weir::sdk::NoConfig, ProbeFilter>("probe-filter");

/// A scratch directory removed at the end of the test.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/weir-sdk-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string path;
};

} // namespace

TEST_CASE("certificates: the ABI 1.1 layout") {
  CHECK(WEIR_ABI_MAJOR == 1);
  CHECK(WEIR_ABI_MINOR >= 1);
  // Appended after the last 1.0 function: a 1.0 plugin sees the table it knows.
  CHECK(offsetof(weir_host_api_t, install_certificate) ==
        offsetof(weir_host_api_t, http_respond) + sizeof(void*));
  CHECK(offsetof(weir_host_api_t, remove_certificate) ==
        offsetof(weir_host_api_t, install_certificate) + sizeof(void*));
  // ABI 1.2 appends after it (test_requests.cpp checks the rest of the table).
  CHECK(offsetof(weir_host_api_t, probe_start) ==
        offsetof(weir_host_api_t, remove_certificate) + sizeof(void*));
  CHECK(offsetof(weir_certificate_t, cert_pem) == 8);
  CHECK(sizeof(weir_certificate_t) == 8 + 2 * sizeof(weir_str_t));
}

TEST_CASE("certificates: Host installs and removes through the host, which records both") {
  FakeHost host;
  auto cfg = host.configure(kCerts, FakeConfig::table({{"use", "probe"}}), "certs");
  REQUIRE(cfg.ok());
  start_probe() = [](weir::sdk::Host h) {
    CHECK(h.can_install_certificates());
    CHECK(h.install_certificate(kChain, kKey) == WEIR_OK);
    CHECK(h.remove_certificate("a.example.test") == WEIR_OK);
    CHECK(h.remove_certificate("") == WEIR_ERROR_INVALID);
    return WEIR_OK;
  };
  auto certs = cfg.certs();
  CHECK(certs.start() == WEIR_OK);
  start_probe() = nullptr;
  REQUIRE(host.certificate_installs().size() == 1);
  CHECK(host.certificate_installs()[0].source == certs.name());
  CHECK(host.certificate_installs()[0].cert_pem == kChain);
  CHECK(host.certificate_installs()[0].key_pem == kKey);
  REQUIRE(host.certificate_removals().size() == 1);
  CHECK(host.certificate_removals()[0].name == "a.example.test");
  CHECK(host.certificate_removals()[0].source == certs.name());
  CHECK(host.misuse().empty());
  host.clear_records();
  CHECK(host.certificate_installs().empty());
  CHECK(host.certificate_removals().empty());
}

TEST_CASE("certificates: what the fake host refuses") {
  FakeHost host;
  auto cfg = host.configure(kCerts, FakeConfig::table({{"use", "probe"}}), "certs");
  REQUIRE(cfg.ok());
  auto certs = cfg.certs();

  SUBCASE("text that is not PEM") {
    start_probe() = [](weir::sdk::Host h) {
      CHECK(h.install_certificate("not a certificate", kKey) == WEIR_ERROR_INVALID);
      CHECK(h.install_certificate(kChain, "") == WEIR_ERROR_INVALID);
      return WEIR_OK;
    };
    CHECK(certs.start() == WEIR_OK);
    CHECK(host.certificate_installs().empty());
    CHECK(host.misuse().empty());
  }
  SUBCASE("a refusal the test asks for") {
    host.set_install_certificate_status(WEIR_ERROR_INVALID);
    host.set_remove_certificate_status(WEIR_ERROR_NOT_FOUND);
    start_probe() = [](weir::sdk::Host h) {
      CHECK(h.install_certificate(kChain, kKey) == WEIR_ERROR_INVALID);
      CHECK(h.remove_certificate("x.test") == WEIR_ERROR_NOT_FOUND);
      return WEIR_OK;
    };
    CHECK(certs.start() == WEIR_OK);
    CHECK(host.certificate_installs().empty());
    CHECK(host.certificate_removals().empty());
  }
  SUBCASE("a host older than ABI 1.1") {
    host.api_table().struct_size =
        static_cast<uint32_t>(offsetof(weir_host_api_t, install_certificate));
    host.api_table().abi_minor = 0;
    start_probe() = [](weir::sdk::Host h) {
      CHECK_FALSE(h.can_install_certificates());
      CHECK(h.install_certificate(kChain, kKey) == WEIR_ERROR_UNSUPPORTED);
      CHECK(h.remove_certificate("x.test") == WEIR_ERROR_UNSUPPORTED);
      return WEIR_OK;
    };
    CHECK(certs.start() == WEIR_OK);
    CHECK(host.certificate_installs().empty());
  }
  start_probe() = nullptr;
}

TEST_CASE("certificates: a worker-thread object may not install (misuse)") {
  FakeHost host;
  auto cfg = host.configure(kFilter, FakeConfig::table({{"use", "probe-filter"}}), "filters[0]");
  REQUIRE(cfg.ok());
  auto filter = cfg.filter();
  FakeHttp http;
  CHECK(filter.on_request(http) == WEIR_FILTER_CONTINUE);
  CHECK(ProbeFilter::status == WEIR_ERROR_STATE);
  CHECK(host.certificate_installs().empty());
  REQUIRE(host.misuse().size() == 1);
  CHECK(host.misuse()[0].find("install_certificate from probe-filter#") == 0);
}

#ifdef WEIR_TEST_PLUGIN_CERT_INSTALLER
TEST_CASE("cert-installer: installs after its delay and removes after the remove delay") {
  TempDir dir;
  const std::string chain = dir.file("chain.pem", kChain);
  const std::string key = dir.file("key.pem", kKey);
  FakeHost host;
  auto plugin = host.load_library(WEIR_TEST_PLUGIN_CERT_INSTALLER);
  REQUIRE(plugin.problems().empty());
  CHECK(plugin.descriptor()->abi_minor == WEIR_ABI_MINOR);

  SUBCASE("the certs module") {
    auto cfg = host.configure(plugin.module(WEIR_KIND_CERTS, "cert-installer"),
                              FakeConfig::table({{"use", "cert-installer"},
                                                 {"cert", chain},
                                                 {"key", key},
                                                 {"delay", "2s"},
                                                 {"remove", "x.test"},
                                                 {"remove-delay", "3s"}}),
                              "certs");
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    {
      auto certs = cfg.certs();
      CHECK(certs.start() == WEIR_OK);
      host.fire_due(1999);
      CHECK(host.certificate_installs().empty());
      host.fire_due(1);
      REQUIRE(host.certificate_installs().size() == 1);
      CHECK(host.certificate_installs()[0].cert_pem == kChain);
      CHECK(host.certificate_installs()[0].key_pem == kKey);
      CHECK(host.logged("installed certificate " + chain, WEIR_LOG_INFO));
      host.fire_due(2999);
      CHECK(host.certificate_removals().empty());
      host.fire_due(1);
      REQUIRE(host.certificate_removals().size() == 1);
      CHECK(host.certificate_removals()[0].name == "x.test");
      CHECK(host.logged("removed certificate x.test", WEIR_LOG_INFO));
    }
    CHECK(host.misuse().empty());
  }

  SUBCASE("the health module starts with the first targets, waits for its trigger file") {
    const std::string trigger = dir.path + "/go";
    auto cfg = host.configure(
        plugin.module(WEIR_KIND_HEALTH, "cert-installer"),
        FakeConfig::table(
            {{"use", "cert-installer"}, {"cert", chain}, {"key", key}, {"trigger", trigger}}),
        "upstreams.app.health");
    REQUIRE_MESSAGE(cfg.ok(), cfg.errors_text());
    {
      auto health = cfg.health();
      CHECK(health.set_targets({{"127.0.0.1:1"}}) == WEIR_OK);
      host.fire_due(500);
      CHECK(host.certificate_installs().empty());
      dir.file("go", "");
      host.fire_due(50);
      CHECK(host.certificate_installs().size() == 1);
      CHECK(health.set_targets({{"127.0.0.1:2"}}) == WEIR_OK); // starts once only
      host.fire_due(1000);
      CHECK(host.certificate_installs().size() == 1);
      CHECK(health.reports().empty());
    }
    CHECK(host.misuse().empty());
  }

  SUBCASE("configuration errors") {
    auto cfg = host.configure(plugin.module(WEIR_KIND_CERTS, "cert-installer"),
                              FakeConfig::table({{"use", "cert-installer"},
                                                 {"cert", dir.path + "/missing.pem"},
                                                 {"remove-delay", "1s"}}),
                              "certs");
    CHECK_FALSE(cfg.ok());
    CHECK(cfg.has_error("certs", "missing required key 'key'"));
    CHECK(cfg.has_error("certs.cert", "cannot read"));
    CHECK(cfg.has_error("certs.remove-delay", "only meaningful with 'remove'"));
  }

  SUBCASE("a host that refuses the certificate: the plugin logs it") {
    host.set_install_certificate_status(WEIR_ERROR_INVALID);
    auto cfg = host.configure(
        plugin.module(WEIR_KIND_CERTS, "cert-installer"),
        FakeConfig::table(
            {{"use", "cert-installer"}, {"cert", chain}, {"key", key}, {"remove", "x.test"}}),
        "certs");
    REQUIRE(cfg.ok());
    {
      auto certs = cfg.certs();
      CHECK(certs.start() == WEIR_OK);
      host.fire_due(10);
      CHECK(host.certificate_installs().empty());
      CHECK(host.certificate_removals().empty()); // nothing installed, nothing to remove
      CHECK(host.logged("failed with status -5", WEIR_LOG_ERROR));
    }
  }
}
#endif
