// discovery/dns-sd: the instances of a DNS-SD service over unicast DNS (RFC 6763). weir resolves
// the names for the plugin (plugin ABI 1.2: dns_query), with the resolvers of its [dns] table.
//
//   [upstreams.app.discovery]
//   use = "dns-sd"
//   service = "_http._tcp.example.test"
//
// Each round browses the service (its PTR records name the instances), asks every instance for
// its SRV and TXT records, then every SRV target host for its addresses (A and/or AAAA,
// `family`), and publishes one target per address and SRV record: "ip:port" / "[ipv6]:port" with
// the SRV port, priority and weight (0 becomes 1), the weight overridden by a TXT "weight=N"
// (1..65535). Metadata: "instance" (the instance name), "srv-target" (the host), then the TXT
// keys and values (RFC 6763 section 6: "key=value" strings, a key alone is the boolean true and
// reads "true", keys compared without regard to case and lowercased, the first occurrence wins,
// strings without a key ignored). The address is the target's id; an address named twice is
// published once (the lower priority, then the higher weight wins). Instances that appear or
// disappear between rounds are followed; an instance whose SRV or TXT lookup fails keeps its
// previous targets (or is skipped) and the round backs off; one without an SRV record is skipped
// with a warning. See docs/discovery.md.
#include "../dns/dns_common.hpp"

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using namespace weir_dns;

struct Config : CommonConfig {
  explicit Config(ConfigReader& cfg) {
    cfg.expect_only_keys({"service", "refresh", "ttl-min", "ttl-max", "retry-min", "retry-max",
                          "on-empty", "family"});
    service =
        read_name(cfg, "service", "a DNS-SD service name, e.g. \"_http._tcp.example.test\"", false);
    read(cfg);
  }

  std::string service;
};

using Metadata = std::vector<std::pair<std::string, std::string>>;

/// The key/value pairs of an instance's TXT records (RFC 6763 section 6), keys lowercased.
Metadata parse_txt(const std::vector<Record>& records) {
  Metadata out;
  std::set<std::string> seen;
  for (const Record& r : records) {
    for (const std::string& s : r.txt) {
      const size_t eq = s.find('=');
      const std::string_view key = std::string_view(s).substr(0, eq);
      if (key.empty()) {
        continue; // an empty string, or one starting with '=': silently ignored (6.4)
      }
      const bool printable = std::all_of(key.begin(), key.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) <= 0x7e;
      });
      if (!printable) {
        continue;
      }
      std::string lower = weir::sdk::to_lower(key);
      if (!seen.insert(lower).second) {
        continue; // only the first occurrence counts (6.4)
      }
      out.emplace_back(std::move(lower),
                       eq == std::string::npos ? std::string("true") : s.substr(eq + 1));
    }
  }
  return out;
}

