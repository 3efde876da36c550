// filters/respond: answers every request that reaches it locally, like nginx `return`.
//
//   filters = [{ use = "respond", ... }] with these keys:
//   status = 503                       # 200..599, default 200
//   body = "down for maintenance\n"    # default ""
//   content-type = "text/plain"        # default "text/plain"; "" sends none
//   headers = { "retry-after" = "120" } # optional, set on the local response
//
// on_request answers with status, body and content-type. The extra `headers` are set in
// on_response, the stage at which response headers exist: the ABI gives on_response no way to
// tell a local response from an upstream one, and this filter answers every request it sees, so
// every response passing its on_response is treated as its own.
#include <weir/sdk.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using weir::sdk::ConfigReader;

struct Config {
  explicit Config(ConfigReader& cfg) {
    cfg.expect_only_keys({"status", "body", "content-type", "headers"});
    status = cfg.get_int<uint32_t>("status", 200, 200, 599); // 1xx is not a final answer
    body = cfg.get_string("body", "");
    if (const ConfigReader node = cfg.child("content-type")) {
      content_type = node.as_string().value_or(content_type);
      if (!weir::sdk::is_header_value(content_type)) {
        node.error("invalid content-type: values must not contain CR, LF or NUL");
      }
    }
    if (const std::optional<ConfigReader> table = cfg.get_table("headers")) {
      table->each([this](std::string_view name, const ConfigReader& value) {
        std::optional<std::string> v = value.as_string();
        if (!weir::sdk::is_header_name(name)) {
          value.error("invalid header name '" + std::string(name) +
                      "': a name is one or more of the characters A-Z a-z 0-9 !#$%&'*+-.^_`|~");
          return;
        }
        if (!v) {
          return;
        }
        if (!weir::sdk::is_header_value(*v)) {
          value.error("invalid value for header '" + std::string(name) +
                      "': values must not contain CR, LF or NUL");
          return;
        }
        for (const auto& [existing, unused] : headers) {
          if (weir::sdk::iequals(existing, name)) {
            value.error("header '" + std::string(name) + "' is set twice (as '" + existing +
                        "'; names are case-insensitive)");
            return;
          }
        }
        headers.emplace_back(std::string(name), std::move(*v));
      });
    }
  }

  uint32_t status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;
};

class Respond {
public:
  Respond(weir::sdk::Host host, const Config& config) : host_(host), config_(config) {}

  weir::sdk::FilterResult on_request(weir::sdk::Http& http) {
    const weir_status_t st = http.respond(config_.status, config_.body, config_.content_type);
    if (st != WEIR_OK) {
      host_.error("cannot answer ", http.method(), " ", http.path(), " locally: status ", st);
      return weir::sdk::FilterResult::Failed;
    }
    return weir::sdk::FilterResult::Responded;
  }

  weir::sdk::FilterResult on_response(weir::sdk::Http& http) {
    const weir::sdk::Headers response = http.response_headers();
    for (const auto& [name, value] : config_.headers) {
      if (const weir_status_t st = response.set(name, value); st != WEIR_OK) {
        host_.error("cannot set response header '", name, "': status ", st);
        return weir::sdk::FilterResult::Failed;
      }
    }
    return weir::sdk::FilterResult::Continue;
  }

private:
  weir::sdk::Host host_;
  const Config& config_;
};

} // namespace

WEIR_SDK_PLUGIN("filter-respond", WEIR_PLUGIN_VERSION,
                weir::sdk::filter_module<Config, Respond>("respond"))
