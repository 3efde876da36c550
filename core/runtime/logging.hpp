// Logging: one named spdlog logger per subsystem, all writing through one sink in text or JSON.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace weir::core {

struct LogSettings {
  std::string level = "info";
  std::string format = "text";
  std::string output = "stdout";
  bool access_log = true;
};

// Configure the sink and every logger made so far or later. Returns false and sets *error when the
// output cannot be opened.
bool setup_logging(const LogSettings& settings, std::string* error);

// The logger of a subsystem ("core", "access", "plugin", "upstream", ...), created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

bool access_log_enabled();

// One access-log line; written as JSON fields in JSON mode and as a readable line otherwise.
struct AccessRecord {
  std::string_view client_ip;
  uint16_t client_port = 0;
  std::string_view method;
  std::string_view target;
  unsigned version = 11;
  unsigned status = 0;
  uint64_t bytes = 0;
  double duration_ms = 0;
  std::string_view upstream; // "" = none
  std::string_view service;
};
void log_access(const AccessRecord& record);

// JSON string escaping (without the quotes).
void append_json_escaped(std::string& out, std::string_view text);

} // namespace weir::core
