// A worker thread: its own io_context, its own listening sockets (SO_REUSEPORT), its own upstream
// pools and its own instances of the hot-path plugins. A request never leaves its worker.
#pragma once

#include "core/plugin/modules.hpp"
#include "core/runtime/buffer_pool.hpp"
#include "core/runtime/plan.hpp"
#include "core/upstream/h2_client.hpp"
#include "core/upstream/pool.hpp"
#include "core/upstream/targets.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace weir::core {

class ParkingLot;

// How one attempt on one target ended, for passive health checkers (control thread).
struct Observation {
  std::string target_id;
  uint32_t status = 0; // 0: no response
  bool connect_failed = false;
  bool timed_out = false;
  uint64_t duration_ns = 0;
};
using ObservationSink = std::function<void(size_t upstream, Observation)>;

struct WorkerUpstream {
  const CompiledUpstream* plan = nullptr;
  size_t index = 0;
  bool observed = false; // some health checker of the group wants observations
  std::unique_ptr<plugin::LbInstance> lb;
  std::shared_ptr<const upstream::TargetSet> targets;
};

struct WorkerRoute {
  const CompiledRoute* plan = nullptr;
  WorkerUpstream* upstream = nullptr; // null: no upstream (filters must answer, else 404)
  std::vector<plugin::FilterInstance*> filters;
};

struct WorkerService {
  const CompiledService* plan = nullptr;
  std::vector<WorkerRoute> routes;
  std::optional<WorkerRoute> fallback;
  WorkerRoute unmatched; // service filters only, no upstream
  // The route for a request, among the routes whose host and method match: exact path, then
  // longest prefix on a segment boundary, then the first regex that matches; else the fallback
  // (the service's upstream), else `unmatched`. `host` is the request's Host as sent (any case,
  // a port, a trailing dot): it is normalised only when a route names hosts.
  const WorkerRoute& match(std::string_view method, std::string_view host,
                           std::string_view path) const;
};

// A listening address as the sessions on it see it.
struct WorkerListener {
  const CompiledListener* plan = nullptr;
  std::vector<const WorkerService*> services; // never empty; the first is the default
  bool unix_socket = false;
};

// Something the worker can ask to close when it drains (an idle client connection), and whose
// idle wait it times out: a session waiting for a request sets `idle_deadline`, and the worker's
// idle sweep calls on_idle_timeout() once it has passed (no timer per wait).
class Drainable {
public:
  virtual void on_drain() = 0;
  // Returns true when the session gives a buffer back (it parks rather than closes).
  virtual bool on_idle_timeout() { return false; }
  std::chrono::steady_clock::time_point idle_deadline =
      std::chrono::steady_clock::time_point::max();
  size_t worker_slot = 0; // the worker's bookkeeping: its place in the worker's list

protected:
  ~Drainable() = default;
};

class Worker {
public:
  // A plain keep-alive connection quiet for this long (between kParkAfter and twice that, by
  // the idle sweep) is parked (runtime/parking.hpp). Short, so that a burst of clients that go
  // idle together never holds many sessions at once: their peak would stay in the heap as
  // fragmentation. Waking a parked connection costs about six system calls.
  static constexpr std::chrono::milliseconds kParkAfter{25};

  Worker(size_t index, const Plan& plan);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Bind plan listener `listener` for this worker (called on the main thread before start).
  // `endpoint` may carry port 0 the first time; returns the bound endpoint.
  boost::asio::ip::tcp::endpoint listen(size_t listener, const boost::asio::ip::tcp::endpoint& ep,
                                        boost::system::error_code& ec);
  // The same for a Unix socket: the first worker binds `path` (fd < 0); the others share its
  // socket (pass the fd it returned). Returns the listening fd.
  int listen_unix(size_t listener, const std::string& path, uint32_t mode, int fd,
                  boost::system::error_code& ec);
  // Start the thread: make the plugin instances there, then serve. Blocks until the instances
  // exist; false (with `error`) when one could not be made.
  bool start(std::string& error);
  // Thread-safe: hand the worker a new target set for upstream `index`.
  void post_targets(size_t index, std::shared_ptr<const upstream::TargetSet> set);
  // Before start: where observations of upstreams with passive health checkers go (called on the
  // worker's thread; it must hand them to the control thread itself).
  void set_observation_sink(ObservationSink sink) { observation_sink_ = std::move(sink); }
  // Thread-safe: stop accepting, close idle connections, finish in-flight requests.
  void post_drain();
  // Thread-safe: stop now.
  void stop();
  void join();
  bool finished() const { return finished_.load(); }

