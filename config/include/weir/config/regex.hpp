// Route path regular expressions: Perl-compatible syntax (Boost.Regex), searched in the path.
// Boost.Regex is confined to src/regex.cpp.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace weir::config {

// "" when `pattern` compiles, else what is wrong with it.
std::string check_regex(const std::string& pattern);

// A compiled pattern. Matching never throws: a pattern too complex for an input (Boost.Regex
// bounds the work of one match) does not match it.
class Regex {
public:
  explicit Regex(const std::string& pattern); // the pattern must have passed check_regex
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // True when the pattern matches somewhere in `text` (anchor with ^ and $ for a whole match).
  bool search(std::string_view text) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace weir::config
