#include "core/http/exchange.hpp"

#include "core/http/field_line.hpp"

#include <string_view>

namespace weir::core::http {

// Why the line at `pos` of `head` is not a field line.
const char* detail::diagnose_field_line(std::string_view head, std::size_t pos) {
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

bool has_control_byte(std::string_view s) {
  bool control = false;
  for (char ch : s)
    control |= detail::kControl[static_cast<unsigned char>(ch)];
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
    ok &= detail::kTokenChars[static_cast<unsigned char>(ch)];
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
