// Blocks reused within one worker thread, in two sizes: 64 KiB for body relays and upstream reads,
// 4 KiB for reading request heads (most fit, and a connection between requests then holds a page,
// not eight). Without it each would cost a large allocation and free per request. Not
// thread-safe: each worker has its own, used on its thread only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace weir::core {

class BufferPool {
public:
  static constexpr size_t kBlockSize = 64 * 1024;
  static constexpr size_t kSmallSize = 4 * 1024;
  // Free blocks kept for reuse, per size; more are freed (a burst does not pin memory for ever).
  static constexpr size_t kKeep = 64;
  static constexpr size_t kKeepSmall = 256;

  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    for (char* p : free_)
      delete[] p;
    for (char* p : free_small_)
      delete[] p;
  }

  // A block of kBlockSize bytes (contents undefined).
  char* take() { return take_from(free_, low_, kBlockSize); }
  void give_back(char* p) noexcept { give_to(free_, kKeep, p); }
  // A block of kSmallSize bytes (contents undefined).
  char* take_small() { return take_from(free_small_, low_small_, kSmallSize); }
  void give_back_small(char* p) noexcept { give_to(free_small_, kKeepSmall, p); }

  // Free the blocks that stayed unused since the last trim (the fewest each list held
  // meanwhile): a burst's blocks go back to the heap once the load is gone. The worker's idle
  // sweep calls it. Returns the bytes freed.
  size_t trim() noexcept {
    return trim_list(free_, low_, kBlockSize) + trim_list(free_small_, low_small_, kSmallSize);
  }

  // How many free blocks of each size are kept (for tests).
  size_t free_blocks() const { return free_.size(); }
  size_t free_small_blocks() const { return free_small_.size(); }

  struct Deleter {
    BufferPool* pool = nullptr;
    void operator()(char* p) const noexcept { pool->give_back(p); }
  };
  using Block = std::unique_ptr<char[], Deleter>;
  Block block() { return Block(take(), Deleter{this}); }

  // An allocator for Beast's dynamic buffers: requests of at most kSmallSize bytes are served
  // with a small block, of at most kBlockSize with a large one, larger ones from the heap.
  template <class T> struct Allocator {
    using value_type = T;
    BufferPool* pool = nullptr;
    explicit Allocator(BufferPool* p) noexcept : pool(p) {}
    template <class U> Allocator(const Allocator<U>& o) noexcept : pool(o.pool) {}
    T* allocate(size_t n) {
      size_t bytes = n * sizeof(T);
      if (bytes <= kSmallSize)
        return reinterpret_cast<T*>(pool->take_small());
      if (bytes <= kBlockSize)
        return reinterpret_cast<T*>(pool->take());
      return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, size_t n) noexcept {
      size_t bytes = n * sizeof(T);
      if (bytes <= kSmallSize)
        pool->give_back_small(reinterpret_cast<char*>(p));
      else if (bytes <= kBlockSize)
        pool->give_back(reinterpret_cast<char*>(p));
      else
        std::allocator<T>().deallocate(p, n);
    }
    template <class U> bool operator==(const Allocator<U>& o) const noexcept {
      return pool == o.pool;
    }
  };

private:
  static char* take_from(std::vector<char*>& list, size_t& low, size_t size) {
    if (list.empty())
      return new char[size];
    char* p = list.back();
    list.pop_back();
    if (list.size() < low)
      low = list.size();
    return p;
  }
  static size_t trim_list(std::vector<char*>& list, size_t& low, size_t size) noexcept {
    // The oldest blocks (at the front) go: the recently used ones are likelier in the cache.
    size_t n = std::min(low, list.size());
    for (size_t i = 0; i < n; ++i)
      delete[] list[i];
    list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(n));
    low = list.size();
    return n * size;
  }
  static void give_to(std::vector<char*>& list, size_t keep, char* p) noexcept {
    if (list.size() < keep) {
      try {
        list.push_back(p);
        return;
      } catch (...) {
      }
    }
    delete[] p;
  }

  std::vector<char*> free_;
  std::vector<char*> free_small_;
  size_t low_ = 0; // the fewest blocks each list held since the last trim
  size_t low_small_ = 0;
};

} // namespace weir::core
