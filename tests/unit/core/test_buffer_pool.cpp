#include "core/runtime/buffer_pool.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <doctest/doctest.h>

#include <cstring>
#include <string_view>
#include <vector>

using weir::core::BufferPool;

TEST_CASE("buffer pool: blocks are reused, and only kKeep of each size are kept") {
  BufferPool pool;
  char* a = pool.take();
  pool.give_back(a);
  CHECK(pool.free_blocks() == 1);
  CHECK(pool.take() == a);
  pool.give_back(a);

  std::vector<char*> many;
  for (size_t i = 0; i < BufferPool::kKeepSmall + 10; ++i)
    many.push_back(pool.take_small());
  for (char* p : many)
    pool.give_back_small(p);
  CHECK(pool.free_small_blocks() == BufferPool::kKeepSmall);
  CHECK(pool.free_blocks() == 1);
}

TEST_CASE("buffer pool: a flat buffer moves from a small block to a large one and back") {
  BufferPool pool;
  using Buffer = boost::beast::basic_flat_buffer<BufferPool::Allocator<char>>;
  Buffer buf{BufferPool::Allocator<char>(&pool)};
  // A head: one small block.
  auto mb = buf.prepare(BufferPool::kSmallSize);
  std::memset(mb.data(), 'h', 100);
  buf.commit(100);
  CHECK(buf.capacity() == BufferPool::kSmallSize);
  // A body: the data moves to a large block and the small one goes back to the pool.
  buf.reserve(BufferPool::kBlockSize);
  CHECK(buf.capacity() == BufferPool::kBlockSize);
  CHECK(pool.free_small_blocks() == 1);
  CHECK(std::string_view(static_cast<const char*>(buf.data().data()), 3) == "hhh");
  // Beyond a large block: the heap, and the large block goes back.
  buf.prepare(BufferPool::kBlockSize);
  CHECK(buf.capacity() > BufferPool::kBlockSize);
  CHECK(pool.free_blocks() == 1);
  // Idle: nothing held.
  buf.consume(buf.size());
  buf.shrink_to_fit();
  CHECK(buf.capacity() == 0);
}

TEST_CASE("buffer pool: trim frees the blocks that stayed unused since the last trim") {
  BufferPool pool;
  std::vector<char*> blocks;
  for (int i = 0; i < 10; ++i)
    blocks.push_back(pool.take_small());
  for (char* p : blocks)
    pool.give_back_small(p);
  CHECK(pool.free_small_blocks() == 10);
  // The first trim only starts the count: all ten were in use during the last period.
  CHECK(pool.trim() == 0);
  // Three are taken and given back meanwhile: at least seven stayed unused all along.
  char* a = pool.take_small();
  char* b = pool.take_small();
  char* c = pool.take_small();
  pool.give_back_small(a);
  pool.give_back_small(b);
  pool.give_back_small(c);
  CHECK(pool.trim() == 7 * BufferPool::kSmallSize);
  CHECK(pool.free_small_blocks() == 3);
  // An idle period: the rest goes.
  CHECK(pool.trim() == 3 * BufferPool::kSmallSize);
  CHECK(pool.free_small_blocks() == 0);
  CHECK(pool.trim() == 0);
}
