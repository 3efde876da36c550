#include "core/runtime/worker.hpp"

#include "core/http/field_code.hpp"
#include "core/http/host_match.hpp"

#include "core/http/session.hpp"
#include "core/runtime/logging.hpp"
#include "core/runtime/parking.hpp"
#include "core/runtime/small_alloc.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>

#include <malloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <type_traits>
#include <utility>

// jemalloc's control interface, when the executable is linked with it (else null).
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace weir::core {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Return the heap's free pages to the system: jemalloc purges them (and this thread's cache of
// freed blocks); glibc's malloc trims.
void give_back_free_memory() {
  if (mallctl != nullptr) {
    mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0); // 4096: MALLCTL_ARENAS_ALL
    return;
  }
  ::malloc_trim(0);
}

} // namespace

const WorkerRoute& WorkerService::match(std::string_view method, std::string_view host,
                                        std::string_view path) const {
  std::optional<std::string> name; // `host` normalised, once a route needs it
  for (const auto& r : routes) {
    const CompiledRoute& p = *r.plan;
    if (!p.methods.empty() &&
        std::find(p.methods.begin(), p.methods.end(), method) == p.methods.end())
      continue;
    if (!p.hosts.empty()) {
      if (!name)
        name = http::host_without_port(host);
      if (std::none_of(p.hosts.begin(), p.hosts.end(),
                       [&](const auto& h) { return http::host_matches(h, *name); }))
        continue;
    }
    if (p.exact) {
      if (path == *p.exact)
        return r;
      continue;
    }
    if (p.regex) {
      if (p.regex->search(path))
        return r;
      continue;
    }
    if (!p.prefix)
      return r; // host and/or methods only
    const std::string& prefix = *p.prefix;
    if (path.substr(0, prefix.size()) != prefix)
      continue;
    // On a segment boundary: "/static" matches "/static" and "/static/x", not "/staticx".
    if (path.size() == prefix.size() || prefix.back() == '/' || path[prefix.size()] == '/')
      return r;
  }
  return fallback ? *fallback : unmatched;
}

Worker::Worker(size_t index, const Plan& plan)
    // One thread runs the io_context, and only it touches the worker's sockets: the reactor's
    // per-socket locking is off. Posting from other threads (targets, drain) stays safe.
    : index_(index), plan_(plan),
      ioc_(std::make_unique<asio::io_context>(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO)),
      h2_pool_(std::make_unique<upstream::H2Pool>(ioc_->get_executor())),
      sweep_timer_(std::make_unique<asio::steady_timer>(*ioc_)),
      idle_timer_(std::make_unique<asio::steady_timer>(*ioc_)) {
  parking_ = std::make_unique<ParkingLot>(
      *ioc_, [this](ParkedConn&& c) { http::resume_session(*this, std::move(c)); });
  auto shortest = kParkAfter * 8;
  for (const auto& s : plan.services) {
    const auto& limits = s.cfg->limits;
    shortest = std::min(
        {shortest, std::chrono::duration_cast<std::chrono::milliseconds>(limits.keepalive_timeout),
         std::chrono::duration_cast<std::chrono::milliseconds>(limits.header_timeout)});
  }
  idle_period_ = std::clamp(shortest / 8, std::chrono::milliseconds(10),
                            std::chrono::milliseconds(kParkAfter));
}

Worker::~Worker() {
  stop();
  join();
}

void Worker::Listener::close() {
  boost::system::error_code ec;
  if (tcp)
    tcp->close(ec);
  if (unix_socket)
    unix_socket->close(ec);
}

bool Worker::Listener::is_open() const {
  return (tcp && tcp->is_open()) || (unix_socket && unix_socket->is_open());
}

tcp::endpoint Worker::listen(size_t listener, const tcp::endpoint& ep,
                             boost::system::error_code& ec) {
  auto l = std::make_unique<Listener>();
  l->index = listener;
  l->tcp.emplace(*ioc_);
  auto& a = *l->tcp;
  a.open(ep.protocol(), ec);
  if (ec)
    return {};
  a.set_option(asio::socket_base::reuse_address(true), ec);
  int one = 1;
  if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
    return {};
  }
  if (ep.address().is_v6())
    a.set_option(asio::ip::v6_only(true), ec);
  a.bind(ep, ec);
  if (ec)
    return {};
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return {};
  auto bound = a.local_endpoint(ec);
  listeners_.push_back(std::move(l));
  return bound;
}

