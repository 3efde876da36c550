// nghttp2's allocations from the worker's small-block lists (runtime/small_alloc.hpp): a stream,
// its outbound items and header buffers are created and freed for every request.
#include "core/net/h2_common.hpp"
#include "core/runtime/small_alloc.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace weir::core::net {

namespace {

using detail::small_free_lists;
using detail::SmallFreeLists;

// nghttp2 frees without a size, so each block starts with one: the bytes asked for and the
// size class the block came from (-1: the heap, for blocks above the largest class).
struct alignas(16) Prefix {
  std::size_t size;
  int cls;
};
static_assert(sizeof(Prefix) == 16);

void* take(std::size_t size) {
  if (size > SIZE_MAX - sizeof(Prefix))
    return nullptr;
  std::size_t total = size + sizeof(Prefix);
  int c = SmallFreeLists::size_class(total);
  void* block = nullptr;
  if (c < 0) {
    block = std::malloc(total);
    if (block == nullptr)
      return nullptr;
  } else {
    try {
      block = small_free_lists().take(c);
    } catch (const std::bad_alloc&) {
      return nullptr; // (nghttp2 reports NGHTTP2_ERR_NOMEM)
    }
  }
  auto* prefix = static_cast<Prefix*>(block);
  prefix->size = size;
  prefix->cls = c;
  return prefix + 1;
}

Prefix* prefix_of(void* p) {
  return static_cast<Prefix*>(p) - 1;
}

void give(void* p) {
  if (p == nullptr)
    return;
  Prefix* prefix = prefix_of(p);
  if (prefix->cls < 0)
    std::free(prefix);
  else
    small_free_lists().give(prefix->cls, prefix);
}

void* mem_malloc(std::size_t size, void*) {
  return take(size);
}

void mem_free(void* p, void*) {
  give(p);
}

void* mem_calloc(std::size_t n, std::size_t size, void*) {
  if (size != 0 && n > SIZE_MAX / size)
    return nullptr;
  void* p = take(n * size);
  if (p != nullptr)
    std::memset(p, 0, n * size);
  return p;
}

void* mem_realloc(void* p, std::size_t size, void*) {
  if (p == nullptr)
    return take(size);
  Prefix* prefix = prefix_of(p);
  if (prefix->cls >= 0 && size <= SmallFreeLists::class_size(prefix->cls) - sizeof(Prefix)) {
    prefix->size = size; // still fits its block
    return p;
  }
  void* q = take(size);
  if (q == nullptr)
    return nullptr; // (p stays valid, as with realloc)
  std::memcpy(q, p, prefix->size < size ? prefix->size : size);
  give(p);
  return q;
}

nghttp2_mem memory{nullptr, &mem_malloc, &mem_free, &mem_calloc, &mem_realloc};

} // namespace

nghttp2_mem* h2_memory() {
  return &memory;
}

} // namespace weir::core::net
