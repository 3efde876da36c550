// Small pieces both HTTP/2 sides (the downstream server session and the upstream client) share:
// a coroutine wake-up, nghttp2 header lists, and the fields HTTP/2 forbids.
#pragma once

#include "core/http/field_code.hpp"
#include "core/net/executor.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/fields.hpp>

#include <nghttp2/nghttp2.h>

#include <cassert>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace weir::core::net {

class Notifier;

// The notifiers of one io_context that hold a waiting coroutine's handler. When the io_context
// is destroyed with coroutines still waiting (a forced stop), it destroys them here, as it
// destroys the handlers of its own pending operations: a handler a notifier kept is otherwise
// unknown to it, and the coroutine frames (and the connection that lives in one) would leak.
class NotifierRegistry final : public boost::asio::execution_context::service {
public:
  static inline boost::asio::execution_context::id id;
  explicit NotifierRegistry(boost::asio::execution_context& ctx)
      : boost::asio::execution_context::service(ctx) {}
  inline void link(Notifier& n);
  inline void unlink(Notifier& n);
  bool shutting_down() const { return shutting_down_; }

private:
  inline void shutdown() override;
  Notifier* head_ = nullptr;
  bool shutting_down_ = false;
};

// A wake-up for one waiting coroutine. Waiters always re-check their condition, so a
// notification that nobody waits for is simply dropped. Single-threaded; one waiter at a time.
//
// A wait without a deadline (the connection's writer between batches, about one per request)
// keeps the coroutine's completion handler and notify() posts it: no timer enters the reactor's
// queue and none is cancelled, which cost about 600 instructions per wake-up. A wait with a
// deadline uses a timer that notify() cancels; the timer is made at the first such wait, as most
// streams' notifiers are never waited on. A cancellation of the waiting coroutine (its
// cancellation slot) counts as a notification, as does the notifier's destruction. Neither kind
// of wait touches the notifier after it resumes.
class Notifier {
public:
  using Clock = std::chrono::steady_clock;
  explicit Notifier(const net::Executor& ex) : ex_(ex) {}
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  ~Notifier() { release(); }

  void notify() {
    if (waiter_) {
      release();
    } else if (timed_) {
      timed_ = false;
      timer_->cancel();
    }
  }

  // Until notify(), as an operation of the awaiting Task: `co_await n.wait();`.
  auto wait() {
    return boost::asio::async_initiate<decltype(use_task) const&, void()>(Keep{this}, use_task);
  }

  // Until notify() or `deadline`; true when notified (or cancelled).
  net::Task<bool> wait(Clock::time_point deadline) {
    if (deadline == Clock::time_point::max()) {
      co_await wait();
      co_return true;
    }
    assert(!waiter_);
    if (!timer_)
      timer_.emplace(ex_);
    timer_->expires_at(deadline);
    timed_ = true;
    auto [ec] = co_await timer_->async_wait(use_task_nothrow);
    co_return ec == boost::asio::error::operation_aborted;
  }

private:
  friend class NotifierRegistry;

  // The completion handler of a Task that awaits an operation with no result. (Boost 1.81's
  // any_completion_handler cannot be moved from an lvalue; the one type we need is named here
  // and checked below, so a Boost that changes it fails to compile rather than misbehaves.)
  using Handler = boost::asio::detail::awaitable_handler<net::Executor>;

  struct Keep {
    Notifier* self;
    template <class H> void operator()(H&& handler) const {
      static_assert(std::is_same_v<std::decay_t<H>, Handler>);
      assert(!self->waiter_);
      auto slot = boost::asio::get_associated_cancellation_slot(handler);
      self->waiter_.emplace(std::forward<H>(handler));
      if (self->registry_ == nullptr)
        self->registry_ = &boost::asio::use_service<NotifierRegistry>(self->ex_.context());
      self->registry_->link(*self);
      if (slot.is_connected()) // release() clears the slot, destroying this lambda: copy first
        slot.assign([n = self](boost::asio::cancellation_type) {
          Notifier* target = n;
          target->notify();
        });
    }
  };

  // The kept handler runs from the event loop, never inside notify()'s caller (an nghttp2
  // callback, say). While the io_context shuts down it is destroyed instead.
  void release() {
    if (!waiter_)
      return;
    registry_->unlink(*this);
    if (auto slot = boost::asio::get_associated_cancellation_slot(*waiter_); slot.is_connected())
      slot.clear();
    if (registry_->shutting_down()) {
      waiter_.reset();
      return;
    }
    boost::asio::post(ex_, std::move(*waiter_));
    waiter_.reset();
  }