int Worker::listen_unix(size_t listener, const std::string& path, uint32_t mode, int fd,
                        boost::system::error_code& ec) {
  using local = asio::local::stream_protocol;
  auto l = std::make_unique<Listener>();
  l->index = listener;
  l->view.unix_socket = true;
  if (fd >= 0) {
    // Unix sockets have no SO_REUSEPORT balancing: every worker accepts on the same socket.
    int copy = ::dup(fd);
    if (copy < 0) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      return -1;
    }
    l->unix_socket.emplace(*ioc_, local(), copy);
    int result = l->unix_socket->native_handle();
    listeners_.push_back(std::move(l));
    return result;
  }
  // A stale socket file from an earlier run is replaced; a socket some process still accepts on
  // is not taken over, and any other kind of file is not touched.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ec = boost::system::error_code(EEXIST, boost::system::system_category());
      return -1;
    }
    local::socket probe(*ioc_);
    boost::system::error_code probe_ec;
    probe.open(local(), probe_ec);
    if (!probe_ec) {
      probe.non_blocking(true, probe_ec);
      probe.connect(local::endpoint(path), probe_ec);
      if (!probe_ec || probe_ec == asio::error::would_block || probe_ec == asio::error::try_again) {
        ec = asio::error::address_in_use; // someone listens there
        return -1;
      }
    }
    ::unlink(path.c_str());
  }
  l->unix_socket.emplace(*ioc_);
  auto& a = *l->unix_socket;
  a.open(local(), ec);
  if (ec)
    return -1;
  a.bind(local::endpoint(path), ec);
  if (ec)
    return -1;
  if (::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
    return -1;
  }
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return -1;
  int result = a.native_handle();
  listeners_.push_back(std::move(l));
  return result;
}

void Worker::build_instances() {
  upstreams_.resize(plan_.upstreams.size());
  for (size_t i = 0; i < plan_.upstreams.size(); ++i) {
    upstreams_[i].plan = &plan_.upstreams[i];
    upstreams_[i].index = i;
    upstreams_[i].observed = plan_.upstreams[i].observed;
    upstreams_[i].lb = std::make_unique<plugin::LbInstance>(plan_.upstreams[i].lb);
  }
  auto make_route = [&](const CompiledRoute& r, bool with_upstream) {
    WorkerRoute wr;
    wr.plan = &r;
    wr.upstream = with_upstream ? &upstreams_[r.upstream] : nullptr;
    for (const auto& f : r.filters) {
      filters_.push_back(std::make_unique<plugin::FilterInstance>(f));
      wr.filters.push_back(filters_.back().get());
    }
    return wr;
  };
  services_.resize(plan_.services.size());
  for (size_t s = 0; s < plan_.services.size(); ++s) {
    const auto& cs = plan_.services[s];
    auto& ws = services_[s];
    ws.plan = &cs;
    for (const auto& r : cs.routes)
      ws.routes.push_back(make_route(r, true));
    if (cs.fallback)
      ws.fallback = make_route(*cs.fallback, true);
    for (const auto& f : cs.filters) {
      filters_.push_back(std::make_unique<plugin::FilterInstance>(f));
      ws.unmatched.filters.push_back(filters_.back().get());
    }
    ws.unmatched.plan = nullptr;
  }
  for (auto& l : listeners_) {
    const auto& cl = plan_.listeners[l->index];
    l->view.plan = &cl;
    for (size_t s : cl.services)
      l->view.services.push_back(&services_[s]);
  }
}

