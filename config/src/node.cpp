// Node helpers, diagnostics, TOML serialisation of nodes and "did you mean".
#include "internal.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>
#include <tuple>

namespace weir::config {

const Node* Node::get(std::string_view key) const {
  if (type != Type::Table)
    return nullptr;
  for (const auto& [k, v] : table)
    if (k == key)
      return &v;
  return nullptr;
}

std::string Diagnostic::to_string() const {
  std::string out = loc.file;
  if (loc.line > 0) {
    out += ':';
    out += std::to_string(loc.line);
    out += ':';
    out += std::to_string(loc.column);
  }
  if (!out.empty())
    out += ": ";
  if (!key_path.empty()) {
    out += key_path;
    out += ": ";
  }
  out += message;
  return out;
}

void sort_diagnostics(std::vector<Diagnostic>& diagnostics, const std::string& source_name) {
  auto group = [&](const Diagnostic& d) {
    if (d.loc.file.starts_with("env:"))
      return 1;
    if (d.loc.file.starts_with("cli:"))
      return 2;
    return d.loc.file == source_name ? 0 : 3;
  };
  std::stable_sort(diagnostics.begin(), diagnostics.end(),
                   [&](const Diagnostic& a, const Diagnostic& b) {
                     return std::make_tuple(group(a), a.loc.line, a.loc.column) <
                            std::make_tuple(group(b), b.loc.line, b.loc.column);
                   });
}

bool path_within(std::string_view path, std::string_view base) {
  if (!path.starts_with(base))
    return false;
  return path.size() == base.size() || path[base.size()] == '.' || path[base.size()] == '[';
}

namespace detail {

bool is_bare_key(std::string_view key) {
  if (key.empty())
    return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string toml_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\f':
      out += "\\f";
      break;
    case '\r':
      out += "\\r";
      break;
    default: {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(u));
        out += buf;
      } else {
        out += c; // UTF-8 passes through (toml++ validated it on the way in)
      }
    }
    }
  }
  out += '"';
  return out;
}

std::string toml_key(std::string_view key) {
  return is_bare_key(key) ? std::string(key) : toml_quote(key);
}

std::string path_join(const std::string& base, std::string_view key) {
  if (base.empty())
    return toml_key(key);
  return base + "." + toml_key(key);
}

std::string path_index(const std::string& base, size_t index) {
  return base + "[" + std::to_string(index) + "]";
}

} // namespace detail

namespace {

std::string float_to_toml(double d) {
  if (std::isnan(d))
    return std::signbit(d) ? "-nan" : "nan";
  if (std::isinf(d))
    return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d); // shortest form that round-trips
  std::string out = ec == std::errc{} ? std::string(buf, end) : std::string("0.0");
  if (out.find_first_of(".eE") == std::string::npos)
    out += ".0"; // keep it a float
  return out;
}

void write_node(std::string& out, const Node& node) {
  switch (node.type) {
  case Node::Type::None:
    out += "\"\"";
    break; // not produced by the parser
  case Node::Type::String:
    out += detail::toml_quote(node.string);
    break;
  case Node::Type::Integer:
    out += std::to_string(node.integer);
    break;
  case Node::Type::Float:
    out += float_to_toml(node.floating);
    break;
  case Node::Type::Boolean:
    out += node.boolean ? "true" : "false";
    break;
  case Node::Type::Array: {
    out += '[';
    for (size_t i = 0; i < node.array.size(); ++i) {
      if (i > 0)
        out += ", ";
      write_node(out, node.array[i]);
    }
    out += ']';
    break;
  }
  case Node::Type::Table: {
    if (node.table.empty()) {
      out += "{}";
      break;
    }
    out += "{ ";
    for (size_t i = 0; i < node.table.size(); ++i) {
      if (i > 0)
        out += ", ";
      out += detail::toml_key(node.table[i].first);
      out += " = ";
      write_node(out, node.table[i].second);
    }
    out += " }";
    break;
  }
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

} // namespace

std::string node_to_toml(const Node& node) {
  std::string out;
  write_node(out, node);
  return out;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  const std::string w = lower(word);
  // Allow about one edit per three characters, at least one, at most three.
  const size_t limit = std::clamp<size_t>(w.size() / 3, 1, 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(w, lower(c));
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

} // namespace weir::config
