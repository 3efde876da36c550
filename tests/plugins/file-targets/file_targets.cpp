// Test plugin `file-targets`: a discovery module that publishes the targets listed in a file, and
// publishes again whenever the file's content changes (any byte: a changed comment republishes
// the same set). It stands in for a discovery that republishes host names, which none of weir's
// own does (static publishes once; dns, srv and dns-sd publish addresses).
//
//   discovery = { use = "file-targets", file = "/path/targets", poll = "50ms" }
//
// The file: one target per line, "ADDRESS" or "ADDRESS WEIGHT"; blank lines and lines starting
// with '#' are skipped. Log line the tests wait for: "published N target(s) (version V)", V
// counting the publications from 1.
#include <weir/sdk.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys({"file", "poll"});
    file = cfg.require_string("file").value_or("");
    poll = cfg.get_duration("poll", 50ms, 1ms, 60s);
  }
  std::string file;
  std::chrono::milliseconds poll{50};
};

class FileTargets {
public:
  FileTargets(weir::sdk::Host host, const Config& config)
      : host_(host), config_(config), timers_(host) {}

  weir_status_t start() {
    check();
    return WEIR_OK;
  }

private:
  void check() {
    auto text = read_file(config_.file);
    if (text && *text != last_) {
      last_ = *text;
      publish(*text);
    }
    timers_.after(config_.poll, [this] { check(); });
  }

  void publish(const std::string& text) {
    std::vector<weir::sdk::Target> targets;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      std::istringstream words(line);
      std::string address;
      if (!(words >> address) || address.starts_with("#")) {
        continue;
      }
      uint32_t weight = 1;
      words >> weight;
      targets.emplace_back(address, weight == 0 ? 1 : weight);
    }
    const weir_status_t st = host_.publish_targets(targets);
    ++version_;
    if (st != WEIR_OK) {
      host_.error("publishing failed: status ", st);
    } else {
      host_.info("published ", targets.size(), " target(s) (version ", version_, ")");
    }
  }

  weir::sdk::Host host_;
  const Config& config_;
  weir::sdk::Timers timers_;
  std::string last_;
  unsigned version_ = 0;
};

} // namespace

WEIR_SDK_PLUGIN("test-file-targets", "1.0.0",
                weir::sdk::discovery_module<Config, FileTargets>("file-targets"))