/// A TXT "weight" value: an integer 1..65535; nullopt otherwise.
std::optional<uint32_t> parse_weight(std::string_view v) {
  if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  uint32_t n = 0;
  for (const char c : v) {
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if (n < 1 || n > 65535) {
    return std::nullopt;
  }
  return n;
}

class DnsSdDiscovery final : public Discovery {
public:
  DnsSdDiscovery(Host host, const Config& config)
      : Discovery(host, config, config.service, "PTR"), sd_(config),
        hosts_(queries_, streaks_, cache_, config) {}

protected:
  void run_round() override {
    queries_.start(sd_.service, DnsType::Ptr, [this](Answer a) { on_ptr(std::move(a)); });
  }

private:
  /// What one instance's SRV and TXT queries gave.
  struct InstanceAnswers {
    Answer srv;
    Answer txt;
  };
  /// An instance whose lookups worked, waiting for its hosts' addresses.
  struct Instance {
    std::string name;
    std::vector<Record> srv;
    Metadata txt;
    std::optional<uint32_t> weight; ///< from TXT
  };

  void on_ptr(Answer a) {
    if (a.ignored > 0) {
      host_.debug(sd_.service, ": ignored ", a.ignored, " record(s) of other types or names");
    }
    Outcome out;
    if (a.status == DnsStatus::Error) {
      out.kind = Outcome::Kind::Failed;
      out.why = a.error;
      finish(std::move(out));
      return;
    }
    std::set<std::string> instances;
    TtlMin ttl;
    for (const Record& r : a.records) {
      if (!is_root_target(r.target)) {
        instances.insert(normal_name(r.target));
        ttl.add(r.ttl);
      }
    }
    if (a.status == DnsStatus::NotFound || instances.empty()) {
      out.kind = Outcome::Kind::Empty;
      out.why = a.status == DnsStatus::NotFound
                    ? cat(sd_.service, " does not exist (NXDOMAIN)")
                    : cat(sd_.service, " has no instances (no PTR records)");
      out.ttl.add_negative(a.negative_ttl);
      finish(std::move(out));
      return;
    }
    auto answers = std::make_shared<std::map<std::string, InstanceAnswers>>();
    auto join =
        std::make_shared<Join>([this, answers, ttl] { on_instances(std::move(*answers), ttl); });
    for (const std::string& inst : instances) {
      (*answers)[inst]; // every instance has an entry, filled by the two queries
      join->add();
      queries_.start(inst, DnsType::Srv, [answers, join, inst](Answer r) {
        (*answers)[inst].srv = std::move(r);
        join->complete();
      });
      join->add();
      queries_.start(inst, DnsType::Txt, [answers, join, inst](Answer r) {
        (*answers)[inst].txt = std::move(r);
        join->complete();
      });
    }
    join->seal();
  }

  void on_instances(std::map<std::string, InstanceAnswers> answers, TtlMin ttl) {
    auto ok = std::make_shared<std::vector<Instance>>();
    auto kept = std::make_shared<std::vector<Candidate>>(); // of instances whose lookup failed
    bool degraded = false;
    std::set<std::string> hosts;
    for (auto& [name, ia] : answers) {
      const std::string fail_key = "fail-instance " + name;
      const std::string missing_key = "missing-instance " + name;
      if (ia.srv.status == DnsStatus::Error || ia.txt.status == DnsStatus::Error) {
        degraded = true;
        const auto last = last_.find(name);
        const std::string error = ia.srv.status == DnsStatus::Error ? cat("SRV: ", ia.srv.error)
                                                                    : cat("TXT: ", ia.txt.error);
        const std::string consequence =
            last != last_.end() ? cat("keeping its last ", last->second.size(), " target(s)")
                                : std::string("skipping it");
        streaks_.problem(fail_key,
                         cat("resolving DNS-SD instance ", name, " failed (", error, "); ",
                             consequence, "; retrying in ", next_retry().count(), "ms"),
                         cat("resolving DNS-SD instance ", name, " failed again (", error, ")"));
        if (last != last_.end()) {
          kept->insert(kept->end(), last->second.begin(), last->second.end());
        }
        continue;
      }
      streaks_.fine(fail_key, cat("resolving DNS-SD instance ", name, " works again"));
      Instance inst;
      inst.name = name;
      for (Record& r : ia.srv.records) {
        if (is_root_target(r.target) || r.port == 0) {
          continue;
        }
        r.target = normal_name(r.target);
        inst.srv.push_back(std::move(r));
      }
      if (inst.srv.empty()) {
        const std::string why = ia.srv.status == DnsStatus::NotFound
                                    ? std::string("does not exist (NXDOMAIN)")
                                    : std::string("has no usable SRV record");
        streaks_.problem(
            missing_key,
            cat("DNS-SD instance ", name, " of ", sd_.service, " ", why, "; skipping it"),
            cat("DNS-SD instance ", name, " ", why, " (still)"));
        last_.erase(name);
        continue;
      }
      streaks_.fine(missing_key, cat("DNS-SD instance ", name, " has an SRV record again"));
      for (const Record& r : inst.srv) {
        ttl.add(r.ttl);
        hosts.insert(r.target);
      }
      for (const Record& r : ia.txt.records) {
        ttl.add(r.ttl);
      }
      inst.txt = parse_txt(ia.txt.records);
      read_weight(inst);
      ok->push_back(std::move(inst));
    }
    // Instances that left the service are forgotten.
    std::erase_if(last_, [&answers](const auto& e) { return answers.count(e.first) == 0; });
    hosts_.resolve(hosts, "of " + sd_.service, next_retry(),
                   [this, ok, kept, degraded, ttl](HostResolver::Result r) {
                     build(*ok, std::move(*kept), degraded, ttl, std::move(r));
                   });
  }

  /// A TXT "weight" overrides the SRV weight when it is an integer 1..65535.
  void read_weight(Instance& inst) {
    const std::string key = "weight " + inst.name;
    for (const auto& [k, v] : inst.txt) {
      if (k != "weight") {
        continue;
      }
      inst.weight = parse_weight(v);
      if (!inst.weight) {
        streaks_.problem(key,
                         cat("DNS-SD instance ", inst.name, ": TXT weight \"", v,
                             "\" is not an integer 1..65535; using the SRV weight"),
                         cat("DNS-SD instance ", inst.name, ": bad TXT weight (still)"));
        return;
      }
    }
    streaks_.fine(key, "");
  }

  void build(const std::vector<Instance>& instances, std::vector<Candidate> candidates,
             bool degraded, TtlMin ttl, HostResolver::Result hosts) {
    for (const Instance& inst : instances) {
      std::vector<Candidate>& mine = last_[inst.name];
      mine.clear();
      add_srv_candidates(inst.srv, hosts, mine, [&inst](Candidate& c, const Record& rec) {
        if (inst.weight) {
          c.target.weight = *inst.weight;
        }
        c.target.metadata = {{"instance", inst.name}, {"srv-target", rec.target}};
        for (const auto& [k, v] : inst.txt) {
          if (k != "instance" && k != "srv-target") {
            c.target.metadata.emplace_back(k, v);
          }
        }
      });
      candidates.insert(candidates.end(), mine.begin(), mine.end());
      if (mine.empty()) {
        last_.erase(inst.name);
      }
    }
    finish(srv_outcome(std::move(candidates), degraded, ttl, hosts,
                       "no instance (or no SRV target host) could be resolved",
                       cat("none of the instances of ", sd_.service, " has an address")));
  }

  const Config& sd_;
  HostCache cache_;
  HostResolver hosts_;
  /// The targets of each instance in the last round that resolved it (reused when its lookup
  /// fails).
  std::map<std::string, std::vector<Candidate>> last_;
};

} // namespace

WEIR_SDK_PLUGIN("discovery-dns-sd", WEIR_PLUGIN_VERSION,
                weir::sdk::discovery_module<Config, DnsSdDiscovery>("dns-sd"))
