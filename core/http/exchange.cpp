#include "core/http/exchange.hpp"

namespace weir::core::http {

bool valid_header_name(std::string_view name) {
  if (name.empty())
    return false;
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) {
      switch (c) {
      case '!':
      case '#':
      case '$':
      case '%':
      case '&':
      case '\'':
      case '*':
      case '+':
      case '-':
      case '.':
      case '^':
      case '_':
      case '`':
      case '|':
      case '~':
        ok = true;
        break;
      default:
        break;
      }
    }
    if (!ok)
      return false;
  }
  return true;
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
