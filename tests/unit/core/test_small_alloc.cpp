// SmallAllocator: blocks come back from the thread's free list by size class, large requests go
// to the heap, a block freed on another thread is fine, and Beast's fields work on it.
#include "core/http/fields.hpp"
#include "core/net/h2_common.hpp"
#include "core/runtime/small_alloc.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using weir::core::SmallAllocator;
using weir::core::detail::SmallFreeLists;

TEST_CASE("size classes") {
  CHECK(SmallFreeLists::size_class(0) == 0);
  CHECK(SmallFreeLists::size_class(1) == 0);
  CHECK(SmallFreeLists::size_class(64) == 0);
  CHECK(SmallFreeLists::size_class(65) == 1);
  CHECK(SmallFreeLists::size_class(256) == 3);
  CHECK(SmallFreeLists::size_class(520) == 8);
  CHECK(SmallFreeLists::size_class(1024) == 15);
  CHECK(SmallFreeLists::size_class(2048) == 31);
  CHECK(SmallFreeLists::size_class(2049) == 32);
  CHECK(SmallFreeLists::size_class(4096) == 63);
  CHECK(SmallFreeLists::size_class(4097) == -1);
  for (std::size_t n = 1; n <= SmallFreeLists::kLargest; ++n) {
    int c = SmallFreeLists::size_class(n);
    REQUIRE(SmallFreeLists::class_size(c) >= n);
    REQUIRE(SmallFreeLists::class_size(c) < n + SmallFreeLists::kStep);
  }
}

TEST_CASE("a freed small block is handed out again for the same class") {
  SmallAllocator<char> a;
  char* p = a.allocate(100);
  p[0] = 'x';
  p[99] = 'y';
  a.deallocate(p, 100);
  char* q = a.allocate(120);       // the same class (128 bytes)
#if !defined(__SANITIZE_ADDRESS__) // (which keeps no free list)
  CHECK(q == p);
#endif
  char* r = a.allocate(40); // another class
  CHECK(r != p);
  a.deallocate(q, 120);
  a.deallocate(r, 40);
}

TEST_CASE("large blocks and other element types") {
  SmallAllocator<long> a;
  long* big = a.allocate(1000); // 8000 bytes: from the heap
  big[999] = 7;
  CHECK(big[999] == 7);
  a.deallocate(big, 1000);
  std::vector<std::string, SmallAllocator<std::string>> v;
  for (int i = 0; i < 100; ++i)
    v.push_back(std::to_string(i));
  CHECK(v[99] == "99");
}

TEST_CASE("a block freed on another thread joins that thread's list") {
  SmallAllocator<char> a;
  char* p = a.allocate(64);
  std::thread([&] { SmallAllocator<char>().deallocate(p, 64); }).join();
  char* q = a.allocate(64);
  q[63] = 1;
  a.deallocate(q, 64);
}

TEST_CASE("fields on the small allocator") {
  weir::core::http::Fields f;
  for (int i = 0; i < 50; ++i)
    f.insert("X-Field-" + std::to_string(i), std::string(static_cast<size_t>(i) * 20, 'v'));
  f.set("Host", "example.test");
  CHECK(f["Host"] == "example.test");
  CHECK(f["X-Field-49"].size() == 980);
  f.erase("X-Field-3");
  CHECK(f.find("X-Field-3") == f.end());
  weir::core::http::Fields copy = f;
  CHECK(copy["X-Field-10"] == std::string(200, 'v'));
}

TEST_CASE("trim frees the blocks that stayed unused since the last trim") {
  auto& lists = weir::core::detail::small_free_lists();
  weir::core::trim_small_blocks();
  weir::core::trim_small_blocks(); // whatever earlier tests left is gone
  CHECK(lists.size(0) == 0);
  SmallAllocator<char> a;
  std::vector<char*> blocks;
  for (int i = 0; i < 8; ++i)
    blocks.push_back(a.allocate(32));
  for (char* p : blocks)
    a.deallocate(p, 32);
#if !defined(__SANITIZE_ADDRESS__) // (which keeps no free list)
  CHECK(lists.size(0) == 8);
  CHECK(weir::core::trim_small_blocks() == 0); // all eight were in use in this period
  char* p = a.allocate(32);
  a.deallocate(p, 32);
  CHECK(weir::core::trim_small_blocks() == 7 * 64);
  CHECK(lists.size(0) == 1);
  CHECK(weir::core::trim_small_blocks() == 64);
#endif
  CHECK(lists.size(0) == 0);
}

