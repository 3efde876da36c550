// A copy for the short pieces of a head (names, values, a method): no call into the C library's
// memcpy, whose dispatch costs more than such a copy.
#pragma once

#include <cstddef>
#include <cstring>

namespace weir::core::http {

// Copies n bytes from src to dst (not overlapping). Overlapping fixed-size moves cover every
// length from 1 to 16 with at most two loads and two stores; longer pieces go to memcpy.
inline void copy_bytes(char* dst, const char* src, std::size_t n) noexcept {
  if (n >= 8) {
    if (n > 16) {
      std::memcpy(dst, src, n);
      return;
    }
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n > 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

} // namespace weir::core::http
