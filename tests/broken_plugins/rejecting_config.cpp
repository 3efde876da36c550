// Broken plugin `rejecting-config`: filter module `rejecting-config` that reports the configuration
// error "rejecting-config refuses every configuration" at its node. Expected: weir loads the
// plugin, but any configuration using the module is rejected with that message, located at the
// module's table (file:line:column and key path).
#include <weir/sdk.hpp>

namespace {
struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.error("rejecting-config refuses every configuration");
  }
};
struct Filter {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
} // namespace

WEIR_SDK_PLUGIN("broken-rejecting-config", "0.0.0",
                weir::sdk::filter_module<Config, Filter>("rejecting-config"))
