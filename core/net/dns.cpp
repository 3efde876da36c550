#include "core/net/dns.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <ares.h>
#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>

namespace weir::core::net {

namespace asio = boost::asio;

namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypePtr = 12;
constexpr uint16_t kTypeTxt = 16;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kTypeSrv = 33;
constexpr uint16_t kTypeSoa = 6;
constexpr uint16_t kClassIn = 1;

uint16_t be16(const unsigned char* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t be32(const unsigned char* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

std::string normalise(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (!name.empty() && name.back() == '.')
    name.pop_back();
  return name;
}

// Expand the (possibly compressed) name at `p`; advances `p` past it.
bool read_name(const unsigned char* msg, size_t len, const unsigned char*& p, std::string& out) {
  char* s = nullptr;
  long enclen = 0;
  if (ares_expand_name(p, msg, static_cast<int>(len), &s, &enclen) != ARES_SUCCESS)
    return false;
  out = normalise(s);
  ares_free_string(s);
  p += enclen;
  return p <= msg + len;
}

} // namespace

bool parse_dns_response(const unsigned char* msg, size_t len, uint16_t type, DnsAnswer& out,
                        std::string& error) {
  if (msg == nullptr || len < 12) {
    error = "malformed answer (shorter than a DNS header)";
    return false;
  }
  const unsigned char* end = msg + len;
  uint16_t qd = be16(msg + 4);
  uint16_t an = be16(msg + 6);
  uint16_t ns = be16(msg + 8);
  const unsigned char* p = msg + 12;
  std::string name;
  for (uint16_t i = 0; i < qd; ++i) {
    if (!read_name(msg, len, p, name) || end - p < 4) {
      error = "malformed answer (question)";
      return false;
    }
    p += 4;
  }
  for (uint32_t i = 0; i < static_cast<uint32_t>(an) + ns; ++i) {
    bool authority = i >= an;
    if (!read_name(msg, len, p, name) || end - p < 10) {
      error = "malformed answer (record header)";
      return false;
    }
    uint16_t rtype = be16(p);
    uint16_t rclass = be16(p + 2);
    uint32_t ttl = be32(p + 4);
    uint16_t rdlen = be16(p + 8);
    p += 10;
    if (end - p < rdlen) {
      error = "malformed answer (record data)";
      return false;
    }
    const unsigned char* rdata = p;
    p += rdlen;
    if (rclass != kClassIn)
      continue;
    if (authority) {
      if (rtype == kTypeSoa) {
        const unsigned char* q = rdata;
        std::string mname, rname;
        if (read_name(msg, len, q, mname) && read_name(msg, len, q, rname) && p - q >= 20)
          out.negative_ttl = std::min(ttl, be32(q + 16));
      }
      continue;
    }
    if (rtype != type)
      continue; // CNAMEs and whatever else came along
    DnsRecord r;
    r.type = rtype;
    r.ttl = ttl;
    r.name = name;
    char buf[INET6_ADDRSTRLEN] = {};
    if (rtype == kTypeA) {
      if (rdlen != 4 || inet_ntop(AF_INET, rdata, buf, sizeof buf) == nullptr)
        continue;
      r.address = buf;
    } else if (rtype == kTypeAaaa) {
      if (rdlen != 16 || inet_ntop(AF_INET6, rdata, buf, sizeof buf) == nullptr)
        continue;
      r.address = buf;
    } else if (rtype == kTypeSrv) {
      if (rdlen < 7)
        continue;
      r.priority = be16(rdata);
      r.weight = be16(rdata + 2);
      r.port = be16(rdata + 4);
      const unsigned char* q = rdata + 6;
      if (!read_name(msg, len, q, r.target))
        continue;
    } else if (rtype == kTypePtr) {
      const unsigned char* q = rdata;
      if (!read_name(msg, len, q, r.target))
        continue;
    } else if (rtype == kTypeTxt) {
      const unsigned char* q = rdata;
      bool ok = true;
      while (q < p) {
        size_t n = *q++;
        if (static_cast<size_t>(p - q) < n) {
          ok = false;
          break;
        }
        r.txt.emplace_back(reinterpret_cast<const char*>(q), n);
        q += n;
      }
      if (!ok)
        continue;
    } else {
      continue;
    }
    out.records.push_back(std::move(r));
  }
  return true;
}

struct DnsResolver::Impl : std::enable_shared_from_this<DnsResolver::Impl> {
  explicit Impl(asio::io_context& c) : ioc(c), timer(c) {}

  struct Watch {
    explicit Watch(asio::io_context& c, int fd) : desc(c, fd) {}
    asio::posix::stream_descriptor desc;
    bool want_read = false;
    bool want_write = false;
    bool reading = false;
    bool writing = false;
    bool alive = true;
  };

  asio::io_context& ioc;
  asio::steady_timer timer;
  ares_channel channel = nullptr;
  std::map<int, std::shared_ptr<Watch>> watches;
  bool closed = false;

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    if (self->closed)
      return;
    if (!readable && !writable) {
      auto it = self->watches.find(fd);
      if (it != self->watches.end()) {
        it->second->alive = false;
        it->second->desc.release(); // c-ares owns and closes the socket
        self->watches.erase(it);
      }
      return;
    }
    auto& w = self->watches[fd];
    if (!w)
      w = std::make_shared<Watch>(self->ioc, fd);
    w->want_read = readable != 0;
    w->want_write = writable != 0;
    self->arm(fd, w);
  }

  void arm(int fd, const std::shared_ptr<Watch>& w) {
    auto keep = shared_from_this();
    if (w->want_read && !w->reading) {
      w->reading = true;
      w->desc.async_wait(asio::posix::stream_descriptor::wait_read,
                         [keep, w, fd](const boost::system::error_code&) {
                           w->reading = false;
                           if (!w->alive || keep->closed)
                             return;
                           ares_process_fd(keep->channel, fd, ARES_SOCKET_BAD);
                           if (w->alive)
                             keep->arm(fd, w);
                           keep->schedule();
                         });
    }
    if (w->want_write && !w->writing) {
      w->writing = true;
      w->desc.async_wait(asio::posix::stream_descriptor::wait_write,
                         [keep, w, fd](const boost::system::error_code&) {
                           w->writing = false;
                           if (!w->alive || keep->closed)
                             return;
                           ares_process_fd(keep->channel, ARES_SOCKET_BAD, fd);
                           if (w->alive)
                             keep->arm(fd, w);
                           keep->schedule();
                         });
    }
  }

  // Re-arm the timer for c-ares' next timeout (retransmissions, query timeouts).
  void schedule() {
    if (closed)
      return;
    timeval tv{};
    timeval* next = ares_timeout(channel, nullptr, &tv);
    if (next == nullptr) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(next->tv_sec) +
                        std::chrono::microseconds(next->tv_usec));
    timer.async_wait([keep = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || keep->closed)
        return;
      ares_process_fd(keep->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      keep->schedule();
    });
  }