  net::Executor ex_;
  std::optional<Handler> waiter_;
  NotifierRegistry* registry_ = nullptr; // ex_'s, found at the first wait without a deadline
  Notifier* prev_ = nullptr;             // in the registry's list while waiter_ is set
  Notifier* next_ = nullptr;
  bool timed_ = false; // a wait with a deadline may be pending on timer_ (stays set after
                       // its timer fired; a cancel then finds nothing)
  std::optional<net::SteadyTimer> timer_;
};

void NotifierRegistry::link(Notifier& n) {
  n.prev_ = nullptr;
  n.next_ = head_;
  if (head_ != nullptr)
    head_->prev_ = &n;
  head_ = &n;
}

void NotifierRegistry::unlink(Notifier& n) {
  if (n.prev_ != nullptr)
    n.prev_->next_ = n.next_;
  else
    head_ = n.next_;
  if (n.next_ != nullptr)
    n.next_->prev_ = n.prev_;
  n.prev_ = n.next_ = nullptr;
}

void NotifierRegistry::shutdown() {
  shutting_down_ = true;
  // Destroying a handler may destroy other notifiers (and unlink them): take one at a time.
  while (head_ != nullptr)
    head_->release();
}

// nghttp2's allocator for our sessions: the calling thread's small-block lists (h2_memory.cpp).
nghttp2_mem* h2_memory();

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

// Fields that have no place in an HTTP/2 message (RFC 9113 8.2.2), dropped from what we send.
inline bool connection_specific(boost::beast::http::field id) {
  using boost::beast::http::field;
  return id == field::connection || id == field::keep_alive || id == field::transfer_encoding ||
         id == field::upgrade || id == field::proxy_connection || id == field::te;
}

// Name/value pairs for nghttp2, which copies them when a frame is submitted. The names (in
// lower case) and copied values are kept in one string, so a list that is cleared and used again
// (a connection keeps one for its responses) costs no allocation once it has grown.
class HeaderList {
public:
  // `name` and `value` are copied into the list.
  void add(std::string_view name, std::string_view value) {
    entries_.push_back({keep(name), keep(value)});
  }
  // A field under its name in lower case, unless HTTP/2 has no place for it (or it is `skip`,
  // which is in lower case). `view_value`: the value is not copied, and must outlive the use of
  // build() (a submission right away). A known name's lower case is static text
  // (http::lower_field_name), neither folded nor copied.
  void add_field(boost::beast::http::field id, std::string_view name, std::string_view value,
                 bool view_value, std::string_view skip = {}) {
    using boost::beast::http::field;
    if (connection_specific(id))
      return;
    std::string_view lower = id == field::unknown ? std::string_view{} : http::lower_field_name(id);
    if (lower.empty()) {
      add_unknown(name, value, view_value, skip);
      return;
    }
    if (!skip.empty() && lower == skip)
      return;
    entries_.push_back({Part{lower.data(), 0, lower.size()},
                        view_value ? Part{value.data(), 0, value.size()} : keep(value)});
  }
  template <class Fields>
  void add_all(const Fields& f, bool view_values = false, std::string_view skip = {}) {
    for (const auto& field : f)
      add_field(field.name(), field.name_string(), field.value(), view_values, skip);
  }
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  void clear() {
    text_.clear();
    entries_.clear();
  }
  // The array for nghttp2 (size() entries), valid until the list changes.
  const nghttp2_nv* build() {
    nva_.clear();
    for (const auto& e : entries_)
      nva_.push_back(make_nv(view(e.name), view(e.value)));
    return nva_.data();
  }

private:
  struct Part {
    const char* data; // null: at `offset` in text_ (which may move while the list grows)
    size_t offset;
    size_t size;
  };
  struct Entry {
    Part name, value;
  };
  Part keep(std::string_view s) {
    size_t at = text_.size();
    text_.append(s);
    return {nullptr, at, s.size()};
  }
  // A field that came without a code, folded to lower case into text_. Its name is looked up
  // once more (a caller may have inserted a known name without its code); a pseudo-header's or
  // an empty name has no place among the fields.
  void add_unknown(std::string_view name, std::string_view value, bool view_value,
                   std::string_view skip) {
    if (name.empty() || name.front() == ':')
      return;
    size_t at = text_.size();
    text_.resize(at + name.size());
    for (size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      text_[at + i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    }
    std::string_view lower(text_.data() + at, name.size());
    if ((!skip.empty() && lower == skip) || connection_specific(http::field_code(lower))) {
      text_.resize(at);
      return;
    }
    entries_.push_back({Part{nullptr, at, name.size()},
                        view_value ? Part{value.data(), 0, value.size()} : keep(value)});
  }
  std::string_view view(const Part& p) const {
    return {p.data != nullptr ? p.data : text_.data() + p.offset, p.size};
  }
  std::string text_;
  std::vector<Entry> entries_;
  std::vector<nghttp2_nv> nva_;
};

} // namespace weir::core::net
