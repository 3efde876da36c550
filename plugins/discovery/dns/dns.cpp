// discovery/dns: the addresses of a host name (A and/or AAAA records), one target per address,
// refreshed as the records' TTL says. weir resolves the name for the plugin (plugin ABI 1.2:
// dns_query), with the resolvers of its [dns] table.
//
//   [upstreams.app.discovery]
//   use = "dns"
//   name = "app.internal.example"
//   port = 8080
//
// Targets are "ip:port" / "[ipv6]:port", the address being their id, sorted (IPv4 first, then by
// address) so that the set is stable across refreshes; every target has the configured weight.
// See docs/discovery.md for the keys and the refresh, failure and empty-answer rules (shared with
// the srv and dns-sd modules through dns_common.hpp).
#include "dns_common.hpp"

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using namespace weir_dns;

struct Config : CommonConfig {
  explicit Config(ConfigReader& cfg) {
    cfg.expect_only_keys({"name", "port", "weight", "refresh", "ttl-min", "ttl-max", "retry-min",
                          "retry-max", "on-empty", "family"});
    name = read_name(cfg, "name", "a host name to resolve, e.g. \"app.internal.example\"", false);
    if (const ConfigReader p = cfg.child("port")) {
      port = static_cast<uint16_t>(p.as_int<uint32_t>(1, 65535).value_or(0));
    } else {
      cfg.error("missing required key 'port' (1..65535)");
    }
    weight = cfg.get_int<uint32_t>("weight", 1, 1, 65535);
    read(cfg);
  }

  std::string name;
  uint16_t port = 0;
  uint32_t weight = 1;
};

class DnsDiscovery final : public Discovery {
public:
  DnsDiscovery(Host host, const Config& config)
      : Discovery(host, config, config.name, std::string(config.address_types())), dns_(config) {}

protected:
  void run_round() override {
    resolve_host(queries_, dns_.name, dns_.family, [this](HostAddresses r) { done(std::move(r)); });
  }

private:
  void done(HostAddresses r) {
    if (r.ignored > 0) {
      host_.debug(dns_.name, ": ignored ", r.ignored,
                  " record(s) of other types or names, or with a bad address");
    }
    Outcome out;
    switch (r.kind) {
    case HostAddresses::Kind::Error:
      out.kind = Outcome::Kind::Failed;
      out.why = r.error;
      break;
    case HostAddresses::Kind::NotFound:
      out.kind = Outcome::Kind::Empty;
      out.why = cat(dns_.name, " does not exist (NXDOMAIN)");
      out.ttl = r.negative;
      break;
    case HostAddresses::Kind::NoData:
      out.kind = Outcome::Kind::Empty;
      out.why = cat(dns_.name, " has no ", dns_.address_types(), " records");
      out.ttl = r.negative;
      break;
    case HostAddresses::Kind::Ok:
      out.kind = Outcome::Kind::Targets;
      out.ttl = r.ttl;
      for (const Address& a : r.addresses) {
        std::string address = a.with_port(dns_.port);
        Target t(address, dns_.weight);
        t.id = std::move(address);
        out.targets.push_back(std::move(t));
      }
      break;
    }
    finish(std::move(out));
  }

  const Config& dns_;
};

} // namespace

WEIR_SDK_PLUGIN("discovery-dns", WEIR_PLUGIN_VERSION,
                weir::sdk::discovery_module<Config, DnsDiscovery>("dns"))