  struct Pending {
    std::shared_ptr<Impl> impl;
    uint16_t type;
    std::function<void(DnsAnswer)> done;
  };

  // The status of an answer from c-ares' status code.
  static void set_status(int status, DnsAnswer& answer) {
    switch (status) {
    case ARES_SUCCESS:
    case ARES_ENODATA:
      answer.status = DnsAnswer::Status::ok;
      break;
    case ARES_ENOTFOUND:
      answer.status = DnsAnswer::Status::not_found;
      answer.error = "no such name (NXDOMAIN)";
      break;
    case ARES_ETIMEOUT:
      answer.error = "timed out";
      break;
    case ARES_ESERVFAIL:
      answer.error = "server failure (SERVFAIL)";
      break;
    case ARES_EREFUSED:
      answer.error = "refused by the server";
      break;
    case ARES_ECONNREFUSED:
      answer.error = "connection refused";
      break;
    default:
      answer.error = ares_strerror(status);
      break;
    }
  }

  // Completion always runs from the io_context, never inside query() or lookup_host().
  void deliver(std::function<void(DnsAnswer)> done, DnsAnswer answer) {
    asio::post(ioc,
               [keep = shared_from_this(), d = std::move(done), a = std::move(answer)]() mutable {
                 if (!keep->closed)
                   d(std::move(a));
               });
  }

