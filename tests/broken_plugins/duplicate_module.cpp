// Broken plugin `duplicate-module`: a valid plugin declaring a filter module named `headers`, which
// collides with the in-tree filters/headers plugin. Expected: loaded together with the in-tree
// plugins, weir refuses the duplicate (filter module `headers` defined by two plugins) and names
// both files.
#include <weir/sdk.hpp>

namespace {
struct Nothing {
  weir::sdk::FilterResult on_request(weir::sdk::Http&) { return weir::sdk::FilterResult::Continue; }
};
} // namespace

WEIR_SDK_PLUGIN("broken-duplicate-module", "0.0.0",
                weir::sdk::filter_module<weir::sdk::NoConfig, Nothing>("headers"))