bool Worker::start(std::string& error) {
  // The lower-case names of known fields (HTTP/2 header lists) are a table built on first use:
  // here, before any request, rather than during the first HTTP/2 response.
  (void)http::lower_field_name(boost::beast::http::field::host);
  std::promise<std::string> ready;
  auto result = ready.get_future();
  thread_ = std::thread([this, &ready] {
    tls_quiet_.install(); // (TLS connections made on this thread join it)
    try {
      build_instances();
    } catch (const std::exception& e) {
      ready.set_value(e.what());
      return;
    }
    for (size_t i = 0; i < listeners_.size(); ++i)
      accept_next(i);
    schedule_sweep();
    schedule_idle_sweep(idle_period_);
    ready.set_value(std::string());
    ioc_->run();
    // Unfinished sessions (a forced stop) die with the io_context, before the plugin instances
    // they use; the instances are then destroyed on their own thread, as the ABI promises.
    tearing_down_ = true;
    listeners_.clear();
    sweep_timer_.reset();
    idle_timer_.reset();
    parking_.reset();
    pool_.clear();
    h2_pool_->clear();
    {
      std::lock_guard lock(ioc_mutex_);
      ioc_.reset();
    }
    sessions_.clear();
    services_.clear();
    upstreams_.clear();
    filters_.clear();
    finished_ = true;
  });
  error = result.get();
  if (!error.empty()) {
    thread_.join();
    return false;
  }
  return true;
}

// Accepts the next connection on listeners_[index] (TCP or Unix socket) and starts its session.
// A failure such as EMFILE is logged, and accepting resumes 50 ms later. The listener is looked
// up again on each round: a reload or a drain may have closed it meanwhile.
void Worker::accept_next(size_t index) {
  auto on_accept = [this, index](boost::system::error_code ec, auto socket) {
    auto& listener = *listeners_[index];
    if (!listener.is_open() || draining_)
      return;
    if (ec) {
      if (ec == asio::error::operation_aborted)
        return;
      logger("core")->warn("accept failed on worker {}: {}", index_, ec.message());
      auto timer = std::make_shared<asio::steady_timer>(*ioc_, std::chrono::milliseconds(50));
      timer->async_wait([this, index, timer](boost::system::error_code) { accept_next(index); });
      return;
    }
    if constexpr (std::is_same_v<typename decltype(socket)::protocol_type, tcp>) {
      socket.set_option(tcp::no_delay(true), ec);
      http::start_session(*this, listener.view, std::move(socket));
    } else {
      http::start_unix_session(*this, listener.view, std::move(socket));
    }
    accept_next(index);
  };
  auto& l = *listeners_[index];
  if (l.tcp)
    l.tcp->async_accept(std::move(on_accept));
  else
    l.unix_socket->async_accept(std::move(on_accept));
}

void Worker::schedule_sweep() {
  sweep_timer_->expires_after(std::chrono::seconds(1));
  sweep_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || draining_)
      return;
    pool_.sweep();
    h2_pool_->sweep();
    schedule_sweep();
  });
}

void Worker::schedule_idle_sweep(std::chrono::milliseconds after) {
  idle_resting_ = after > idle_period_;
  idle_timer_->expires_after(after);
  idle_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || draining_)
      return;
    auto now = std::chrono::steady_clock::now();
    if (trim_pending_ && now - last_give_back_ >= kGiveBackEvery) {
      trim_pending_ = false;
      last_give_back_ = now;
      give_back_free_memory();
    }
    parking_->expire(now);
    // on_idle_timeout only cancels a wait (its session resumes later), so the list stays intact.
    size_t parked = 0;
    for (auto* s : sessions_)
      if (s->idle_deadline <= now) {
        s->idle_deadline = std::chrono::steady_clock::time_point::max();
        if (s->on_idle_timeout())
          ++parked;
      }
    // TLS connections that made no call into OpenSSL since the last sweep give its record
    // buffers back (net::TlsQuietList).
    if (tls_quiet_.size() > 0) {
      auto swept = tls_quiet_.sweep();
      if (swept.released + swept.kept > 0)
        logger("tls")->trace("record buffers of {} quiet connections released, {} kept (OpenSSL "
                             "inside a record)",
                             swept.released, swept.kept);
    }
    // Blocks that a load peak left in the worker's caches go back to the heap, and after a burst
    // of connections going idle together (many sessions freed at once), the heap gives its free
    // pages back to the system: without that, the process would keep the peak's RSS.
    size_t freed = 0;
    if (parked > 0)
      last_parked_ = now;
    if (now - last_parked_ <= kTrimWhileParking || now - last_trim_ >= kTrimEvery) {
      last_trim_ = now;
      freed = buffers_.trim() + trim_small_blocks();
    }
    if (parked >= kTrimAfterParked || freed >= kTrimAfterBytes)
      trim_pending_ = true;
    // With no connection at all (none awake, none parked) and nothing left to give back, the
    // worker rests: one sweep a second (for the periodic trim) instead of 40, and the next
    // connection brings the short period back (add_session).
    bool quiet = sessions_.empty() && parking_->size() == 0 && !trim_pending_ &&
                 now - last_parked_ > kTrimWhileParking;
    schedule_idle_sweep(quiet ? kTrimEvery : idle_period_);
  });
}

