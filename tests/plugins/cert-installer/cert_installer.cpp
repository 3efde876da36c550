// Test plugin `cert-installer`: installs a certificate through the host API (ABI 1.1) on a timer,
// and can remove a name again later. It stands in for a certificate provider such as an ACME
// client in the certificate store's integration test.
//
//   { use = "cert-installer",
//     cert = "/path/chain.pem", key = "/path/key.pem",  # PEM files, read when installing
//     delay = "2s",                # after start (default 0)
//     trigger = "/path/go",        # optional: after `delay`, wait until this file exists
//     remove = "x.test",           # optional: a name to remove after the install
//     remove-delay = "1s",         # after the install (default 0)
//     remove-trigger = "/path/rm", # optional: after `remove-delay`, wait until this file exists
//     poll = "50ms" }              # how often trigger files are looked for (default 50ms)
//
// Two modules with the same behaviour: the `certs` module `cert-installer` (the shape a real
// provider has) and a `health` module `cert-installer`, which is what the integration test
// configures: weir has no configuration section for certificate providers yet, while a health
// checker runs on the control thread with timers, as a provider does. The health module starts
// when it first receives the targets and never reports anything.
//
// Log lines the test waits for: "installed certificate <cert path>", "removed certificate <name>".
#include <weir/sdk.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return std::nullopt;
  }
  return out.str();
}

bool file_exists(const std::string& path) {
  return std::ifstream(path).good();
}

struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys(
        {"cert", "key", "delay", "trigger", "remove", "remove-delay", "remove-trigger", "poll"});
    cert = cfg.require_string("cert").value_or("");
    key = cfg.require_string("key").value_or("");
    for (const auto& [name, path] : {std::pair{"cert", cert}, std::pair{"key", key}}) {
      if (!path.empty() && !read_file(path)) {
        cfg.child(name).error(weir::sdk::cat("cannot read \"", path, "\""));
      }
    }
    delay = cfg.get_duration("delay", 0ms);
    trigger = cfg.get_string("trigger", "");
    remove = cfg.get_string("remove", "");
    remove_delay = cfg.get_duration("remove-delay", 0ms);
    remove_trigger = cfg.get_string("remove-trigger", "");
    poll = cfg.get_duration("poll", 50ms, 1ms, 60s);
    if (remove.empty()) {
      for (const char* k : {"remove-delay", "remove-trigger"}) {
        if (cfg.has(k)) {
          cfg.child(k).error("only meaningful with 'remove' (the name to remove)");
        }
      }
    }
  }
  std::string cert;
  std::string key;
  std::chrono::milliseconds delay{0};
  std::string trigger;
  std::string remove;
  std::chrono::milliseconds remove_delay{0};
  std::string remove_trigger;
  std::chrono::milliseconds poll{50};
};

/// The behaviour shared by both modules. THREADING: the control thread (hooks and timers).
class Installer {
public:
  Installer(weir::sdk::Host host, const Config& config)
      : host_(host), config_(config), timers_(host) {}

  weir_status_t start() {
    if (!host_.can_install_certificates()) {
      host_.error("this weir cannot install certificates (it needs ABI 1.1)");
      return WEIR_ERROR_UNSUPPORTED;
    }
    timers_.after(config_.delay, [this] { when_exists(config_.trigger, [this] { install(); }); });
    return WEIR_OK;
  }

private:
  // Run `fn` now if `file` is empty or exists, else look again every `poll`.
  void when_exists(const std::string& file, std::function<void()> fn) {
    if (file.empty() || file_exists(file)) {
      fn();
      return;
    }
    timers_.after(config_.poll,
                  [this, file, fn = std::move(fn)]() mutable { when_exists(file, std::move(fn)); });
  }

  void install() {
    const auto cert = read_file(config_.cert);
    const auto key = read_file(config_.key);
    if (!cert || !key) {
      host_.error("cannot read \"", !cert ? config_.cert : config_.key, "\"");
      return;
    }
    const weir_status_t st = host_.install_certificate(*cert, *key);
    if (st != WEIR_OK) {
      host_.error("install_certificate(\"", config_.cert, "\") failed with status ", st);
      return;
    }
    host_.info("installed certificate ", config_.cert);
    if (!config_.remove.empty()) {
      timers_.after(config_.remove_delay,
                    [this] { when_exists(config_.remove_trigger, [this] { remove(); }); });
    }
  }

  void remove() {
    const weir_status_t st = host_.remove_certificate(config_.remove);
    if (st != WEIR_OK) {
      host_.error("remove_certificate(\"", config_.remove, "\") failed with status ", st);
      return;
    }
    host_.info("removed certificate ", config_.remove);
  }

  weir::sdk::Host host_;
  const Config& config_;
  weir::sdk::Timers timers_;
};

/// The certificate provider module.
class CertsInstaller {
public:
  CertsInstaller(weir::sdk::Host host, const Config& config) : installer_(host, config) {}
  weir_status_t start() { return installer_.start(); }

private:
  Installer installer_;
};

/// The same behaviour in a health checker's clothes (see the file comment).
class HealthInstaller {
public:
  HealthInstaller(weir::sdk::Host host, const Config& config) : installer_(host, config) {}
  weir_status_t on_targets(const std::vector<weir::sdk::Target>&) {
    if (started_) {
      return WEIR_OK;
    }
    started_ = true;
    return installer_.start();
  }

private:
  Installer installer_;
  bool started_ = false;
};

} // namespace

WEIR_SDK_PLUGIN("test-cert-installer", "1.0.0",
                weir::sdk::certs_module<Config, CertsInstaller>("cert-installer"),
                weir::sdk::health_module<Config, HealthInstaller>("cert-installer"))
