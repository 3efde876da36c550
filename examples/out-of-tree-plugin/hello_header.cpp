// hello-header: a weir filter that adds `x-hello: <greeting>` to every response.
//
//   [[routes.filters]]
//   use = "hello-header"
//   greeting = "hi there"    # optional, default "hello"
#include <weir/sdk.hpp>

#include <string>

#ifndef HELLO_HEADER_VERSION
#define HELLO_HEADER_VERSION "0.0.0"
#endif

namespace {

struct Config {
  explicit Config(weir::sdk::ConfigReader& cfg) {
    cfg.expect_only_keys({"greeting"});
    greeting = cfg.get_string("greeting", "hello");
    if (!weir::sdk::is_header_value(greeting)) {
      cfg.child("greeting").error("the greeting must not contain CR, LF or NUL");
    }
  }
  std::string greeting;
};

class HelloHeader {
public:
  HelloHeader(weir::sdk::Host host, const Config& config) : host_(host), config_(config) {}

  weir::sdk::FilterResult on_response(weir::sdk::Http& http) {
    if (http.response_headers().add("x-hello", config_.greeting) != WEIR_OK) {
      host_.warn("could not add x-hello to the response for ", http.path());
    }
    return weir::sdk::FilterResult::Continue;
  }

private:
  weir::sdk::Host host_;
  const Config& config_;
};

} // namespace

WEIR_SDK_PLUGIN("hello-header", HELLO_HEADER_VERSION,
                weir::sdk::filter_module<Config, HelloHeader>("hello-header"))