namespace {
size_t listed_blocks() {
  size_t n = 0;
  for (int c = 0; c < static_cast<int>(SmallFreeLists::kClasses); ++c)
    n += weir::core::detail::small_free_lists().size(c);
  return n;
}

boost::asio::awaitable<int> leaf(int v) {
  co_return v + 1;
}

boost::asio::awaitable<int> large_frame(int v) {
  volatile char big[4000]; // a frame above the largest class: from the heap
  big[0] = static_cast<char>(v);
  big[3999] = 2;
  int r = co_await leaf(big[0] + big[3999]);
  co_return r;
}
} // namespace

TEST_CASE("coroutine frames come from the lists and go back to them") {
  boost::asio::io_context io;
  weir::core::trim_small_blocks();
  weir::core::trim_small_blocks();
  int result = 0;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        for (int i = 0; i < 100; ++i)
          result += co_await leaf(i);
        result += co_await large_frame(5);
      },
      boost::asio::detached);
  io.run();
  CHECK(result == 5050 + 8);
#if !defined(__SANITIZE_ADDRESS__) // (which keeps no free list)
  // The frames of the 100 calls reused one block; every frame was given back.
  size_t after = listed_blocks();
  CHECK(after >= 2);
  CHECK(after <= 6);
#endif
}

TEST_CASE("nghttp2's allocator: malloc, calloc, realloc across classes, free") {
  nghttp2_mem* mem = weir::core::net::h2_memory();
  auto* p = static_cast<unsigned char*>(mem->malloc(10, mem->mem_user_data));
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 16 == 0);
  for (int i = 0; i < 10; ++i)
    p[i] = static_cast<unsigned char>(i);
  // Within its block, then into a larger class, then above the largest class (the heap).
  p = static_cast<unsigned char*>(mem->realloc(p, 40, mem->mem_user_data));
  p = static_cast<unsigned char*>(mem->realloc(p, 900, mem->mem_user_data));
  p[899] = 9;
  p = static_cast<unsigned char*>(mem->realloc(p, 100000, mem->mem_user_data));
  REQUIRE(p != nullptr);
  for (int i = 0; i < 10; ++i)
    CHECK(p[i] == i);
  CHECK(p[899] == 9);
  p = static_cast<unsigned char*>(mem->realloc(p, 5, mem->mem_user_data)); // back to a class
  CHECK(p[4] == 4);
  mem->free(p, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);

  auto* z = static_cast<unsigned char*>(mem->calloc(100, 30, mem->mem_user_data));
  REQUIRE(z != nullptr);
  bool zero = true;
  for (int i = 0; i < 3000; ++i)
    zero = zero && z[i] == 0;
  CHECK(zero);
  mem->free(z, mem->mem_user_data);
  CHECK(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data) == nullptr); // overflow
  CHECK(mem->malloc(SIZE_MAX - 4, mem->mem_user_data) == nullptr);

  // realloc(NULL) allocates; a shrink within the class keeps the block; a size that would
  // overflow fails and leaves the block as it was.
  auto* q = static_cast<unsigned char*>(mem->realloc(nullptr, 100, mem->mem_user_data));
  REQUIRE(q != nullptr);
  q[0] = 42;
  CHECK(mem->realloc(q, 90, mem->mem_user_data) == q);
  CHECK(mem->realloc(q, SIZE_MAX - 4, mem->mem_user_data) == nullptr);
  CHECK(q[0] == 42);
  mem->free(q, mem->mem_user_data);
}
