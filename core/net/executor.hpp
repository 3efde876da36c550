// The executor every request-path socket, timer and coroutine runs on: a worker's io_context,
// named by its own type rather than through boost::asio::any_io_executor.
//
// any_io_executor erases the type: each copy, move, comparison and destruction of one (an
// asynchronous operation does several: the coroutine's handler, its work guard, the check that
// the handler's executor is the socket's) is a call through a function table. The io_context's
// own executor is a pointer; the same steps are inlined loads and stores. Coroutines that await
// each other must share the executor type, so the request path (sessions, the proxy, upstream
// connections, HTTP/2 both ways, the plugins' outbound calls) uses Task throughout.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/wait_traits.hpp>

#include <chrono>

namespace weir::core::net {

using Executor = boost::asio::io_context::executor_type;

// A coroutine on a worker's io_context.
template <class T = void> using Task = boost::asio::awaitable<T, Executor>;

// The completion token that makes an asynchronous operation awaitable in a Task, and the same
// with the error returned in a tuple instead of thrown.
inline constexpr boost::asio::use_awaitable_t<Executor> use_task{};
inline constexpr auto use_task_nothrow = boost::asio::as_tuple(use_task);

using SteadyTimer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;

} // namespace weir::core::net
