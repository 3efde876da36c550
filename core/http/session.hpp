// One downstream connection: TLS handshake (when the listener has TLS), PROXY protocol header
// (when the listener trusts the peer for it), then HTTP/1.x, or HTTP/2 when ALPN chose "h2" or an
// h2c listener sees the HTTP/2 preface.
#pragma once

#include "core/net/executor.hpp"

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

namespace weir::core {
class Worker;
struct WorkerListener;
struct ParkedConn;
} // namespace weir::core

namespace weir::core::http {

// Serve `socket` on `worker` for the services of `listener` until the connection ends. Runs on
// the worker's thread.
void start_session(Worker& worker, const WorkerListener& listener,
                   boost::asio::basic_stream_socket<boost::asio::ip::tcp, net::Executor> socket);
void start_unix_session(
    Worker& worker, const WorkerListener& listener,
    boost::asio::basic_stream_socket<boost::asio::local::stream_protocol, net::Executor> socket);
// Serve a parked connection (runtime/parking.hpp) whose client sent something.
void resume_session(Worker& worker, ParkedConn&& parked);

} // namespace weir::core::http
