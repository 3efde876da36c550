// Coroutine frames from the per-thread small-block lists: see asio_frames.hpp.
#include "core/net/asio_frames.hpp"

#include "core/runtime/small_alloc.hpp"

#include <cstdio>
#include <cstdlib>
#include <new>

namespace boost::asio::detail {

namespace {
using weir::core::detail::small_free_lists;
using weir::core::detail::SmallFreeLists;
} // namespace

template <>
void* thread_info_base::allocate(thread_info_base::awaitable_frame_tag, thread_info_base*,
                                 std::size_t size, std::size_t align) {
  // A frame's operator new never asks for more than the default alignment, which every block
  // of the lists and of operator new has.
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    std::fputs("weir: a coroutine frame asked for an over-aligned block\n", stderr);
    std::abort();
  }
  int c = SmallFreeLists::size_class(size);
  if (c < 0)
    return ::operator new(size);
  return small_free_lists().take(c);
}

template <>
void thread_info_base::deallocate(thread_info_base::awaitable_frame_tag, thread_info_base*,
                                  void* pointer, std::size_t size) {
  int c = SmallFreeLists::size_class(size);
  if (c < 0) {
    ::operator delete(pointer, size);
    return;
  }
  small_free_lists().give(c, pointer);
}

} // namespace boost::asio::detail
