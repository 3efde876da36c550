// Blocks of one size reused within one worker thread: the body relay and upstream read buffers of
// requests, which would otherwise cost a large allocation and free per request. Not thread-safe:
// each worker has its own, used on its thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace weir::core {

class BufferPool {
public:
  static constexpr size_t kBlockSize = 32 * 1024;
  // Free blocks kept for reuse; more are freed (a burst does not pin memory for ever).
  static constexpr size_t kKeep = 64;

  BufferPool() = default;
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    for (char* p : free_)
      delete[] p;
  }

  // A block of kBlockSize bytes (contents undefined).
  char* take() {
    if (free_.empty())
      return new char[kBlockSize];
    char* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give_back(char* p) noexcept {
    if (free_.size() < kKeep) {
      try {
        free_.push_back(p);
        return;
      } catch (...) {
      }
    }
    delete[] p;
  }

  struct Deleter {
    BufferPool* pool = nullptr;
    void operator()(char* p) const noexcept { pool->give_back(p); }
  };
  using Block = std::unique_ptr<char[], Deleter>;
  Block block() { return Block(take(), Deleter{this}); }

  // An allocator for Beast's dynamic buffers: requests of at most kBlockSize bytes are served
  // from the pool, larger ones from the heap.
  template <class T> struct Allocator {
    using value_type = T;
    BufferPool* pool = nullptr;
    explicit Allocator(BufferPool* p) noexcept : pool(p) {}
    template <class U> Allocator(const Allocator<U>& o) noexcept : pool(o.pool) {}
    T* allocate(size_t n) {
      if (n * sizeof(T) <= kBlockSize)
        return reinterpret_cast<T*>(pool->take());
      return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, size_t n) noexcept {
      if (n * sizeof(T) <= kBlockSize)
        pool->give_back(reinterpret_cast<char*>(p));
      else
        std::allocator<T>().deallocate(p, n);
    }
    template <class U> bool operator==(const Allocator<U>& o) const noexcept {
      return pool == o.pool;
    }
  };

private:
  std::vector<char*> free_;
};

} // namespace weir::core
