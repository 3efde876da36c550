// discovery/srv: the targets of an SRV name (RFC 2782). weir resolves the names for the plugin
// (plugin ABI 1.2: dns_query), with the resolvers of its [dns] table.
//
//   [upstreams.app.discovery]
//   use = "srv"
//   name = "_http._tcp.app.internal.example"
//
// Each round asks for the SRV records of `name`, then for the addresses (A and/or AAAA, `family`)
// of every target host they name, and publishes one target per address and SRV record:
// "ip:port" / "[ipv6]:port" with the record's port, the record's priority, its weight (0 becomes
// 1: RFC 2782 reads weight 0 as "very rarely", weir has no such notion) and the metadata
// {"srv-target": host}. The address is the target's id; an address named by two records is
// published once (the lower priority, then the higher weight, wins). A single record whose target
// is "." means the service is decidedly not available: the empty set is published. A target host
// whose lookup fails keeps its previous addresses (or is skipped) and the round backs off; one
// that does not exist or has no address is skipped with a warning. See docs/discovery.md.
#include "../dns/dns_common.hpp"

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using namespace weir_dns;

struct Config : CommonConfig {
  explicit Config(ConfigReader& cfg) {
    cfg.expect_only_keys(
        {"name", "refresh", "ttl-min", "ttl-max", "retry-min", "retry-max", "on-empty", "family"});
    name = read_name(cfg, "name", "an SRV name, e.g. \"_http._tcp.app.internal.example\"", false);
    read(cfg);
  }

  std::string name;
};

class SrvDiscovery final : public Discovery {
public:
  SrvDiscovery(Host host, const Config& config)
      : Discovery(host, config, config.name, "SRV"), srv_(config),
        hosts_(queries_, streaks_, cache_, config) {}

protected:
  void run_round() override {
    queries_.start(srv_.name, DnsType::Srv, [this](Answer a) { on_srv(std::move(a)); });
  }

private:
  void on_srv(Answer a) {
    if (a.ignored > 0) {
      host_.debug(srv_.name, ": ignored ", a.ignored, " record(s) of other types or names");
    }
    Outcome out;
    if (a.status == DnsStatus::Error) {
      out.kind = Outcome::Kind::Failed;
      out.why = a.error;
      finish(std::move(out));
      return;
    }
    if (a.status == DnsStatus::NotFound || a.records.empty()) {
      out.kind = Outcome::Kind::Empty;
      out.why = a.status == DnsStatus::NotFound ? cat(srv_.name, " does not exist (NXDOMAIN)")
                                                : cat(srv_.name, " has no SRV records");
      out.ttl.add_negative(a.negative_ttl);
      finish(std::move(out));
      return;
    }
    if (a.records.size() == 1 && is_root_target(a.records[0].target)) {
      out.kind = Outcome::Kind::Unavailable;
      out.why = cat(srv_.name, ": the service is decidedly not available (its one SRV record has "
                               "the target \".\")");
      out.ttl.add(a.records[0].ttl);
      finish(std::move(out));
      return;
    }
    std::vector<Record> usable;
    std::set<std::string> hosts;
    TtlMin srv_ttl;
    for (Record& r : a.records) {
      if (is_root_target(r.target) || r.port == 0) {
        host_.debug(srv_.name, ": ignored an SRV record with target \"", r.target, "\" and port ",
                    r.port);
        continue;
      }
      r.target = normal_name(r.target);
      srv_ttl.add(r.ttl);
      hosts.insert(r.target);
      usable.push_back(std::move(r));
    }
    if (usable.empty()) {
      out.kind = Outcome::Kind::Empty;
      out.why = cat(srv_.name, " has no usable SRV records (target \".\" or port 0)");
      for (const Record& r : a.records) {
        out.ttl.add(r.ttl);
      }
      finish(std::move(out));
      return;
    }
    hosts_.resolve(hosts, "of " + srv_.name, next_retry(),
                   [this, usable = std::move(usable), srv_ttl](HostResolver::Result r) {
                     build(usable, srv_ttl, std::move(r));
                   });
  }

  void build(const std::vector<Record>& records, const TtlMin& srv_ttl,
             HostResolver::Result hosts) {
    std::vector<Candidate> candidates;
    add_srv_candidates(records, hosts, candidates, [](Candidate& c, const Record& rec) {
      c.target.metadata = {{"srv-target", rec.target}};
    });
    finish(srv_outcome(std::move(candidates), false, srv_ttl, hosts,
                       "no SRV target host could be resolved",
                       cat("none of the SRV targets of ", srv_.name, " has an address")));
  }

  const Config& srv_;
  HostCache cache_;
  HostResolver hosts_;
};

} // namespace

WEIR_SDK_PLUGIN("discovery-srv", WEIR_PLUGIN_VERSION,
                weir::sdk::discovery_module<Config, SrvDiscovery>("srv"))
