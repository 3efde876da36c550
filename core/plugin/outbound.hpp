// Outbound checks and requests made for control-thread plugins (ABI 1.2: probe_start,
// fetch_start, request_cancel): connection probes (TCP, TLS) and one-shot HTTP/1.1 requests over
// the same connection code as proxied traffic. One service per plugin object; destroying it
// cancels what is still running (no callback runs afterwards).
#pragma once

#include "weir/abi.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace boost::asio {
class io_context;
namespace ssl {
class context;
}
} // namespace boost::asio

namespace weir::core::plugin {

struct HostCtx;

// The TLS settings of the upstream group a plugin object belongs to.
struct GroupTls {
  std::shared_ptr<boost::asio::ssl::context> context; // null: the group has no `tls`
  bool verify = true;
  std::string server_name;
};

class OutboundService {
public:
  explicit OutboundService(boost::asio::io_context& ioc);
  ~OutboundService();
  OutboundService(const OutboundService&) = delete;
  OutboundService& operator=(const OutboundService&) = delete;

  // Both return 0 (after logging why through `ctx`) when the operation cannot start.
  weir_request_id_t probe(HostCtx& ctx, const weir_probe_t& probe, weir_probe_cb cb, void* user);
  weir_request_id_t fetch(HostCtx& ctx, const weir_fetch_t& fetch, weir_fetch_cb cb, void* user);
  // A DNS query through the process's resolver (HostCtx::dns); 0 when it cannot start.
  weir_request_id_t dns(HostCtx& ctx, std::string_view name, weir_dns_type_t type, weir_dns_cb cb,
                        void* user);
  void cancel(weir_request_id_t id);

  struct Op;      // one running operation (shared with its coroutine)
  struct Lookups; // host names being looked up (per thread; shared with the lookups' callbacks)

private:
  boost::asio::io_context& ioc_;
  std::shared_ptr<Lookups> lookups_;
  std::map<weir_request_id_t, std::shared_ptr<Op>> ops_;
  weir_request_id_t next_ = 1;
};

} // namespace weir::core::plugin
