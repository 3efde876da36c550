#include "core/http/exchange.hpp"

#include <array>
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

} // namespace

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
