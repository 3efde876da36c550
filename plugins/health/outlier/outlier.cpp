// health/outlier: passive outlier detection. Watches the outcome of every proxied request (the
// host's observations) and ejects a target that fails too often in a row, for a time that grows
// each time the same target is ejected again.
//
//   [upstreams.app]
//   health = { use = "outlier", consecutive-5xx = 5, base-ejection-time = "30s" }
//
// Per target, two counters of consecutive outcomes: 5xx responses, and failures without a response
// (connect failures, TLS handshake failures, response timeouts, status 0). A success (a response
// with a status below 500) resets both. When a counter reaches its threshold the target is ejected
// (reported unhealthy) for base-ejection-time * (its number of ejections), at most
// max-ejection-time, then reported healthy again by a timer. The number of ejections of a target
// goes down by one for each base-ejection-time it spends without being ejected. At most
// max-ejected-percent of the group is ejected at once, but one target may always be ejected in a
// group of two or more; an ejection the cap prevents is skipped with one warning (not one per
// request). Observations of unknown targets, and of targets while they are ejected, are ignored.
#include <weir/sdk.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using weir::sdk::cat;
using Millis = std::chrono::milliseconds;

/// "30s", "1500ms".
std::string format_duration(Millis d) {
  return d.count() % 1000 == 0 ? cat(d.count() / 1000, "s") : cat(d.count(), "ms");
}

struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys({"consecutive-5xx", "consecutive-failures", "base-ejection-time",
                          "max-ejection-time", "max-ejected-percent"});
    consecutive_5xx = cfg.get_int<uint32_t>("consecutive-5xx", 5, 0, 1000);
    consecutive_failures = cfg.get_int<uint32_t>("consecutive-failures", 5, 0, 1000);
    base_ejection = cfg.get_duration("base-ejection-time", Millis(30'000), Millis(1));
    max_ejection = std::max(Millis(300'000), base_ejection);
    if (const weir::sdk::ConfigReader m = cfg.child("max-ejection-time")) {
      if (const std::optional<Millis> v = m.as_duration(Millis(1))) {
        if (*v < base_ejection) {
          m.error(cat("must be at least base-ejection-time (", format_duration(base_ejection),
                      "), got ", format_duration(*v)));
        } else {
          max_ejection = *v;
        }
      }
    }
    max_ejected_percent = cfg.get_int<uint32_t>("max-ejected-percent", 50, 0, 100);
    if (consecutive_5xx == 0 && consecutive_failures == 0) {
      cfg.host().warn("consecutive-5xx and consecutive-failures are both 0: nothing is ejected");
    }
  }

  uint32_t consecutive_5xx = 5;
  uint32_t consecutive_failures = 5;
  Millis base_ejection{30'000};
  Millis max_ejection{300'000};
  uint32_t max_ejected_percent = 50;
};

class Outlier {
public:
  Outlier(weir::sdk::Host host, const Config& config)
      : host_(host), config_(config), timers_(host) {}
  Outlier(const Outlier&) = delete;
  Outlier& operator=(const Outlier&) = delete;

  void on_targets(const std::vector<weir::sdk::Target>& targets) {
    std::map<std::string, std::unique_ptr<Peer>, std::less<>> next;
    for (const weir::sdk::Target& target : targets) {
      const std::string_view key = target.key();
      if (next.find(key) != next.end()) {
        continue;
      }
      std::unique_ptr<Peer> p;
      if (auto it = peers_.find(key); it != peers_.end()) {
        p = std::move(it->second);
        peers_.erase(it);
      } else {
        p = std::make_unique<Peer>();
        p->key = std::string(key);
      }
      next.emplace(p->key, std::move(p));
    }
    for (auto& [key, gone] : peers_) {
      if (gone->ejected) {
        timers_.cancel(gone->timer);
        --ejected_;
      }
    }
    peers_ = std::move(next);
    cap_logged_ = false; // the group changed: the cap may say something else now
  }

  void on_observation(const weir::sdk::Observation& o) {
    const auto it = peers_.find(o.target_id);
    if (it == peers_.end()) {
      return; // not (or no longer) in the group
    }
    Peer& p = *it->second;
    if (p.ejected) {
      return; // requests that were running when it was ejected
    }
    if (o.connect_failed || o.timed_out || o.status == 0) {
      p.failures = std::min<uint32_t>(p.failures + 1, 1'000'000);
      if (config_.consecutive_failures != 0 && p.failures >= config_.consecutive_failures) {
        eject(p, cat(p.failures, " consecutive connection failures"));
      }
    } else if (o.status >= 500) {
      p.errors_5xx = std::min<uint32_t>(p.errors_5xx + 1, 1'000'000);
      if (config_.consecutive_5xx != 0 && p.errors_5xx >= config_.consecutive_5xx) {
        eject(p, cat(p.errors_5xx, " consecutive 5xx responses"));
      }
    } else {
      p.failures = 0;
      p.errors_5xx = 0;
    }
  }

private:
  struct Peer {
    std::string key;
    uint32_t errors_5xx = 0; // consecutive 5xx responses
    uint32_t failures = 0;   // consecutive failures without a response
    uint32_t ejections = 0;  // ejection count, decayed
    bool ejected = false;
    uint64_t restored_ns = 0; // when the last ejection ended (0: never ejected)
    weir_timer_id_t timer = 0;
  };

  /// How many targets may be ejected at once in a group of `n`.
  [[nodiscard]] size_t allowed_ejections(size_t n) const noexcept {
    const size_t by_percent = n * config_.max_ejected_percent / 100;
    return n >= 2 ? std::max<size_t>(1, by_percent) : by_percent;
  }

  void eject(Peer& p, const std::string& why) {
    const size_t n = peers_.size();
    if (ejected_ + 1 > allowed_ejections(n)) {
      if (!cap_logged_) {
        cap_logged_ = true;
        host_.warn("not ejecting ", p.key, " (", why, "): ", ejected_, " of ", n,
                   " targets are ejected already (max-ejected-percent = ",
                   config_.max_ejected_percent, ")");
      }
      return;
    }
    // One ejection is forgiven for each base-ejection-time spent since the last one ended.
    if (p.ejections > 0 && p.restored_ns != 0) {
      const auto base_ns = static_cast<uint64_t>(config_.base_ejection.count()) * 1'000'000u;
      const uint64_t now = host_.now_ns();
      const uint64_t forgiven = now > p.restored_ns ? (now - p.restored_ns) / base_ns : 0;
      p.ejections -= static_cast<uint32_t>(std::min<uint64_t>(p.ejections, forgiven));
    }
    p.ejections = std::min<uint32_t>(p.ejections + 1, 1'000'000);
    const Millis duration = std::min(config_.base_ejection * p.ejections, config_.max_ejection);
    p.ejected = true;
    p.errors_5xx = 0;
    p.failures = 0;
    ++ejected_;
    Peer* pp = &p;
    p.timer = timers_.after(duration, [this, pp, duration] { restore(*pp, duration); });
    report(p, false, cat(why, "; ejected for ", format_duration(duration)));
    if (p.timer == 0) {
      host_.error("cannot start a timer: ", p.key, " is restored now instead of in ",
                  format_duration(duration));
      restore(p, duration);
    }
  }

  void restore(Peer& p, Millis duration) {
    p.timer = 0;
    p.ejected = false;
    p.restored_ns = std::max<uint64_t>(1, host_.now_ns());
    --ejected_;
    cap_logged_ = false;
    report(p, true, cat("ejection of ", format_duration(duration), " ended"));
  }

  void report(const Peer& p, bool healthy, const std::string& reason) {
    const weir_status_t st = host_.report_health(p.key, healthy, reason);
    if (st != WEIR_OK) {
      host_.warn("reporting ", p.key, " as ", healthy ? "healthy" : "unhealthy", " failed: status ",
                 st);
    }
  }

  weir::sdk::Host host_;
  const Config& config_;
  weir::sdk::Timers timers_;
  std::map<std::string, std::unique_ptr<Peer>, std::less<>> peers_;
  size_t ejected_ = 0;      // targets ejected now
  bool cap_logged_ = false; // the cap's warning was logged since the last change
};

} // namespace

WEIR_SDK_PLUGIN("health-outlier", WEIR_PLUGIN_VERSION,
                weir::sdk::health_module<Config, Outlier>("outlier"))
