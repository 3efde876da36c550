// Reading one field line of a head: the inner loop of every request and response head weir
// parses, so it is inline (a call per line cost more than the scan of a short line).
#pragma once

#include "core/http/exchange.hpp"

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace weir::core::http {

// One field line of a head: its name and its value without the whitespace around it (views into
// the head).
struct FieldLine {
  std::string_view name;
  std::string_view value;
};
enum class FieldLineKind { field, end, bad };

namespace detail {

// tchar (RFC 9110 5.6.2), as a table: one load per byte on the hot path of every head.
inline constexpr auto kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c)
    t[static_cast<size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c)
    t[static_cast<size_t>(c)] = true;
  for (int c = '0'; c <= '9'; ++c)
    t[static_cast<size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~"))
    t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// Control bytes a header line may not hold: all below 0x20 but HTAB, and DEL.
inline constexpr auto kControl = [] {
  std::array<bool, 256> t{};
  for (size_t c = 0; c < 0x20; ++c)
    t[c] = c != '\t';
  t[0x7f] = true;
  return t;
}();

// The bytes of a word of 8 that are below 0x20 (HTAB too) or DEL, as their high bits. Bytes from
// 0x80 up are never flagged. The lowest flag is exact (a borrow only moves up from a flagged
// byte); those above it may not be.
inline std::uint64_t control_flags(std::uint64_t x) noexcept {
  constexpr std::uint64_t kOnes = 0x0101010101010101;
  constexpr std::uint64_t kHigh = 0x8080808080808080;
  std::uint64_t below_space = (x - 0x20 * kOnes) & ~x & kHigh;
  std::uint64_t del = x ^ (0x7f * kOnes);
  std::uint64_t is_del = (del - kOnes) & ~del & kHigh;
  return below_space | is_del;
}

// From p, past the bytes before `end` that are certainly not control bytes: 16 (SSE2) or 8 a
// round. Returns the first byte below 0x20 (HTAB included: the caller's byte loop tells them
// apart) or DEL, or a point fewer than 8 bytes before `end`.
inline const char* skip_plain_bytes(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
  const __m128i k1f = _mm_set1_epi8(0x1f);
  const __m128i k7f = _mm_set1_epi8(0x7f);
  for (; end - p >= 16; p += 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i low = _mm_cmpeq_epi8(_mm_max_epu8(x, k1f), k1f); // x <= 0x1f, unsigned
    __m128i ctl = _mm_or_si128(low, _mm_cmpeq_epi8(x, k7f));
    if (auto m = static_cast<unsigned>(_mm_movemask_epi8(ctl)); m != 0)
      return p + std::countr_zero(m);
  }
#endif
  for (; end - p >= 8; p += 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    if (std::uint64_t m = control_flags(x); m != 0) {
      if constexpr (std::endian::native == std::endian::little)
        return p + std::countr_zero(m) / 8;
      else
        return p;
    }
  }
  return p;
}

// From p, past the bytes before `end` that are letters, digits or '-' (the usual name bytes, all
// tchar), 16 a round with SSE2. Returns the first other byte, or a point fewer than 16 bytes
// before `end` (without SSE2: p).
inline const char* skip_name_bytes(const char* p, [[maybe_unused]] const char* end) noexcept {
#if defined(__SSE2__)
  const __m128i k20 = _mm_set1_epi8(0x20);
  const __m128i ka = _mm_set1_epi8('a');
  const __m128i k25 = _mm_set1_epi8(25);
  const __m128i k0 = _mm_set1_epi8('0');
  const __m128i k9 = _mm_set1_epi8(9);
  const __m128i kDash = _mm_set1_epi8('-');
  for (; end - p >= 16; p += 16) {
    __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i l = _mm_sub_epi8(_mm_or_si128(x, k20), ka); // a letter: 0..25
    __m128i letter = _mm_cmpeq_epi8(_mm_min_epu8(l, k25), l);
    __m128i d = _mm_sub_epi8(x, k0); // a digit: 0..9
    __m128i digit = _mm_cmpeq_epi8(_mm_min_epu8(d, k9), d);
    __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(x, kDash));
    if (auto m = static_cast<unsigned>(_mm_movemask_epi8(ok)); m != 0xffff)
      return p + std::countr_zero(~m);
  }
#endif
  return p;
}

// Why the line at `pos` of `head` is not a field line (exchange.cpp: the cold path).
const char* diagnose_field_line(std::string_view head, std::size_t pos);

} // namespace detail

// Reads the line that starts at `pos` of `head`: a field (a token, a colon, a value of no control
// byte but HTAB, CRLF), the empty line that ends the head (`end`), or neither (`bad`, with `why`
// saying what is wrong: obsolete line folding, a control byte, no colon, an invalid name, no CRLF).
// Moves `pos` past the line's CRLF unless bad. One pass, 16 or 8 bytes at a time where it can.
// Always inlined: GCC's heuristics keep it out of line otherwise, and the call then costs as much
// as reading a short line.
[[gnu::always_inline]] inline FieldLineKind read_field_line(std::string_view head, std::size_t& pos,
                                                            FieldLine& out,
                                                            const char*& why) noexcept {
  // The scans below need no bounds checks: a LF ends `head` (every caller's head ends with its
  // empty line; bytes after the last LF cannot be a whole line and are left out), and each scan
  // stops at a LF at the latest.
  if (!head.empty() && head.back() != '\n')
    head = head.substr(0, head.rfind('\n') + 1); // (npos + 1 == 0: no LF at all)
  if (pos >= head.size()) {
    why = "unterminated header line";
    return FieldLineKind::bad;
  }
  const char* const start = head.data() + pos;
  const char* const end = head.data() + head.size();
  const char* p = start;
  if (p[0] == '\r' && end - p >= 2 && p[1] == '\n') {
    pos += 2;
    return FieldLineKind::end;
  }
  // The name: letters, digits and '-' in bulk, then the table four bytes a round (a byte is
  // read only when those before it were token bytes, so never past the LF).
  p = detail::skip_name_bytes(p, end);
  for (;;) {
    if (!detail::kTokenChars[static_cast<unsigned char>(p[0])])
      break;
    if (!detail::kTokenChars[static_cast<unsigned char>(p[1])]) {
      p += 1;
      break;
    }
    if (!detail::kTokenChars[static_cast<unsigned char>(p[2])]) {
      p += 2;
      break;
    }
    if (!detail::kTokenChars[static_cast<unsigned char>(p[3])]) {
      p += 3;
      break;
    }
    p += 4;
  }
  const char* colon = p;
  if (p == start || *p != ':') {
    why = detail::diagnose_field_line(head, pos);
    return FieldLineKind::bad;
  }
  ++p;
  while (*p == ' ' || *p == '\t')
    ++p;
  const char* value = p;
  // The value runs to the first control byte, which must be the CR of the line's CRLF.
  p = detail::skip_plain_bytes(p, end);
  while (!detail::kControl[static_cast<unsigned char>(*p)])
    ++p;
  if (p[0] != '\r' || end - p < 2 || p[1] != '\n') {
    why = detail::diagnose_field_line(head, pos);
    return FieldLineKind::bad;
  }
  const char* value_end = p;
  while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
    --value_end;
  out.name = std::string_view(start, static_cast<std::size_t>(colon - start));
  out.value = std::string_view(value, static_cast<std::size_t>(value_end - value));
  pos = static_cast<std::size_t>(p + 2 - head.data());
  return FieldLineKind::field;
}

} // namespace weir::core::http
