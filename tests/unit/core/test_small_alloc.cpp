// SmallAllocator: blocks come back from the thread's free list by size class, large requests go
// to the heap, a block freed on another thread is fine, and Beast's fields work on it.
#include "core/http/fields.hpp"
#include "core/runtime/small_alloc.hpp"

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

using weir::core::SmallAllocator;
using weir::core::detail::SmallFreeLists;

TEST_CASE("size classes") {
  CHECK(SmallFreeLists::size_class(1) == 0);
  CHECK(SmallFreeLists::size_class(64) == 0);
  CHECK(SmallFreeLists::size_class(65) == 1);
  CHECK(SmallFreeLists::size_class(256) == 2);
  CHECK(SmallFreeLists::size_class(512) == 3);
  CHECK(SmallFreeLists::size_class(513) == -1);
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
