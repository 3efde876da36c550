#include "core/http/forwarded.hpp"

#include "core/http/exchange.hpp"

#include <arpa/inet.h>
#include <boost/beast/core/string.hpp>

#include <array>
#include <cstdint>

namespace weir::core::http {

namespace {

// The walk stops after this many elements: a long chain of trusted hops is not plausible, and an
// attacker behind a trusted proxy should not make us look far.
constexpr size_t kMaxElements = 64;

bool is_ip(std::string_view text, int family) {
  std::array<uint8_t, 16> buf{};
  std::string s(text);
  return inet_pton(family, s.c_str(), buf.data()) == 1;
}

bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// A port: 1 to 5 digits up to 65535, or an obfuscated one ("_" 1*(ALPHA / DIGIT / "." / "_" /
// "-"), RFC 7239 6.3).
bool valid_port(std::string_view p) {
  if (p.empty())
    return false;
  if (p[0] == '_') {
    if (p.size() == 1)
      return false;
    for (char c : p.substr(1))
      if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
        return false;
    return true;
  }
  if (p.size() > 5)
    return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v <= 65535;
}

// The address in one chain element, without port or brackets: "1.2.3.4", "1.2.3.4:80",
// "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443". Empty when the element is not an address.
std::string_view element_address(std::string_view e) {
  if (!e.empty() && e.front() == '[') {
    const size_t close = e.find(']');
    if (close == std::string_view::npos)
      return {};
    const std::string_view ip = e.substr(1, close - 1);
    const std::string_view rest = e.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !valid_port(rest.substr(1))))
      return {};
    return is_ip(ip, AF_INET6) ? ip : std::string_view{};
  }
  if (is_ip(e, AF_INET) || is_ip(e, AF_INET6))
    return e;
  const size_t colon = e.find(':');
  if (colon == std::string_view::npos || e.find(':', colon + 1) != std::string_view::npos)
    return {};
  const std::string_view ip = e.substr(0, colon);
  if (!valid_port(e.substr(colon + 1)) || !is_ip(ip, AF_INET))
    return {};
  return ip;
}

// Split on `sep`. With `quotes`, not inside a quoted-string (backslash escapes honoured there), and
// an unterminated quote runs to the end of the text.
std::vector<std::string_view> split(std::string_view s, char sep, bool quotes) {
  std::vector<std::string_view> parts;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (!quotes) {
      if (c == sep) {
        parts.push_back(s.substr(start, i - start));
        start = i + 1;
      }
    } else if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

// A Forwarded parameter value: a token as is, or a quoted-string without its quotes and escapes.
// False when a quoted-string is not properly closed at the end of the value.
bool unquote(std::string_view v, std::string& out) {
  out.clear();
  if (v.empty() || v.front() != '"') {
    if (v.find('"') != std::string_view::npos)
      return false;
    out = std::string(v);
    return true;
  }
  for (size_t i = 1; i < v.size(); ++i) {
    const char c = v[i];
    if (c == '\\') {
      if (++i == v.size())
        return false;
      out.push_back(v[i]);
    } else if (c == '"') {
      return i + 1 == v.size();
    } else {
      out.push_back(c);
    }
  }
  return false; // no closing quote
}

// The for= value of one Forwarded element, or empty when there is none or the element is malformed
// (both stop the walk).
std::string forwarded_for(std::string_view element) {
  std::string result;
  bool have_for = false;
  for (std::string_view pair : split(element, ';', true)) {
    pair = trim_ows(pair);
    if (pair.empty())
      continue;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos)
      return {};
    if (!boost::beast::iequals(trim_ows(pair.substr(0, eq)), "for"))
      continue;
    if (have_for) // the same parameter twice: ambiguous
      return {};
    have_for = true;
    if (!unquote(trim_ows(pair.substr(eq + 1)), result))
      return {};
  }
  return result;
}

} // namespace

std::string effective_client(std::string_view peer, const std::vector<std::string_view>& xff,
                             const std::vector<std::string_view>& forwarded,
                             const std::vector<weir::config::CidrRange>& trusted) {
  if (!weir::config::in_any(trusted, peer))
    return std::string(peer);

  // The chain, left to right. An empty entry is one that is not an address.
  std::vector<std::string> chain;
  if (!forwarded.empty()) {
    for (std::string_view line : forwarded)
      for (std::string_view element : split(line, ',', true))
        if (!trim_ows(element).empty())
          chain.push_back(forwarded_for(element));
  } else {
    // X-Forwarded-For has no quoting: a stray quote from a client must not swallow what trusted
    // proxies appended after it.
    for (std::string_view line : xff)
      for (std::string_view element : split(line, ',', false))
        if (!trim_ows(element).empty())
          chain.emplace_back(trim_ows(element));
  }

  std::string client(peer);
  size_t examined = 0;
  for (auto it = chain.rbegin(); it != chain.rend() && examined < kMaxElements; ++it, ++examined) {
    const std::string_view addr = element_address(*it);
    if (addr.empty())
      break;
    if (!weir::config::in_any(trusted, addr))
      return std::string(addr);
    client = std::string(addr);
  }
  return client;
}

} // namespace weir::core::http
