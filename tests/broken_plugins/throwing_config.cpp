// Broken plugin `throwing-config`: filter module `throwing-config` whose configuration constructor
// throws std::runtime_error("boom from config"). sdk.hpp's exception barrier turns it into
// WEIR_ERROR_CONFIG, an error log line and a configuration error at the module's node, both
// containing "boom from config". Expected: weir loads the plugin, but any configuration using the
// module is rejected with that message (and weir does not crash).
#include <weir/sdk.hpp>

#include <stdexcept>

namespace {
struct Config {
  explicit Config(weir::sdk::ConfigReader&) { throw std::runtime_error("boom from config"); }
};
struct Filter {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
} // namespace

WEIR_SDK_PLUGIN("broken-throwing-config", "0.0.0",
                weir::sdk::filter_module<Config, Filter>("throwing-config"))