  static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
    if (status == ARES_EDESTRUCTION || pending->impl->closed)
      return;
    DnsAnswer answer;
    set_status(status, answer);
    if (abuf != nullptr && alen > 0 && answer.status != DnsAnswer::Status::error) {
      std::string error;
      if (!parse_dns_response(abuf, static_cast<size_t>(alen), pending->type, answer, error)) {
        answer = DnsAnswer{};
        answer.error = error;
      }
    }
    pending->impl->deliver(std::move(pending->done), std::move(answer));
  }

  static void on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
    std::unique_ptr<Pending> pending(static_cast<Pending*>(arg));
    std::unique_ptr<ares_addrinfo, decltype(&ares_freeaddrinfo)> hold(res, &ares_freeaddrinfo);
    if (status == ARES_EDESTRUCTION || pending->impl->closed)
      return;
    DnsAnswer answer;
    set_status(status, answer);
    if (status == ARES_ECONNREFUSED) // (also c-ares' answer when no source had the name)
      answer.error = "no answer: the DNS server refused the query, or none could be asked";
    for (auto* n = res != nullptr ? res->nodes : nullptr; n != nullptr; n = n->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      DnsRecord r;
      if (n->ai_family == AF_INET &&
          inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(n->ai_addr)->sin_addr, text,
                    sizeof text) != nullptr) {
        r.type = kTypeA;
      } else if (n->ai_family == AF_INET6 &&
                 inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(n->ai_addr)->sin6_addr,
                           text, sizeof text) != nullptr) {
        r.type = kTypeAaaa;
      } else {
        continue;
      }
      r.ttl = n->ai_ttl > 0 ? static_cast<uint32_t>(n->ai_ttl) : 0;
      r.address = text;
      answer.records.push_back(std::move(r));
    }
    pending->impl->deliver(std::move(pending->done), std::move(answer));
  }
};

std::optional<asio::ip::address> first_address(const DnsAnswer& answer, const std::string& name,
                                               std::string& error) {
  if (answer.status != DnsAnswer::Status::ok || answer.records.empty()) {
    error = "cannot resolve \"" + name + "\": " +
            (answer.status == DnsAnswer::Status::ok ? std::string("no address") : answer.error);
    return std::nullopt;
  }
  const std::string& text = answer.records.front().address;
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(text, ec);
  if (ec) {
    error = "cannot resolve \"" + name + "\": bad address \"" + text + "\"";
    return std::nullopt;
  }
  return ip;
}

namespace {
std::once_flag g_ares_init;
}

DnsResolver::DnsResolver(asio::io_context& ioc, const DnsSettings& settings)
    : impl_(std::make_shared<Impl>(ioc)) {
  std::call_once(g_ares_init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts{};
  opts.timeout = static_cast<int>(settings.timeout.count());
  opts.tries = static_cast<int>(settings.tries);
  opts.sock_state_cb = &Impl::on_sock_state;
  opts.sock_state_cb_data = impl_.get();
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
#ifdef ARES_OPT_QUERY_CACHE
  // c-ares 1.23 and later cache answers by default; weir's callers follow TTLs themselves and
  // ask again on purpose (a retry after a failure must reach the server).
  opts.qcache_max_ttl = 0;
  mask |= ARES_OPT_QUERY_CACHE;
#endif
  int rc = ares_init_options(&impl_->channel, &opts, mask);
  if (rc != ARES_SUCCESS)
    throw std::runtime_error(std::string("DNS resolver: ") + ares_strerror(rc));
  if (!settings.servers.empty()) {
    std::string csv;
    for (const auto& s : settings.servers) {
      if (!csv.empty())
        csv += ',';
      csv += s;
    }
    rc = ares_set_servers_ports_csv(impl_->channel, csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(impl_->channel);
      impl_->channel = nullptr;
      throw std::runtime_error("DNS resolver: bad server list \"" + csv +
                               "\": " + ares_strerror(rc));
    }
  }
}

DnsResolver::~DnsResolver() {
  impl_->closed = true;
  impl_->timer.cancel();
  for (auto& [fd, w] : impl_->watches) {
    w->alive = false;
    w->desc.release();
  }
  impl_->watches.clear();
  if (impl_->channel != nullptr)
    ares_destroy(impl_->channel); // callbacks get ARES_EDESTRUCTION and do nothing
  impl_->channel = nullptr;
}

void DnsResolver::query(const std::string& name, uint16_t type,
                        std::function<void(DnsAnswer)> done) {
  auto* pending = new Impl::Pending{impl_, type, std::move(done)};
  ares_query(impl_->channel, name.c_str(), kClassIn, type, &Impl::on_answer, pending);
  impl_->schedule();
}

void DnsResolver::lookup_host(const std::string& name, std::function<void(DnsAnswer)> done) {
  auto* pending = new Impl::Pending{impl_, 0, std::move(done)};
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ares_getaddrinfo(impl_->channel, name.c_str(), nullptr, &hints, &Impl::on_addrinfo, pending);
  impl_->schedule();
}

} // namespace weir::core::net
