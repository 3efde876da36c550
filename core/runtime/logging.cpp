#include "core/runtime/logging.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <ctime>
#include <mutex>
#include <unordered_map>

namespace weir::core {
namespace {

struct LogState {
  std::mutex mutex;
  spdlog::sink_ptr sink;
  spdlog::level::level_enum level = spdlog::level::info;
  bool json = false;
  bool access = true;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

LogState& state() {
  static LogState s;
  return s;
}

const char* level_name(spdlog::level::level_enum level) {
  switch (level) {
  case spdlog::level::trace:
    return "trace";
  case spdlog::level::debug:
    return "debug";
  case spdlog::level::info:
    return "info";
  case spdlog::level::warn:
    return "warn";
  case spdlog::level::err:
    return "error";
  case spdlog::level::critical:
    return "critical";
  default:
    return "off";
  }
}

void append_timestamp(std::string& out, spdlog::log_clock::time_point tp, bool iso) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(tp);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp - secs).count();
  std::time_t t = spdlog::log_clock::to_time_t(tp);
  std::tm tm{};
  if (iso) {
    gmtime_r(&t, &tm);
    fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ms);
  } else {
    localtime_r(&t, &tm);
    fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ms);
  }
}

// Text: "2026-11-26 14:00:00.123 [info] [core] message". JSON: one object per line; the access
// logger's payload is already a list of JSON fields and is spliced in as such.
class WeirFormatter final : public spdlog::formatter {
public:
  explicit WeirFormatter(bool json) : json_(json) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string out;
    out.reserve(msg.payload.size() + 96);
    std::string_view name(msg.logger_name.data(), msg.logger_name.size());
    std::string_view payload(msg.payload.data(), msg.payload.size());
    if (json_) {
      out += "{\"ts\":\"";
      append_timestamp(out, msg.time, true);
      out += "\",\"level\":\"";
      out += level_name(msg.level);
      out += "\",\"logger\":\"";
      append_json_escaped(out, name);
      if (name == "access") {
        out += "\",\"msg\":\"access\",";
        out += payload;
        out += "}\n";
      } else {
        out += "\",\"msg\":\"";
        append_json_escaped(out, payload);
        out += "\"}\n";
      }
    } else {
      append_timestamp(out, msg.time, false);
      out += " [";
      out += level_name(msg.level);
      out += "] [";
      out += name;
      out += "] ";
      out += payload;
      out += '\n';
    }
    dest.append(out.data(), out.data() + out.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<WeirFormatter>(json_);
  }

private:
  bool json_;
};

spdlog::level::level_enum parse_level(const std::string& text) {
  if (text == "trace")
    return spdlog::level::trace;
  if (text == "debug")
    return spdlog::level::debug;
  if (text == "warn")
    return spdlog::level::warn;
  if (text == "error")
    return spdlog::level::err;
  return spdlog::level::info;
}

spdlog::sink_ptr default_sink() {
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  sink->set_formatter(std::make_unique<WeirFormatter>(false));
  return sink;
}

} // namespace

void append_json_escaped(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
      } else {
        out += c;
      }
    }
  }
}

bool setup_logging(const LogSettings& settings, std::string* error) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  spdlog::sink_ptr sink;
  try {
    if (settings.output == "stdout" || settings.output.empty()) {
      sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    } else if (settings.output == "stderr") {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.output, false);
    }
  } catch (const std::exception& e) {
    if (error)
      *error = fmt::format("cannot open log output \"{}\": {}", settings.output, e.what());
    return false;
  }
  s.json = settings.format == "json";
  s.access = settings.access_log;
  s.level = parse_level(settings.level);
  sink->set_formatter(std::make_unique<WeirFormatter>(s.json));
  s.sink = sink;
  for (auto& [name, lg] : s.loggers) {
    lg->sinks().clear();
    lg->sinks().push_back(sink);
    lg->set_level(name == "access" ? spdlog::level::info : s.level);
    lg->flush_on(spdlog::level::trace);
  }
  return true;
}

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  auto it = s.loggers.find(name);
  if (it != s.loggers.end())
    return it->second;
  if (!s.sink)
    s.sink = default_sink();
  auto lg = std::make_shared<spdlog::logger>(name, s.sink);
  lg->set_level(name == "access" ? spdlog::level::info : s.level);
  lg->flush_on(spdlog::level::trace);
  s.loggers.emplace(name, lg);
  return lg;
}

bool access_log_enabled() {
  return state().access;
}

void log_access(const AccessRecord& r) {
  static const auto lg = logger("access");
  std::string line;
  line.reserve(256);
  // An IPv6 client in brackets, so that the port stays apart: "[2001:db8::7]:40000".
  bool v6 = r.client_ip.find(':') != std::string_view::npos;
  if (state().json) {
    line += "\"client\":\"";
    if (v6)
      line += '[';
    append_json_escaped(line, r.client_ip);
    if (v6)
      line += ']';
    fmt::format_to(std::back_inserter(line), ":{}\",\"method\":\"", r.client_port);
    append_json_escaped(line, r.method);
    line += "\",\"path\":\"";
    append_json_escaped(line, r.target);
    fmt::format_to(std::back_inserter(line),
                   "\",\"version\":\"{}.{}\",\"status\":{},\"bytes\":{},\"duration_ms\":{:.3f},"
                   "\"upstream\":\"",
                   r.version / 10, r.version % 10, r.status, r.bytes, r.duration_ms);
    append_json_escaped(line, r.upstream.empty() ? std::string_view("-") : r.upstream);
    line += "\",\"service\":\"";
    append_json_escaped(line, r.service);
    line += '"';
  } else {
    std::string target;
    append_json_escaped(target, r.target); // keeps control bytes out of the text log
    fmt::format_to(std::back_inserter(line),
                   "{}{}{}:{} \"{} {} HTTP/{}.{}\" {} {} {:.3f}ms upstream={} service={}",
                   v6 ? "[" : "", r.client_ip, v6 ? "]" : "", r.client_port, r.method, target,
                   r.version / 10, r.version % 10, r.status, r.bytes, r.duration_ms,
                   r.upstream.empty() ? std::string_view("-") : r.upstream, r.service);
  }
  lg->info(line);
}

} // namespace weir::core
