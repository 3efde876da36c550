#include "core/upstream/pool.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace weir::core::upstream {

namespace {

// An idle connection is usable when it has nothing to read: no EOF, no stray bytes.
bool still_open(Pool::Stream& stream) {
  if (!stream.is_open())
    return false;
  char byte;
  ssize_t n = ::recv(stream.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0)
    return false; // peer closed
  if (n > 0)
    return false;                                 // unsolicited data
  return errno == EAGAIN || errno == EWOULDBLOCK; // nothing pending: fine
}

} // namespace

std::size_t Pool::hash(std::string_view key) noexcept {
  return std::hash<std::string_view>{}(key);
}

std::unique_ptr<Pool::Stream> Pool::take(const Key& key, bool resendable, Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end())
    return nullptr;
  auto& list = it->second;
  while (!list.empty()) {
    Idle idle = std::move(list.back());
    list.pop_back();
    bool trusted = resendable && now - idle.parked < kTrustIdle && idle.stream->is_open();
    if (idle.expires > now && (trusted || still_open(*idle.stream)))
      return std::move(idle.stream);
    idle.stream->close();
  }
  return nullptr;
}

void Pool::put(const Key& key, std::unique_ptr<Stream> stream, size_t max_idle,
               std::chrono::milliseconds idle_timeout, Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end())
    it = idle_.try_emplace(std::string(key.text)).first;
  auto& list = it->second;
  if (list.size() >= max_idle) {
    stream->close();
    return;
  }
  stream->expires_never();
  list.push_back(Idle{std::move(stream), now + idle_timeout, now});
}

void Pool::sweep() {
  auto now = Clock::now();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    for (size_t i = 0; i < list.size();) {
      if (list[i].expires <= now || !still_open(*list[i].stream)) {
        list[i].stream->close();
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

void Pool::drop_if(const std::function<bool(const std::string&)>& pred) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (pred(it->first)) {
      for (auto& idle : it->second)
        idle.stream->close();
      it = idle_.erase(it);
    } else {
      ++it;
    }
  }
}

void Pool::clear() {
  for (auto& [key, list] : idle_)
    for (auto& idle : list)
      idle.stream->close();
  idle_.clear();
}

size_t Pool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_)
    n += list.size();
  return n;
}

bool Pool::has_idle(const std::string& key) const {
  auto it = idle_.find(key);
  return it != idle_.end() && !it->second.empty();
}

} // namespace weir::core::upstream
