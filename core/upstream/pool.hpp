// Per-worker pool of idle keep-alive upstream connections, keyed by target. Single-threaded: it
// belongs to one worker's io_context.
#pragma once

#include "core/upstream/conn.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace weir::core::upstream {

class Pool {
public:
  using Stream = Conn;
  using Clock = std::chrono::steady_clock;

  // A usable idle connection to `key`, or null. Connections the peer closed are discarded here.
  std::unique_ptr<Stream> take(const std::string& key);
  // Keep `stream` for reuse unless `max_idle` connections to `key` are already kept.
  void put(const std::string& key, std::unique_ptr<Stream> stream, size_t max_idle,
           std::chrono::milliseconds idle_timeout);
  // Close connections idle past their timeout.
  void sweep();
  void clear();
  // Close the idle connections whose key `pred` accepts (targets that left their group).
  void drop_if(const std::function<bool(const std::string&)>& pred);
  // Whether an idle connection to `key` is kept (it may still turn out closed on take()).
  bool has_idle(const std::string& key) const;
  size_t idle_count() const;

private:
  struct Idle {
    std::unique_ptr<Stream> stream;
    Clock::time_point expires;
  };
  std::unordered_map<std::string, std::vector<Idle>> idle_;
};

} // namespace weir::core::upstream