void Worker::post_targets(size_t index, std::shared_ptr<const upstream::TargetSet> set) {
  std::lock_guard lock(ioc_mutex_);
  if (!ioc_)
    return;
  asio::post(*ioc_, [this, index, set = std::move(set)]() mutable {
    if (index >= upstreams_.size())
      return;
    auto& up = upstreams_[index];
    // Targets that left the set drain: requests already on them finish, no new request goes
    // there, and their pooled connections close (idle ones now, HTTP/2 ones when done). So do
    // the connections of a target that stays but now leads elsewhere (its host name resolves to
    // another address, or the discovery moved it).
    std::vector<std::string> gone;
    if (up.targets) {
      for (const auto& old : up.targets->targets) {
        bool kept =
            std::any_of(set->targets.begin(), set->targets.end(), [&](const upstream::Target& t) {
              return upstream::same_destination(t, old);
            });
        if (!kept)
          gone.push_back(up.plan->cfg->name + '\n' + old.id);
      }
    }
    if (!gone.empty()) {
      auto leaving = [&gone](const std::string& key) {
        return std::any_of(gone.begin(), gone.end(), [&](const std::string& prefix) {
          return key.size() >= prefix.size() && key.compare(0, prefix.size(), prefix) == 0 &&
                 (key.size() == prefix.size() || key[prefix.size()] == '\n');
        });
      };
      pool_.drop_if(leaving);
      h2_pool_->retire_if(leaving);
    }
    up.lb->set_targets(set->abi);
    up.targets = std::move(set);
  });
}

void Worker::post_drain() {
  std::lock_guard lock(ioc_mutex_);
  if (!ioc_)
    return;
  asio::post(*ioc_, [this] {
    draining_ = true;
    for (auto& l : listeners_)
      l->close();
    sweep_timer_->cancel();
    idle_timer_->cancel();
    pool_.clear();
    h2_pool_->clear(); // connections still carrying requests close when those are done
    parking_->close_all();
    // Copy: on_drain may remove the session from the list.
    std::vector<Drainable*> sessions(sessions_);
    for (auto* s : sessions)
      s->on_drain();
  });
}

void Worker::stop() {
  std::lock_guard lock(ioc_mutex_);
  if (ioc_)
    ioc_->stop();
}

bool Worker::log_gate(const std::string& subject, bool& last, uint64_t& suppressed) {
  auto now = std::chrono::steady_clock::now();
  if (gates_.size() > 4096)
    gates_.clear(); // subjects come and go with discovery: keep the map bounded
  Gate& g = gates_[subject];
  suppressed = 0;
  last = false;
  if (now - g.window >= std::chrono::seconds(1)) {
    suppressed = g.suppressed;
    g = Gate{now, 0, 0};
  }
  if (g.count >= kGateBurst) {
    ++g.suppressed;
    return false;
  }
  ++g.count;
  last = g.count == kGateBurst;
  return true;
}

void Worker::join() {
  if (thread_.joinable())
    thread_.join();
}

void Worker::add_session(Drainable* s) {
  s->worker_slot = sessions_.size();
  sessions_.push_back(s);
  if (idle_resting_ && !draining_ && idle_timer_)
    schedule_idle_sweep(idle_period_); // (replaces the resting wait, which ends aborted)
}

void Worker::remove_session(Drainable* s) {
  if (tearing_down_)
    return;
  size_t i = s->worker_slot;
  Drainable* last = sessions_.back();
  sessions_[i] = last;
  last->worker_slot = i;
  sessions_.pop_back();
}

} // namespace weir::core
