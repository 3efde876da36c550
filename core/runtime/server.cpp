#include "core/runtime/server.hpp"

#include "core/net/dns.hpp"
#include "core/plugin/modules.hpp"
#include "core/plugin/outbound.hpp"
#include "core/runtime/admin.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/worker.hpp"
#include "core/upstream/targets.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <map>
#include <set>
#include <thread>

namespace weir::core {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

std::string format_endpoint(const tcp::endpoint& ep) {
  if (ep.address().is_v6())
    return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

bool parse_listen_address(const std::string& text, tcp::endpoint& out) {
  std::string_view host;
  std::string_view port_text;
  std::string_view t(text);
  if (!t.empty() && t.front() == '[') {
    auto close = t.find(']');
    if (close == std::string_view::npos || close + 1 >= t.size() || t[close + 1] != ':')
      return false;
    host = t.substr(1, close - 1);
    port_text = t.substr(close + 2);
  } else {
    auto colon = t.rfind(':');
    if (colon == std::string_view::npos)
      return false;
    host = t.substr(0, colon);
    port_text = t.substr(colon + 1);
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || port > 65535)
    return false;
  boost::system::error_code aec;
  auto addr = asio::ip::make_address(std::string(host), aec);
  if (aec)
    return false;
  out = tcp::endpoint(addr, static_cast<uint16_t>(port));
  return true;
}

// The control-thread state of one upstream group.
class Group {
public:
  Group(size_t index, const CompiledUpstream& plan, asio::io_context& control,
        std::vector<std::unique_ptr<Worker>>& workers, net::DnsResolver* dns,
        net::DnsResolver* host_dns)
      : index_(index), plan_(plan), control_(control), workers_(workers), dns_(dns),
        host_dns_(host_dns), log_(logger("upstream")) {
    auto tls = std::make_shared<plugin::GroupTls>();
    tls->context = plan_.client_tls;
    if (plan_.cfg->tls) {
      tls->verify = plan_.cfg->tls->verify;
      tls->server_name = plan_.cfg->tls->server_name;
    }
    group_tls_ = std::move(tls);
  }

  void start() {
    for (size_t i = 0; i < plan_.health.size(); ++i) {
      health_.push_back(
          std::make_unique<plugin::HealthInstance>(plan_.health[i], [this, i](plugin::HostCtx& c) {
            c.timer_context = &control_;
            c.group_tls = group_tls_;
            c.in_group = true;
            c.dns = dns_;
            c.host_dns = host_dns_;
            c.on_health = [this, i](std::string_view id, bool healthy, std::string_view reason) {
              on_health(i, id, healthy, reason);
            };
          }));
    }
    discovery_ =
        std::make_unique<plugin::DiscoveryInstance>(plan_.discovery, [this](plugin::HostCtx& c) {
          c.timer_context = &control_;
          c.in_group = true;
          c.group_tls = group_tls_;
          c.dns = dns_;
          c.host_dns = host_dns_;
          c.on_publish = [this](std::vector<plugin::PublishedTarget> targets) {
            on_publish(std::move(targets));
          };
        });
    if (!discovery_->start())
      throw std::runtime_error(fmt::format("upstream {}: discovery failed to start", name()));
  }

  void stop() {
    alive_.reset(); // lookups answered from now on are dropped
    retry_.cancel();
    discovery_.reset();
    health_.clear();
  }

  const std::string& name() const { return plan_.cfg->name; }

  // A proxied request's attempt ended (posted by a worker).
  void observe(const Observation& o) {
    for (auto& h : health_)
      if (h->wants_observations())
        h->observe(o.target_id, o.status, o.connect_failed, o.timed_out, o.duration_ns);
  }

  // The group's state for the admin endpoint.
  boost::json::object describe() const {
    boost::json::object g;
    g["name"] = name();
    boost::json::array checkers;
    for (const auto& h : health_)
      checkers.emplace_back(h->config().label());
    g["health-checkers"] = std::move(checkers);
    boost::json::array targets;
    size_t healthy = 0;
    for (const auto& t : targets_) {
      boost::json::object o;
      o["id"] = t.id;
      o["address"] = t.address;
      if (!t.host.empty()) { // named by host name: the address in use, and a failed lookup
        o["resolved"] = format_endpoint(t.endpoint);
        if (auto e = name_errors_.find(t.host); e != name_errors_.end())
          o["resolve-error"] = e->second;
      }
      o["weight"] = t.weight;
      o["priority"] = t.priority;
      o["serving"] = t.priority == active_priority_;
      if (!t.metadata.empty()) {
        boost::json::object meta;
        for (const auto& [k, v] : t.metadata)
          meta[k] = v;
        o["metadata"] = std::move(meta);
      }
      auto it = down_.find(t.id);
      bool up = it == down_.end() || it->second.empty();
      healthy += up ? 1 : 0;
      o["healthy"] = up;
      if (!up) {
        boost::json::array why;
        for (const auto& [checker, reason] : it->second) {
          boost::json::object r;
          r["checker"] = health_[checker]->config().label();
          r["reason"] = reason;
          why.push_back(std::move(r));
        }
        o["unhealthy-because"] = std::move(why);
      }
      auto since = since_.find(t.id);
      if (since != since_.end())
        o["state-for-ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - since->second)
                                .count();
      targets.push_back(std::move(o));
    }
    g["version"] = version_; // counts the sets handed to the workers
    g["targets-total"] = targets_.size();
    g["targets-healthy"] = healthy;
    g["targets"] = std::move(targets);
    if (!left_out_.empty()) {
      boost::json::array skipped;
      for (const auto& [address, reason] : left_out_) {
        boost::json::object o;
        o["address"] = address;
        o["reason"] = reason;
        skipped.push_back(std::move(o));
      }
      g["skipped"] = std::move(skipped);
    }
    return g;
  }

  // Whether the first publication waits for the first answer about one of its host names.
  bool resolving() const { return waiting_; }

  // The startup wait is over: a first publication still waiting applies with the answers it has
  // (its other names join when answered).
  void stop_waiting() {
    if (waiting_) {
      waiting_ = false;
      apply(true);
    }
  }

private:
  // The discovery published a new set. Its host names are looked up without blocking the
  // control thread (health checks and timers keep running). The first publication waits for the
  // first answer about each of its names (the startup wait holds the workers meanwhile, and
  // ends it: stop_waiting()); a later one applies at once with the addresses known, and a new
  // name joins when answered. Every publication asks about each of its names again, in the
  // background: a changed address applies when it comes. A lookup still in flight for a name
  // serves the newer publication too, so frequent publications never starve their lookups.
  void on_publish(std::vector<plugin::PublishedTarget> published) {
    published_ = std::move(published);
    std::set<std::string> hosts;
    for (const auto& p : published_) {
      tcp::endpoint ep;
      std::string host;
      uint16_t port = 0;
      std::string error;
      if (!p.address.starts_with("unix:") &&
          upstream::parse_address(p.address, ep, host, port, error) == upstream::AddressKind::name)
        hosts.insert(host);
    }
    wanted_ = std::move(hosts);
    std::erase_if(names_, [&](const auto& n) { return !wanted_.count(n.first); });
    std::erase_if(name_errors_, [&](const auto& n) { return !wanted_.count(n.first); });
    std::erase_if(skipped_, [&](const std::string& address) {
      return std::none_of(published_.begin(), published_.end(),
                          [&](const auto& p) { return p.address == address; });
    });
    for (const auto& host : wanted_)
      if (!in_flight_.count(host))
        look_up(host);
    waiting_ = !applied_ && !settled();
    if (!waiting_)
      apply(true);
  }

  // Every wanted name has an answer (an address, or why it has none).
  bool settled() const {
    return std::all_of(wanted_.begin(), wanted_.end(), [&](const std::string& h) {
      return names_.count(h) != 0 || name_errors_.count(h) != 0;
    });
  }

  void look_up(const std::string& host) {
    if (host_dns_ == nullptr) {
      name_errors_[host] = "cannot resolve \"" + host + "\": no resolver in this process";
      return;
    }
    in_flight_.insert(host);
    host_dns_->lookup_host(host,
                           [this, alive = std::weak_ptr<int>(alive_), host](net::DnsAnswer a) {
                             if (alive.expired())
                               return; // the group stopped
                             in_flight_.erase(host);
                             if (wanted_.count(host))
                               answered(host, a);
                             if (in_flight_.empty())
                               schedule_retry();
                           });
  }

  void answered(const std::string& host, const net::DnsAnswer& a) {
    std::string error;
    auto found = net::first_address(a, host, error);
    auto known = names_.find(host);
    bool changed = false;
    if (found) {
      const asio::ip::address& ip = *found;
      changed = known == names_.end() || known->second != ip;
      if (name_errors_.erase(host) != 0 && known != names_.end())
        log_->info("upstream {}: \"{}\" resolves again ({})", name(), host, ip.to_string());
      names_[host] = ip;
    } else {
      auto [it, first] = name_errors_.try_emplace(host, error);
      it->second = error;
      if (known != names_.end()) {
        if (first)
          log_->warn("upstream {}: {}; its targets keep the last address, {}", name(), error,
                     known->second.to_string());
      } else if (first) {
        changed = true; // its targets are now skipped for this reason (see apply)
      }
    }
    if (waiting_) {
      if (settled()) {
        waiting_ = false;
        apply(true);
      }
    } else if (changed) {
      apply(false);
    }
  }

  // Names without an answer that gives an address are asked again after 1 s, 2 s, 4 s ... up to
  // every 30 s; the delay starts over once every name resolves.
  void schedule_retry() {
    if (name_errors_.empty()) {
      retry_delay_ = kFirstRetry;
      return;
    }
    if (retry_armed_)
      return;
    retry_armed_ = true;
    retry_.expires_after(retry_delay_);
    retry_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
      if (ec || alive.expired())
        return;
      retry_armed_ = false;
      retry_delay_ = std::min(retry_delay_ * 2, kLastRetry);
      std::vector<std::string> again;
      for (const auto& n : name_errors_)
        if (!in_flight_.count(n.first))
          again.push_back(n.first);
      for (const auto& host : again)
        look_up(host);
      if (in_flight_.empty())
        schedule_retry();
    });
  }

  // Build the target set of the latest publication with the addresses known. A name that no
  // longer resolves keeps its last address; one that never resolved is left out. `fresh`: a new
  // publication (its problems are logged; later rebuilds log only what changed).
  void apply(bool fresh) {
    applied_ = true;
    std::vector<upstream::Target> next;
    std::set<std::string> seen;
    left_out_.clear();
    for (const auto& p : published_) {
      if (!seen.insert(p.id).second) {
        if (fresh)
          log_->warn("upstream {}: duplicate target {} ignored", name(), p.id);
        continue;
      }
      upstream::Target t;
      std::string error;
      std::string host;
      uint16_t port = 0;
      if (p.address.starts_with("unix:")) {
        t.unix_path = p.address.substr(5);
      } else {
        auto kind = upstream::parse_address(p.address, t.endpoint, host, port, error);
        if (kind == upstream::AddressKind::name) {
          auto known = names_.find(host);
          if (known != names_.end()) {
            t.endpoint = tcp::endpoint(known->second, port);
            t.host = host;
          } else if (auto failed = name_errors_.find(host); failed != name_errors_.end()) {
            kind = upstream::AddressKind::invalid;
            error = failed->second;
          } else { // its first answer has not come: it joins when it does
            left_out_.emplace_back(p.address, "waiting for the first answer about its name");
            log_->debug("upstream {}: target {} waits for its name's first answer", name(),
                        p.address);
            continue;
          }
        }
        if (kind == upstream::AddressKind::invalid) {
          // Once per target at error level (also when a lookup's failure left it out later),
          // not at every publication of a discovery that publishes often.
          if (skipped_.insert(p.address).second)
            log_->error("upstream {}: target {} skipped: {}{}", name(), p.address, error,
                        host.empty() ? "" : " (asked again until it resolves)");
          else if (fresh)
            log_->debug("upstream {}: target {} skipped: {}", name(), p.address, error);
          left_out_.emplace_back(p.address, error);
          continue;
        }
        skipped_.erase(p.address);
      }
      t.address = p.address;
      t.id = p.id;
      t.pool_key = name() + '\n' + t.id; // (made once here, not per request)
      t.pool_hash = upstream::Pool::hash(t.pool_key);
      t.weight = p.weight;
      t.priority = p.priority;
      t.metadata = p.metadata;
      next.push_back(std::move(t));
    }
    // One line per change, naming what came, what went and what changed (weight, priority,
    // address or metadata of a target that stays).
    std::vector<std::string> added;
    std::vector<std::string> removed;
    std::vector<std::string> changed;
    std::set<std::string> now;
    for (const auto& t : next) {
      now.insert(t.id);
      if (!current_ids_.count(t.id)) {
        added.push_back(t.id);
        since_[t.id] = std::chrono::steady_clock::now();
        continue;
      }
      auto old = std::find_if(targets_.begin(), targets_.end(),
                              [&](const upstream::Target& o) { return o.id == t.id; });
      if (old == targets_.end())
        continue;
      std::string what;
      if (old->weight != t.weight)
        what += fmt::format(" weight {}->{}", old->weight, t.weight);
      if (old->priority != t.priority)
        what += fmt::format(" priority {}->{}", old->priority, t.priority);
      if (old->address != t.address)
        what += fmt::format(" address {}->{}", old->address, t.address);
      else if (old->endpoint != t.endpoint) // its host name resolves to another address now
        what += fmt::format(" resolved {}->{}", format_endpoint(old->endpoint),
                            format_endpoint(t.endpoint));
      if (old->metadata != t.metadata)
        what += " metadata";
      if (!what.empty())
        changed.push_back(t.id + what);
    }
    for (const auto& id : current_ids_) {
      if (!now.count(id)) {
        removed.push_back(id);
        down_.erase(id);
        since_.erase(id);
      }
    }
    const bool same = added.empty() && removed.empty() && changed.empty();
    if (same && !fresh && version_ != 0)
      return; // an answer that changed nothing the workers use
    const bool first = version_ == 0;
    current_ids_ = std::move(now);
    targets_ = std::move(next);
    publish();
    for (auto& h : health_)
      h->set_targets(full_->abi);
    // (After the workers were handed the set: what the line says is what they will use.)
    if (!same || first)
      log_->info("upstream {}: {} targets (added: [{}], removed: [{}]{}{}{})", name(),
                 targets_.size(), fmt::join(added, ", "), fmt::join(removed, ", "),
                 changed.empty() ? "" : ", changed: [", fmt::join(changed, ", "),
                 changed.empty() ? "" : "]");
  }

  // A checker's report. A target is healthy while no checker holds it down; each transition of
  // the combined state is logged once, with the reason.
  void on_health(size_t checker, std::string_view id, bool healthy, std::string_view reason) {
    std::string key(id);
    if (!current_ids_.count(key)) {
      // Reports may name a target by address.
      auto it = std::find_if(targets_.begin(), targets_.end(),
                             [&](const upstream::Target& t) { return t.address == key; });
      if (it == targets_.end())
        return;
      key = it->id;
    }
    auto& by = down_[key];
    bool was_healthy = by.empty();
    bool had = by.count(checker) != 0;
    const std::string& label = health_[checker]->config().label();
    if (healthy) {
      if (!had)
        return;
      by.erase(checker);
    } else {
      by[checker] = reason.empty() ? std::string("no reason given") : std::string(reason);
      if (had)
        return;
    }
    bool is_healthy = by.empty();
    if (is_healthy)
      down_.erase(key);
    if (was_healthy == is_healthy) {
      log_->info("upstream {}: target {} {} by {}{}{} (still unhealthy)", name(), key,
                 healthy ? "cleared" : "also failed", label, reason.empty() ? "" : ": ", reason);
      return;
    }
    since_[key] = std::chrono::steady_clock::now();
    if (is_healthy)
      log_->warn("upstream {}: target {} is now healthy ({}{}{})", name(), key, label,
                 reason.empty() ? "" : ": ", reason);
    else
      log_->warn("upstream {}: target {} is now unhealthy ({}: {})", name(), key, label,
                 by[checker]);
    publish();
  }

  // Hand the workers the targets of the preferred priority: the lowest priority that has a
  // healthy target (all of the lowest when none is healthy: fail open). Health checkers see
  // every target.
  void publish() {
    std::vector<upstream::Target> copy = targets_;
    std::optional<uint32_t> healthy_min;
    std::optional<uint32_t> any_min;
    for (auto& t : copy) {
      t.healthy = !down_.count(t.id);
      if (!any_min || t.priority < *any_min)
        any_min = t.priority;
      if (t.healthy && (!healthy_min || t.priority < *healthy_min))
        healthy_min = t.priority;
    }
    uint32_t active = healthy_min ? *healthy_min : any_min.value_or(0);
    std::vector<upstream::Target> serving;
    for (const auto& t : copy)
      if (t.priority == active)
        serving.push_back(t);
    if (active != active_priority_ && !copy.empty()) {
      log_->warn("upstream {}: priority {} now takes the requests ({} target{}{})", name(), active,
                 serving.size(), serving.size() == 1 ? "" : "s",
                 healthy_min ? "" : "; no target is healthy");
      active_priority_ = active;
    }
    ++version_;
    full_ = upstream::make_target_set(std::move(copy), version_);
    snapshot_ = upstream::make_target_set(std::move(serving), version_);
    for (auto& w : workers_)
      w->post_targets(index_, snapshot_);
  }

  size_t index_;
  const CompiledUpstream& plan_;
  asio::io_context& control_;
  std::vector<std::unique_ptr<Worker>>& workers_;
  net::DnsResolver* dns_ = nullptr;
  net::DnsResolver* host_dns_ = nullptr;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<const plugin::GroupTls> group_tls_;
  std::unique_ptr<plugin::DiscoveryInstance> discovery_;
  std::vector<std::unique_ptr<plugin::HealthInstance>> health_;
  std::vector<upstream::Target> targets_;
  std::set<std::string> current_ids_;
  // Targets some checker holds down: checker index -> reason.
  std::map<std::string, std::map<size_t, std::string>> down_;
  std::map<std::string, std::chrono::steady_clock::time_point> since_; // last state change
  std::shared_ptr<const upstream::TargetSet> snapshot_;                // what the workers use
  std::shared_ptr<const upstream::TargetSet> full_;                    // every target
  uint32_t active_priority_ = 0;
  uint64_t version_ = 0;
  // The latest publication and its host names: their last addresses, why those without one (or
  // whose last lookup failed) have none, the lookups in flight, the retry of failed names.
  static constexpr std::chrono::seconds kFirstRetry{1};
  static constexpr std::chrono::seconds kLastRetry{30};
  std::vector<plugin::PublishedTarget> published_;
  std::set<std::string> wanted_;
  std::map<std::string, asio::ip::address> names_;
  std::map<std::string, std::string> name_errors_;
  std::set<std::string> in_flight_;
  std::set<std::string> skipped_; // targets whose skipping was logged at error level
  std::vector<std::pair<std::string, std::string>> left_out_; // published, skipped: address, why
  bool waiting_ = false; // the first publication waits for the first answer about a name
  bool applied_ = false; // a publication has been applied
  asio::steady_timer retry_{control_};
  bool retry_armed_ = false;
  std::chrono::seconds retry_delay_ = kFirstRetry;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0); // lookups' answers check it
};

} // namespace

