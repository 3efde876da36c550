// Coroutine frames come from weir's per-thread small-block lists (runtime/small_alloc.hpp)
// instead of Asio's recycling cache.
//
// Asio gives each thread a few cached blocks per purpose and hands out the first one that is
// large enough; a miss frees a cached block and calls the allocator. A worker keeps dozens of
// frames of different sizes alive (every request in flight nests several), so the cache both
// missed and cost a scan of every slot per allocation and per free. Size classes make both a
// list push or pop.
//
// The hook is an explicit specialization of Asio's allocation function for coroutine frames.
// CMake force-includes this header (weir_asio's public compile options) into every file that is
// compiled against Asio, so that no file uses Asio's own definition for frames: the two disagree
// about a block's layout. The specializations are defined once, in asio_frames.cpp.
#pragma once

#include <boost/asio/detail/thread_info_base.hpp>

#include <cstddef>

namespace boost::asio::detail {

template <>
void* thread_info_base::allocate(thread_info_base::awaitable_frame_tag, thread_info_base*,
                                 std::size_t size, std::size_t align);

template <>
void thread_info_base::deallocate(thread_info_base::awaitable_frame_tag, thread_info_base*,
                                  void* pointer, std::size_t size);

} // namespace boost::asio::detail
