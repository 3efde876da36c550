// Private helpers shared by the config sources. Free of toml++ (only parse.cpp includes it).
#pragma once

#include "weir/config/node.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weir::config::detail {

// A TOML document converted to a Node tree. Table entries are in file order.
struct ParsedDocument {
  Node root;
  // Position of the key that names each node, by node path (a node's own loc is where its value
  // starts). Array elements have no key, so they are absent.
  std::map<std::string, SourceLoc> key_locs;
  std::vector<Diagnostic> errors; // a syntax error (then root is empty), or unsupported values
  bool syntax_ok = false;
};

// Parse `text` with toml++. Never throws.
ParsedDocument parse_toml(std::string_view text, const std::string& source_name);

// `s` as a TOML basic string, quotes included.
std::string toml_quote(std::string_view s);
// `key` bare when it may be, quoted otherwise.
std::string toml_key(std::string_view key);
// "a.b" + "c" -> "a.b.c"; keys that are not bare are quoted.
std::string path_join(const std::string& base, std::string_view key);
// "a.b" + 3 -> "a.b[3]"
std::string path_index(const std::string& base, size_t index);

bool is_bare_key(std::string_view key);

} // namespace weir::config::detail
