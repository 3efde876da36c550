// One downstream HTTP/1.x connection: read requests, route, filter, proxy, answer.
#pragma once

#include <boost/asio/ip/tcp.hpp>

namespace weir::core {
class Worker;
struct WorkerService;
} // namespace weir::core
namespace weir::core::tls {
class ServerTls;
}

namespace weir::core::http {

// Serve `socket` on `worker` for `service` until the connection ends. Runs on the worker's thread.
void start_session(Worker& worker, const WorkerService& service,
                   boost::asio::ip::tcp::socket socket);
// The same over TLS: handshake first, with the listener's certificates.
void start_tls_session(Worker& worker, const WorkerService& service,
                       boost::asio::ip::tcp::socket socket, tls::ServerTls& tls);

} // namespace weir::core::http
