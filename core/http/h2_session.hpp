// One downstream HTTP/2 connection (RFC 9113) on nghttp2: streams run concurrently, each through
// handle_request() (proxy.hpp). See docs/http2.md for flow control, limits and abuse defences.
#pragma once

#include "core/net/executor.hpp"

#include <boost/beast/core/flat_buffer.hpp>

#include <vector>

namespace weir::core {
class Worker;
struct WorkerService;
} // namespace weir::core

namespace weir::core::http {

struct ConnInfo;

// Serve HTTP/2 on `stream` until the connection ends. `initial` holds bytes already read from the
// connection (the client preface for h2c, possibly more); they are fed to nghttp2 first. The
// caller keeps `stream`, `initial`, `services` and `conn` alive until this completes, and closes
// the socket afterwards. `services`: the services of this listener (virtual hosts), never empty;
// each request picks its own with choose_service(). Connection-level limits come from
// services.front()->plan->cfg->limits.
//
// Instantiated for net::TimedStream<tcp>, net::TlsStream<net::TimedStream<tcp>> and
// net::TimedStream<boost::asio::local::stream_protocol>.
template <class Stream>
net::Task<void> serve_h2(Worker& worker, const std::vector<const WorkerService*>& services,
                         const ConnInfo& conn, Stream& stream, boost::beast::flat_buffer& initial);

} // namespace weir::core::http
