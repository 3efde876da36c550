#include "core/http/exchange.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace weir::core::http {

namespace {

// tchar (RFC 9110 5.6.2), as a table: one load per byte on the hot path of every head.
constexpr auto kTokenChars = [] {
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
constexpr auto kControl = [] {
  std::array<bool, 256> t{};
  for (size_t c = 0; c < 0x20; ++c)
    t[c] = c != '\t';
  t[0x7f] = true;
  return t;
}();

// Whether a word of 8 bytes may hold a control byte: one below 0x20 (HTAB too: the caller looks
// at such a word byte by byte) or DEL. Exact for "none"; bytes from 0x80 up are never flagged.
inline bool may_hold_control(std::uint64_t x) noexcept {
  constexpr std::uint64_t kOnes = 0x0101010101010101;
  constexpr std::uint64_t kHigh = 0x8080808080808080;
  std::uint64_t below_space = (x - 0x20 * kOnes) & ~x & kHigh;
  std::uint64_t del = x ^ (0x7f * kOnes);
  std::uint64_t is_del = (del - kOnes) & ~del & kHigh;
  return (below_space | is_del) != 0;
}

// Why the line at `pos` of `head` is not a field line.
const char* diagnose(std::string_view head, std::size_t pos) {
  auto eol = head.find("\r\n", pos);
  if (eol == std::string_view::npos)
    return "unterminated header line";
  std::string_view line = head.substr(pos, eol - pos);
  if (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
    return "obsolete line folding in headers";
  auto colon = line.find(':');
  if (colon != std::string_view::npos && !valid_header_name(line.substr(0, colon)))
    return "invalid header name";
  if (has_control_byte(line))
    return "control byte in header";
  if (colon == std::string_view::npos)
    return "header line without colon";
  return "malformed header line";
}

} // namespace

FieldLineKind read_field_line(std::string_view head, std::size_t& pos, FieldLine& out,
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
  // The name: four bytes a round (a byte is read only when those before it were token bytes,
  // so never past the LF).
  for (;;) {
    if (!kTokenChars[static_cast<unsigned char>(p[0])])
      break;
    if (!kTokenChars[static_cast<unsigned char>(p[1])]) {
      p += 1;
      break;
    }
    if (!kTokenChars[static_cast<unsigned char>(p[2])]) {
      p += 2;
      break;
    }
    if (!kTokenChars[static_cast<unsigned char>(p[3])]) {
      p += 3;
      break;
    }
    p += 4;
  }
  const char* colon = p;
  if (p == start || *p != ':') {
    why = diagnose(head, pos);
    return FieldLineKind::bad;
  }
  ++p;
  while (*p == ' ' || *p == '\t')
    ++p;
  const char* value = p;
  // The value runs to the first control byte, which must be the CR of the line's CRLF.
  while (end - p >= 8) {
    std::uint64_t x;
    std::memcpy(&x, p, 8);
    if (may_hold_control(x))
      break;
    p += 8;
  }
  while (!kControl[static_cast<unsigned char>(*p)])
    ++p;
  if (p[0] != '\r' || end - p < 2 || p[1] != '\n') {
    why = diagnose(head, pos);
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

bool has_control_byte(std::string_view s) {
  bool control = false;
  for (char ch : s)
    control |= kControl[static_cast<unsigned char>(ch)];
  return control;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool valid_header_name(std::string_view name) {
  if (name.empty())
    return false;
  bool ok = true;
  for (char ch : name)
    ok &= kTokenChars[static_cast<unsigned char>(ch)];
  return ok;
}

bool valid_header_value(std::string_view value) {
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n' || c == 0)
      return false;
    if (c < 0x20 && c != '\t')
      return false;
    if (c == 0x7f)
      return false;
  }
  return true;
}

} // namespace weir::core::http
