#include "core/runtime/cli.hpp"

#include "core/runtime/logging.hpp"
#include "core/runtime/plan.hpp"
#include "core/runtime/server.hpp"
#include "weir/abi.h"
#include "weir/config/model.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace weir::core {

namespace {

constexpr std::string_view kDefaultConfig = "/etc/weir/weir.toml";

const char* kUsage = R"(weir: a reverse proxy whose policies are plugins

Usage:
  weir [run] [-c FILE] [options]   run in the foreground
  weir check [-c FILE] [options]   validate the configuration and plugins, bind nothing
  weir config dump [-c FILE]       print the effective configuration with every default
  weir env                         list the WEIR_* environment variables
  weir --version                   print the version
  weir --help                      print this help

Options (they win over WEIR_* variables, which win over the file):
  -c, --config FILE      configuration file (default: $WEIR_CONFIG or /etc/weir/weir.toml)
  --workers N            worker threads (0 = one per core)
  --log-level LEVEL      trace, debug, info, warn or error
  --log-format FORMAT    text or json
)";

struct Args {
  std::string command = "run";
  std::optional<std::string> config_path;
  config::Overrides overrides;
  std::vector<std::string> errors;
};

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  size_t i = 0;
  if (i < args.size() && !args[i].empty() && args[i][0] != '-') {
    std::string_view cmd = args[i++];
    if (cmd == "run" || cmd == "check" || cmd == "env") {
      a.command = std::string(cmd);
    } else if (cmd == "config") {
      if (i < args.size() && args[i] == "dump") {
        ++i;
        a.command = "dump";
      } else {
        a.errors.push_back("\"weir config\" needs a subcommand: dump");
      }
    } else {
      a.errors.push_back(
          fmt::format("unknown command \"{}\" (known: run, check, config dump, env)", cmd));
    }
  }
  auto value = [&](std::string_view opt, std::string_view arg) -> std::optional<std::string> {
    auto eq = arg.find('=');
    if (eq != std::string_view::npos)
      return std::string(arg.substr(eq + 1));
    if (i + 1 >= args.size()) {
      a.errors.push_back(fmt::format("option {} needs a value", opt));
      return std::nullopt;
    }
    return std::string(args[++i]);
  };
  for (; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view name = arg.substr(0, arg.find('='));
    if (arg == "-h" || arg == "--help") {
      a.command = "help";
    } else if (arg == "-V" || arg == "--version") {
      a.command = "version";
    } else if (name == "-c" || name == "--config") {
      if (auto v = value(name, arg))
        a.config_path = *v;
    } else if (name == "--workers") {
      if (auto v = value(name, arg)) {
        uint32_t n = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
        if (ec != std::errc() || p != v->data() + v->size() || n > 1024)
          a.errors.push_back(fmt::format("cli:--workers: system.workers: \"{}\" is not an "
                                         "integer between 0 and 1024",
                                         *v));
        else
          a.overrides.workers = n;
      }
    } else if (name == "--log-level") {
      if (auto v = value(name, arg))
        a.overrides.log_level = *v;
    } else if (name == "--log-format") {
      if (auto v = value(name, arg))
        a.overrides.log_format = *v;
    } else {
      a.errors.push_back(fmt::format("unknown option \"{}\" (see weir --help)", arg));
    }
  }
  return a;
}

std::map<std::string, std::string> weir_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (kv.substr(0, 5) != "WEIR_")
      continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos)
      continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

void print_lines(const std::vector<std::string>& lines) {
  for (const auto& l : lines)
    std::fprintf(stderr, "%s\n", l.c_str());
}

} // namespace

int cli_main(int argc, char** argv) {
  Args args = parse_args(argc, argv);
  if (!args.errors.empty()) {
    print_lines(args.errors);
    return 2;
  }
  if (args.command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.command == "version") {
    std::printf("weir %s (plugin ABI %d.%d)\n", WEIR_VERSION, WEIR_ABI_MAJOR, WEIR_ABI_MINOR);
    return 0;
  }
  if (args.command == "env") {
    for (const auto& v : config::env_vars()) {
      std::printf("%-18s %s\n", v.name.c_str(), v.meaning.c_str());
    }
    return 0;
  }

  auto env = weir_environment();
  // An empty variable counts as unset, as for every WEIR_* variable.
  std::string path = args.config_path              ? *args.config_path
                     : !env["WEIR_CONFIG"].empty() ? env["WEIR_CONFIG"]
                                                   : std::string(kDefaultConfig);
  auto loaded = config::load_file(path, args.overrides, env);
  const char* plugin_path = std::getenv("WEIR_PLUGIN_PATH");
  if (!loaded.ok()) {
    // The plugin tables and certificates of what did load are checked too (plugin log lines go
    // to stdout), so that every mistake shows at once, in file order.
    std::vector<std::string> errors;
    if (loaded.config && args.command != "dump") {
      LogSettings ls;
      ls.level = loaded.config->log.level;
      ls.output = "stdout";
      std::string ignored;
      setup_logging(ls, &ignored);
      Plan::build(std::move(*loaded.config), plugin_path, errors, std::move(loaded.errors));
    } else {
      for (const auto& d : loaded.errors)
        errors.push_back(d.to_string());
    }
    print_lines(errors);
    if (errors.empty())
      std::fprintf(stderr, "%s: configuration refused\n", path.c_str());
    return 1;
  }
  if (args.command == "dump") {
    std::fputs(config::dump_toml(*loaded.config).c_str(), stdout);
    return 0;
  }

  LogSettings ls;
  ls.level = loaded.config->log.level;
  ls.format = loaded.config->log.format;
  // check: problems go to stderr one per line; plugin log lines stay on stdout.
  ls.output = args.command == "check" ? "stdout" : loaded.config->log.output;
  ls.access_log = loaded.config->log.access_log;
  std::string log_error;
  if (!setup_logging(ls, &log_error)) {
    std::fprintf(stderr, "%s: log.output: %s\n", path.c_str(), log_error.c_str());
    return 1;
  }

  std::vector<std::string> errors;
  auto plan = Plan::build(std::move(*loaded.config), plugin_path, errors);
  if (!plan) {
    print_lines(errors);
    if (errors.empty())
      std::fprintf(stderr, "%s: configuration refused\n", path.c_str());
    return 1;
  }
  if (args.command == "check") {
    std::printf("%s: configuration OK (%zu plugin libraries, %zu upstreams, %zu services)\n",
                path.c_str(), plan->registry->library_count(), plan->upstreams.size(),
                plan->services.size());
    return 0;
  }
  return run_server(std::move(plan));
}

} // namespace weir::core
