// Durations ("250ms", "5s", "1m30s") and sizes ("64KiB", "512").
#include "weir/config/model.hpp"

#include <array>
#include <cstdint>
#include <limits>

namespace weir::config {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Reads a run of decimal digits at text[i...]; nullopt when there is none or it overflows.
std::optional<uint64_t> read_number(std::string_view text, size_t& i) {
  size_t start = i;
  uint64_t value = 0;
  while (i < text.size() && is_digit(text[i])) {
    auto digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10)
      return std::nullopt;
    value = value * 10 + digit;
    ++i;
  }
  if (i == start)
    return std::nullopt;
  return value;
}

struct Unit {
  std::string_view name;
  uint64_t factor;
};

} // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  // Largest first: a combined duration must name its units in this order, each at most once.
  static constexpr std::array<Unit, 5> units{{
      {"d", 86'400'000},
      {"h", 3'600'000},
      {"m", 60'000},
      {"s", 1'000},
      {"ms", 1},
  }};
  constexpr auto max_ms = static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max());
  if (text.empty())
    return std::nullopt;
  uint64_t total = 0;
  size_t next_unit = 0; // units[next_unit...] may still follow
  size_t i = 0;
  while (i < text.size()) {
    auto number = read_number(text, i);
    if (!number)
      return std::nullopt;
    size_t unit_start = i;
    while (i < text.size() && is_alpha(text[i]))
      ++i;
    std::string_view unit_name = text.substr(unit_start, i - unit_start);
    size_t u = next_unit;
    while (u < units.size() && units[u].name != unit_name)
      ++u;
    if (u == units.size())
      return std::nullopt; // no unit, unknown unit, or out of order
    next_unit = u + 1;
    if (*number > max_ms / units[u].factor)
      return std::nullopt;
    uint64_t part = *number * units[u].factor;
    if (part > max_ms - total)
      return std::nullopt;
    total += part;
  }
  return Duration{static_cast<Duration::rep>(total)};
}

std::optional<uint64_t> parse_size(std::string_view text) {
  static constexpr std::array<Unit, 7> units{{
      {"B", 1},
      {"KB", 1'000},
      {"KiB", 1ull << 10},
      {"MB", 1'000'000},
      {"MiB", 1ull << 20},
      {"GB", 1'000'000'000},
      {"GiB", 1ull << 30},
  }};
  size_t i = 0;
  auto number = read_number(text, i);
  if (!number)
    return std::nullopt;
  std::string_view unit_name = text.substr(i);
  if (unit_name.empty())
    return number;
  for (const auto& unit : units) {
    if (unit.name == unit_name) {
      if (*number > std::numeric_limits<uint64_t>::max() / unit.factor)
        return std::nullopt;
      return *number * unit.factor;
    }
  }
  return std::nullopt;
}

std::string format_duration(Duration d) {
  static constexpr std::array<Unit, 4> units{{
      {"d", 86'400'000},
      {"h", 3'600'000},
      {"m", 60'000},
      {"s", 1'000},
  }};
  const auto ms = d.count();
  if (ms == 0)
    return "0s";
  if (ms > 0) {
    for (const auto& unit : units) {
      const auto factor = static_cast<Duration::rep>(unit.factor);
      if (ms % factor == 0)
        return std::to_string(ms / factor) + std::string(unit.name);
    }
  }
  return std::to_string(ms) + "ms";
}

} // namespace weir::config
