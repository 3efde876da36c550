// The admin endpoint ([admin] listen): a small HTTP/1.1 server on the control thread. GET only;
// JSON documents from registered routes, and /healthz.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace weir::core {

class AdminServer {
public:
  explicit AdminServer(boost::asio::io_context& control);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // GET `path` answers the JSON document `fn` makes (called on the control thread).
  void route(std::string path, std::function<boost::json::object()> fn);
  bool listen(const boost::asio::ip::tcp::endpoint& ep, std::string& error);
  boost::asio::ip::tcp::endpoint endpoint() const;

  struct State; // shared with running connections

private:
  std::shared_ptr<State> state_;
};

} // namespace weir::core
