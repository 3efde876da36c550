// Small pieces both HTTP/2 sides (the downstream server session and the upstream client) share:
// a coroutine wake-up, nghttp2 header lists, and the fields HTTP/2 forbids.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/fields.hpp>

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::core::net {

// A wake-up for one waiting coroutine (a timer cancelled to notify). Waiters always re-check
// their condition, so a notification that nobody waits for is simply dropped. Single-threaded.
class Notifier {
public:
  using Clock = std::chrono::steady_clock;
  explicit Notifier(const boost::asio::any_io_executor& ex) : timer_(ex) {}
  void notify() { timer_.cancel(); }
  // Until notify() or `deadline`; true when notified (or cancelled).
  boost::asio::awaitable<bool> wait(Clock::time_point deadline = Clock::time_point::max()) {
    timer_.expires_at(deadline);
    auto [ec] = co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return ec == boost::asio::error::operation_aborted;
  }

private:
  boost::asio::steady_timer timer_;
};

inline std::string_view as_view(const uint8_t* p, size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

inline nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  nghttp2_nv nv{};
  nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nv;
}

inline std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Fields that have no place in an HTTP/2 message (RFC 9113 8.2.2), dropped from what we send.
inline bool connection_specific(std::string_view lower) {
  return lower.empty() || lower.front() == ':' || lower == "connection" || lower == "keep-alive" ||
         lower == "transfer-encoding" || lower == "upgrade" || lower == "proxy-connection" ||
         lower == "te";
}

// Name/value pairs for nghttp2 (which copies them when a frame is submitted).
struct HeaderList {
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<nghttp2_nv> nva;

  void add(std::string name, std::string_view value) {
    fields.emplace_back(std::move(name), std::string(value));
  }
  template <class Fields> void add_all(const Fields& f) {
    for (const auto& field : f) {
      std::string name = lowercase(field.name_string());
      if (!connection_specific(name))
        add(std::move(name), field.value());
    }
  }
  const nghttp2_nv* build() {
    nva.clear();
    nva.reserve(fields.size());
    for (const auto& [n, v] : fields)
      nva.push_back(make_nv(n, v));
    return nva.data();
  }
};

} // namespace weir::core::net
