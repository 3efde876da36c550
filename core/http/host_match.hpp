// Host names as routing compares them: lowercase, without port or trailing dot; "*.example.com"
// matches exactly one more label.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace weir::core::http {

// "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]"; "example.com." -> "example.com".
inline std::string host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    host = host.substr(0, close == std::string_view::npos ? host.size() : close + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out(host);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (!out.empty() && out.back() == '.')
    out.pop_back();
  return out;
}

// `pattern` is "*.example.com": matches "a.example.com", not "a.b.example.com" nor
// "example.com".
inline bool wildcard_match(std::string_view pattern, std::string_view name) {
  std::string_view suffix = pattern.substr(1); // ".example.com"
  if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix)
    return false;
  return name.substr(0, name.size() - suffix.size()).find('.') == std::string_view::npos;
}

// An exact name or a "*." wildcard against a normalised host.
inline bool host_matches(std::string_view pattern, std::string_view name) {
  if (pattern.starts_with("*."))
    return wildcard_match(pattern, name);
  return pattern == name;
}

} // namespace weir::core::http