  // --- used by sessions, on the worker's thread ---
  boost::asio::io_context& context() { return *ioc_; }
  upstream::Pool& pool() { return pool_; }
  BufferPool& buffers() { return buffers_; }
  upstream::H2Pool& h2_pool() { return *h2_pool_; }
  // Where idle keep-alive connections wait for their next request (see runtime/parking.hpp).
  ParkingLot& parking() { return *parking_; }
  bool draining() const { return draining_; }
  // Every session of the worker registers (in its constructor) and unregisters (destructor).
  void add_session(Drainable* s);
  void remove_session(Drainable* s);
  size_t index() const { return index_; }
  // Rate limit for repeated log lines about one subject (a target's connect failures): true
  // when this occurrence may be logged. At most kGateBurst lines per subject per second; the
  // last one allowed says so (`last` is set), and the next line after a quiet second reports how
  // many were left out (`suppressed`).
  static constexpr uint32_t kGateBurst = 10;
  bool log_gate(const std::string& subject, bool& last, uint64_t& suppressed);
  void observe(size_t upstream, Observation o) {
    if (observation_sink_)
      observation_sink_(upstream, std::move(o));
  }

private:
  void build_instances();
  void accept_next(size_t listener);
  void schedule_sweep();
  void schedule_idle_sweep(std::chrono::milliseconds after);
  void check_finished();

  size_t index_;
  const Plan& plan_;
  // Before ioc_: unfinished requests give their buffers back when the io_context goes.
  BufferPool buffers_;
  // The worker's TLS connections, whose OpenSSL buffers the idle sweep gives back once they are
  // quiet. Before ioc_ and the pools, whose connections leave it as they go.
  net::TlsQuietList tls_quiet_;
  // Owned by pointer so the thread can destroy it (and with it any unfinished session) while the
  // plugin instances the sessions point to still exist.
  std::unique_ptr<boost::asio::io_context> ioc_;
  std::mutex ioc_mutex_;
  upstream::Pool pool_;
  std::unique_ptr<upstream::H2Pool> h2_pool_;
  std::vector<WorkerUpstream> upstreams_;
  std::vector<WorkerService> services_;
  std::vector<std::unique_ptr<plugin::FilterInstance>> filters_;
  struct Listener {
    size_t index; // into plan.listeners
    // Accepted sockets carry the io_context's own executor type (net/executor.hpp).
    std::optional<boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, net::Executor>> tcp;
    std::optional<
        boost::asio::basic_socket_acceptor<boost::asio::local::stream_protocol, net::Executor>>
        unix_socket;
    WorkerListener view;
    void close();
    bool is_open() const;
  };
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<Drainable*> sessions_; // unordered: a removal moves the last one into the gap
  std::unique_ptr<ParkingLot> parking_;
  std::unique_ptr<boost::asio::steady_timer> sweep_timer_;
  // Times out and parks idle sessions (see Drainable) every idle_period_: kParkAfter, or an
  // eighth of the shortest keepalive- or header-timeout when that is shorter (10 ms at least).
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  std::chrono::milliseconds idle_period_{kParkAfter};
  bool idle_resting_ = false; // no connection: the sweep waits kTrimEvery (see schedule_idle_sweep)
  // Many sessions parked, or the caches gave much back: give freed memory to the system at a
  // coming sweep, at most once per kGiveBackEvery (a purge makes the next allocations fault).
  bool trim_pending_ = false;
  std::chrono::steady_clock::time_point last_give_back_;
  static constexpr size_t kTrimAfterParked = 64;
  static constexpr size_t kTrimAfterBytes = 256 * 1024;
  static constexpr std::chrono::milliseconds kGiveBackEvery{500};
  // The buffer pool and the small-block lists give back the blocks that stayed unused since
  // their previous trim: at every sweep while sessions are parking (a load going idle: the
  // blocks a parked session freed go back two trims later), else once per kTrimEvery. Under a
  // steady load a 25 ms period is shorter than the load's own ups and downs, and each trim would
  // free blocks the next burst allocates again.
  std::chrono::steady_clock::time_point last_trim_;
  std::chrono::steady_clock::time_point last_parked_;
  static constexpr std::chrono::milliseconds kTrimEvery{1000};
  static constexpr std::chrono::milliseconds kTrimWhileParking{100};
  bool draining_ = false;
  bool tearing_down_ = false;
  std::atomic<bool> finished_{false};
  ObservationSink observation_sink_;
  struct Gate {
    std::chrono::steady_clock::time_point window;
    uint32_t count = 0;
    uint64_t suppressed = 0;
  };
  std::unordered_map<std::string, Gate> gates_;
  std::thread thread_;
};

} // namespace weir::core
