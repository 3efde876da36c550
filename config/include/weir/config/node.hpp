// A parsed configuration value with its source position and key path. Plugin tables are kept as
// Node trees so the core can hand them to plugins (the config-view API of the ABI) and still report
// errors at file:line:column. Deliberately free of toml++ so that including it stays cheap.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::config {

struct SourceLoc {
  std::string file; // path of the file, or "env:WEIR_X" / "cli:--x" for overlays
  uint32_t line = 0;
  uint32_t column = 0;
};

class Node {
public:
  enum class Type { None, String, Integer, Float, Boolean, Array, Table };

  Type type = Type::None;
  std::string string;
  int64_t integer = 0;
  double floating = 0;
  bool boolean = false;
  std::vector<Node> array;
  std::vector<std::pair<std::string, Node>> table; // in file order
  SourceLoc loc;
  std::string path; // key path, e.g. "upstreams.app.lb" or "upstreams.app.discovery.targets[1]"

  const Node* get(std::string_view key) const;
  bool is_table() const { return type == Type::Table; }
};

// One problem found in a configuration. to_string() gives the one-line form
// "file:line:col: key.path: message".
struct Diagnostic {
  SourceLoc loc;
  std::string key_path;
  std::string message;

  std::string to_string() const;
};

// Diagnostics in the order they are printed: the file's by line and column, then those of the
// environment ("env:...") and of the command line ("cli:..."), then any other file's.
void sort_diagnostics(std::vector<Diagnostic>& diagnostics, const std::string& source_name);

// Whether key path `path` is `base` itself or lies under it: "a.b[0].c" and "a.b.c" are under
// "a.b", "a.bc" is not.
bool path_within(std::string_view path, std::string_view base);

// Serialise a node as a TOML value (inline tables for tables).
std::string node_to_toml(const Node& node);

// The closest of `candidates` to `word` (edit distance), or "" when none is close enough.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

} // namespace weir::config
