// Per-worker pool of idle keep-alive upstream connections, keyed by target. Single-threaded: it
// belongs to one worker's io_context.
#pragma once

#include "core/upstream/conn.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace weir::core::upstream {

class Pool {
public:
  using Stream = Conn;
  using Clock = std::chrono::steady_clock;

  // A usable idle connection to `key`, or null. Connections the peer closed are discarded here:
  // each is probed (one non-blocking peek) before it is handed out, except when `resendable`
  // (the request may be sent again on a fresh connection if this one turns out closed) and it
  // went idle less than kTrustIdle ago, which saves a system call per request under load.
  // This is also where an end of file that a drained read consumed with the last response
  // (net/drained_read.hpp) is found: the probe sees it, or the closed peer resets the next
  // request, which is then sent again.
  static constexpr std::chrono::milliseconds kTrustIdle{1000};
  // `key` comes with its hash worked out beforehand (a target's key is hashed once, when its
  // group publishes it), so no request hashes it again.
  struct Key {
    std::string_view text;
    std::size_t hash;
  };
  static std::size_t hash(std::string_view key) noexcept;
  static Key keyed(std::string_view key) noexcept { return {key, hash(key)}; }
  // `now`: the caller's reading of the clock, when it has one (the request path reads it once
  // for several uses).
  std::unique_ptr<Stream> take(const Key& key, bool resendable = false,
                               Clock::time_point now = Clock::now());
  // Keep `stream` for reuse unless `max_idle` connections to `key` are already kept.
  void put(const Key& key, std::unique_ptr<Stream> stream, size_t max_idle,
           std::chrono::milliseconds idle_timeout, Clock::time_point now = Clock::now());
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
    Clock::time_point parked;
  };
  // Looked up by a std::string or a Key (hashed beforehand) alike.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(const std::string& s) const noexcept { return hash(s); }
    std::size_t operator()(const Key& k) const noexcept { return k.hash; }
  };
  struct KeyEqual {
    using is_transparent = void;
    bool operator()(const std::string& a, const std::string& b) const noexcept { return a == b; }
    bool operator()(const Key& a, const std::string& b) const noexcept { return a.text == b; }
    bool operator()(const std::string& a, const Key& b) const noexcept { return a == b.text; }
  };
  std::unordered_map<std::string, std::vector<Idle>, KeyHash, KeyEqual> idle_;
};

} // namespace weir::core::upstream
