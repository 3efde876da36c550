// Broken plugin `throwing-request`: filter module `throwing-request` whose on_request throws for
// paths starting with /boom, and whose on_response throws for /boom-response. sdk.hpp's exception
// barrier turns the throw into WEIR_FILTER_FAILED and a log line. Expected: that request gets 500,
// weir logs the filter by name, and keeps serving every other request.
#include <weir/sdk.hpp>

#include <stdexcept>

namespace {
struct Filter {
  weir::sdk::FilterResult on_request(weir::sdk::Http& http) {
    if (http.path().starts_with("/boom") && !http.path().starts_with("/boom-response"))
      throw std::runtime_error("boom from on_request");
    return weir::sdk::FilterResult::Continue;
  }
  weir::sdk::FilterResult on_response(weir::sdk::Http& http) {
    if (http.path().starts_with("/boom-response"))
      throw std::runtime_error("boom from on_response");
    return weir::sdk::FilterResult::Continue;
  }
};
} // namespace

WEIR_SDK_PLUGIN("broken-throwing-request", "0.0.0",
                weir::sdk::filter_module<weir::sdk::NoConfig, Filter>("throwing-request"))
