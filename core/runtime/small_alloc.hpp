// Small blocks for the objects every request creates and frees again (HTTP field entries, the
// stored request target and status reason, coroutine frames: net/asio_frames.hpp): kept in
// per-thread free lists by size class, so a worker in steady state serves them without calling
// malloc. Stateless: any instance frees what another allocated, on any thread (the block joins
// that thread's list).
#pragma once

#include <array>
#include <cstddef>
#include <new>

namespace weir::core {

namespace detail {

class SmallFreeLists {
public:
  static constexpr std::size_t kStep = 64;
  static constexpr std::size_t kLargest = 4096;
  static constexpr std::size_t kClasses = kLargest / kStep; // 64, 128, 192, ... 4096 bytes
  // Kept per class and thread, at most: 512 KiB of blocks (8,192 of 64 bytes, 128 of 4 KiB),
  // 32 MiB for all classes (only after bursts that needed them: the idle sweep trims). What a burst
  // freed beyond that goes straight back to the heap.
  static constexpr std::size_t kKeepBytes = 512 * 1024;
  static constexpr std::size_t keep(int c) noexcept { return kKeep[static_cast<std::size_t>(c)]; }

  static constexpr int size_class(std::size_t n) noexcept {
    return n == 0 ? 0 : n <= kLargest ? static_cast<int>((n - 1) / kStep) : -1;
  }
  static constexpr std::size_t class_size(int c) noexcept {
    return kStep * (static_cast<std::size_t>(c) + 1);
  }

private:
  // keep(c) for each class, worked out once: give() runs for every block freed, and a division
  // there cost more time than the rest of it.
  static constexpr std::array<std::size_t, kClasses> kKeep = [] {
    std::array<std::size_t, kClasses> a{};
    for (std::size_t c = 0; c < kClasses; ++c)
      a[c] = kKeepBytes / (kStep * (c + 1));
    return a;
  }();

public:
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer every block goes back to the heap, so that a use after free is caught.
  static constexpr bool kKeepAny = false;
#else
  static constexpr bool kKeepAny = true;
#endif

  void* take(int c) {
    if (gone_)
      return ::operator new(class_size(c));
    if (Node* n = head_[c]) {
      head_[c] = n->next;
      if (--count_[c] < low_[c])
        low_[c] = count_[c];
      return n;
    }
    return ::operator new(class_size(c));
  }
  // Free the blocks that stayed unused since the last trim (the fewest a list held meanwhile):
  // a burst's blocks go back to the heap once the load is gone. Returns the bytes freed.
  std::size_t trim() noexcept {
    std::size_t freed = 0;
    for (int c = 0; c < static_cast<int>(kClasses); ++c) {
      for (std::size_t i = 0; i < low_[c]; ++i) {
        Node* n = head_[c];
        head_[c] = n->next;
        ::operator delete(n, class_size(c));
        freed += class_size(c);
      }
      count_[c] -= low_[c];
      low_[c] = count_[c];
    }
    return freed;
  }
  void give(int c, void* p) noexcept {
    if (gone_ || !kKeepAny || count_[c] >= keep(c)) {
      ::operator delete(p, class_size(c));
      return;
    }
    auto* n = static_cast<Node*>(p);
    n->next = head_[c];
    head_[c] = n;
    ++count_[c];
  }
  std::size_t size(int c) const noexcept {
    return count_[c];
  }

  SmallFreeLists() = default;
  SmallFreeLists(const SmallFreeLists&) = delete;
  SmallFreeLists& operator=(const SmallFreeLists&) = delete;
  ~SmallFreeLists() {
    gone_ = true;
    for (int c = 0; c < static_cast<int>(kClasses); ++c)
      while (Node* n = head_[c]) {
        head_[c] = n->next;
        ::operator delete(n, class_size(c));
      }
  }

private:
  struct Node {
    Node* next;
  };
  // Set when the thread's lists are destroyed (thread exit): a block freed later in that thread's
  // exit (a coroutine frame of an io_context torn down last) goes straight to the heap. A
  // trivially destructible thread_local, so it stays readable after the lists' destructor ran.
  static inline thread_local bool gone_ = false;
  Node* head_[kClasses] = {};
  std::size_t count_[kClasses] = {};
  std::size_t low_[kClasses] = {}; // the fewest blocks each list held since the last trim
};

inline SmallFreeLists& small_free_lists() {
  static thread_local SmallFreeLists lists;
  return lists;
}

} // namespace detail

// Give this thread's unused small blocks back to the heap (see SmallFreeLists::trim): the
// worker's idle sweep calls it. Returns the bytes freed.
inline std::size_t trim_small_blocks() noexcept {
  return detail::small_free_lists().trim();
}

template <class T> struct SmallAllocator {
  using value_type = T;

  SmallAllocator() noexcept = default;
  template <class U> SmallAllocator(const SmallAllocator<U>&) noexcept {}

  static_assert(alignof(T) <= alignof(std::max_align_t));

  T* allocate(std::size_t n) {
    std::size_t bytes = n * sizeof(T);
    int c = detail::SmallFreeLists::size_class(bytes);
    if (c < 0)
      return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(detail::small_free_lists().take(c));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    std::size_t bytes = n * sizeof(T);
    int c = detail::SmallFreeLists::size_class(bytes);
    if (c < 0) {
      ::operator delete(p, bytes);
      return;
    }
    detail::small_free_lists().give(c, p);
  }

  template <class U> bool operator==(const SmallAllocator<U>&) const noexcept { return true; }
};

} // namespace weir::core