int run_server(std::unique_ptr<Plan> plan) {
  auto log = logger("core");
  const auto& cfg = plan->config;
  asio::io_context control(1);

  // Which plugins this process runs with, and from where: the first thing to check when a module
  // behaves unexpectedly (a directory earlier in the path shadows later ones).
  log->info("{} plugin librar{} loaded (search path: {})", plan->registry->library_count(),
            plan->registry->library_count() == 1 ? "y" : "ies", fmt::join(plan->plugin_dirs, ":"));
  size_t nworkers = cfg.system.workers;
  if (nworkers == 0)
    nworkers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<Worker>> workers;
  for (size_t i = 0; i < nworkers; ++i)
    workers.push_back(std::make_unique<Worker>(i, *plan));

  // Unix socket files weir created: removed when this function returns, including when start-up
  // fails after some of them were bound (a later listener's address in use, a plugin failing).
  std::vector<std::string> unix_paths;
  struct UnlinkAtExit {
    std::vector<std::string>& paths;
    ~UnlinkAtExit() {
      for (const auto& p : paths)
        ::unlink(p.c_str());
    }
  } unlink_at_exit{unix_paths};

  // Bind every listener in every worker (SO_REUSEPORT); port 0 becomes one port shared by all.
  for (size_t li = 0; li < plan->listeners.size(); ++li) {
    const auto& cl = plan->listeners[li];
    const auto& l = *cl.cfg;
    std::vector<std::string> names;
    for (size_t s : cl.services)
      names.push_back(cfg.services[s].name);
    std::string who =
        fmt::format("service{} {}", names.size() == 1 ? "" : "s", fmt::join(names, ", "));
    std::string shown = l.address;
    if (l.address.starts_with("unix:")) {
      std::string path = l.address.substr(5);
      int fd = -1;
      for (auto& w : workers) {
        boost::system::error_code ec;
        fd = w->listen_unix(li, path, l.mode, fd, ec);
        if (ec) {
          log->error("{}: cannot listen on {}: {}", who, l.address,
                     ec.value() == EEXIST ? "the file exists and is not a socket" : ec.message());
          return 1;
        }
        if (&w == &workers.front())
          unix_paths.push_back(path); // the first worker created the file; the others share it
      }
    } else {
      tcp::endpoint ep;
      if (!parse_listen_address(l.address, ep)) {
        log->error("{}: invalid listener address \"{}\"", who, l.address);
        return 1;
      }
      for (auto& w : workers) {
        boost::system::error_code ec;
        auto bound = w->listen(li, ep, ec);
        if (ec) {
          log->error("{}: cannot listen on {}: {}", who, l.address, ec.message());
          return 1;
        }
        ep = bound;
      }
      shown = format_endpoint(ep);
    }
    log->info("listening on {} ({}){}{}{}", shown, who, l.tls ? " with TLS" : "",
              l.h2c ? " with h2c" : "",
              l.proxy_protocol_from.empty() ? "" : " with PROXY protocol");
  }
  std::unique_ptr<net::DnsResolver> dns;
  std::unique_ptr<net::DnsResolver> host_dns; // the system's servers: probes' and fetches' names
  try {
    net::DnsSettings ds;
    ds.servers = cfg.dns.servers;
    ds.timeout = cfg.dns.timeout;
    ds.tries = cfg.dns.tries;
    dns = std::make_unique<net::DnsResolver>(control, ds);
    net::DnsSettings system = ds;
    system.servers.clear(); // /etc/resolv.conf's
    host_dns = std::make_unique<net::DnsResolver>(control, system);
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return 1;
  }
  std::vector<std::unique_ptr<Group>> groups;
  try {
    for (size_t i = 0; i < plan->upstreams.size(); ++i) {
      groups.push_back(std::make_unique<Group>(i, plan->upstreams[i], control, workers, dns.get(),
                                               host_dns.get()));
      groups.back()->start();
    }
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return 1;
  }
  // Signals from here on are held for the loop below (default actions would skip the drain): one
  // that comes during the startup wait is acted on once weir runs.
  asio::signal_set signals(control, SIGTERM, SIGINT, SIGHUP);
  // Host names published at start (a static target by name) are looked up before the workers
  // serve, so that the first requests find their targets: for about as long as one lookup may
  // take with one DNS server (timeout x (2^tries - 1): c-ares doubles each round), at most 10 s.
  // A name answered later joins when it is answered.
  {
    auto waiting = [&] {
      std::vector<std::string> names;
      for (const auto& g : groups)
        if (g->resolving())
          names.push_back(g->name());
      return names;
    };
    auto until = std::chrono::steady_clock::now() +
                 std::min<std::chrono::steady_clock::duration>(
                     cfg.dns.timeout * ((1u << cfg.dns.tries) - 1) + std::chrono::seconds(1),
                     std::chrono::seconds(10));
    // The io_context stops once it runs out of work, which the last answer may be: keep it
    // going, and ready to run() afterwards.
    auto work = asio::make_work_guard(control);
    while (!waiting().empty() && std::chrono::steady_clock::now() < until)
      if (control.run_one_until(until) == 0 && control.stopped())
        break; // (nothing stops it here; no spinning if something ever does)
    work.reset();
    if (control.stopped())
      control.restart();
    if (auto names = waiting(); !names.empty())
      log->warn("upstream{} {}: host names not answered yet; serving the other targets meanwhile, "
                "they join when answered",
                names.size() == 1 ? "" : "s", fmt::join(names, ", "));
    for (auto& g : groups)
      g->stop_waiting();
  }
  // Observations of proxied requests go to the passive health checkers on this thread.
  for (auto& w : workers)
    w->set_observation_sink([&control, &groups](size_t upstream, Observation o) {
      Group* g = groups[upstream].get();
      asio::post(control, [g, o = std::move(o)] { g->observe(o); });
    });

  std::unique_ptr<AdminServer> admin;
  if (!cfg.admin.listen.empty()) {
    tcp::endpoint ep;
    if (!parse_listen_address(cfg.admin.listen, ep)) {
      log->error("admin: invalid address \"{}\"", cfg.admin.listen);
      return 1;
    }
    admin = std::make_unique<AdminServer>(control);
    admin->route("/upstreams", [&groups] {
      boost::json::array all;
      for (const auto& g : groups)
        all.push_back(g->describe());
      boost::json::object o;
      o["upstreams"] = std::move(all);
      return o;
    });
    std::string error;
    if (!admin->listen(ep, error)) {
      log->error("admin: cannot listen on {}: {}", cfg.admin.listen, error);
      return 1;
    }
    log->info("admin endpoint on http://{}/ (upstreams, healthz)",
              format_endpoint(admin->endpoint()));
  }

  for (auto& w : workers) {
    std::string error;
    if (!w->start(error)) {
      log->error("worker {}: {}", w->index(), error);
      for (auto& other : workers)
        other->stop();
      for (auto& other : workers)
        other->join(); // before `groups` goes: a worker's observation sink refers to it
      return 1;
    }
  }

  asio::steady_timer poll(control);
  bool draining = false;
  auto deadline = std::chrono::steady_clock::now();
  std::function<void()> watch_drain = [&] {
    poll.expires_after(std::chrono::milliseconds(20));
    poll.async_wait([&](boost::system::error_code ec) {
      if (ec)
        return;
      bool all = true;
      for (auto& w : workers)
        all = all && w->finished();
      if (all) {
        log->info("all connections closed; exiting");
        control.stop();
        return;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        log->warn("shutdown grace period of {} expired; closing remaining connections",
                  config::format_duration(cfg.system.shutdown_grace));
        for (auto& w : workers)
          w->stop();
        control.stop();
        return;
      }
      watch_drain();
    });
  };
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec)
        return;
      if (sig == SIGHUP) {
        // Until the full reload lands, SIGHUP re-reads the TLS certificates (as renewed by an
        // external tool); a file that fails keeps that listener's current certificates.
        size_t reloaded = 0;
        for (const auto& cl : plan->listeners) {
          if (!cl.tls)
            continue;
          std::vector<std::string> errors;
          if (cl.tls->reload(errors)) {
            ++reloaded;
          } else {
            for (const auto& e : errors)
              log->error("certificate reload failed, keeping the current ones: {}", e);
          }
        }
        log->info("SIGHUP received: certificates of {} TLS listener{} reloaded; the rest of the "
                  "configuration is not reloaded by this version",
                  reloaded, reloaded == 1 ? "" : "s");
        wait_signal();
        return;
      }
      if (sig == SIGINT) {
        log->info("SIGINT received: stopping now");
        for (auto& w : workers)
          w->stop();
        control.stop();
        return;
      }
      if (!draining) {
        draining = true;
        deadline = std::chrono::steady_clock::now() + cfg.system.shutdown_grace;
        log->info("SIGTERM received: draining (grace {})",
                  config::format_duration(cfg.system.shutdown_grace));
        for (auto& w : workers)
          w->post_drain();
        watch_drain();
      }
      wait_signal();
    });
  };
  wait_signal();

  log->info("weir ready: {} worker{}, pid {}", nworkers, nworkers == 1 ? "" : "s", ::getpid());
  control.run();

  for (auto& w : workers)
    w->join();
  admin.reset();
  for (auto& g : groups)
    g->stop();
  workers.clear();
  return 0;
}

} // namespace weir::core
