// filters/headers: edits request headers (before the request goes upstream) and response headers
// (before the response goes downstream).
//
//   [[services.NAME.routes]]
//   filters = [{ use = "headers", ... }] with these keys:
//   request-set = { "x-forwarded-proto" = "https" }   # replace (or create) a header
//   request-add = { "via" = "weir" }                  # append, keeping existing ones
//   request-remove = ["x-debug"]                      # remove every header of that name
//   response-set = { "cache-control" = "no-store" }
//   response-add = { ... }
//   response-remove = ["server"]
//
// Names are case-insensitive and must be RFC 9110 tokens; values must not contain CR, LF or NUL.
// Each stage applies remove, then set, then add.
#include <weir/sdk.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

namespace {

using weir::sdk::ConfigReader;

/// The edits of one header block.
struct Edits {
  std::vector<std::string> remove;
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::pair<std::string, std::string>> add;

  [[nodiscard]] bool empty() const { return remove.empty() && set.empty() && add.empty(); }
};

/// Report an invalid header name at `node`; true when valid.
bool check_name(const ConfigReader& node, std::string_view name) {
  if (weir::sdk::iequals(name, "content-length") || weir::sdk::iequals(name, "transfer-encoding")) {
    node.error("'" + std::string(name) +
               "' frames the message: weir sets it and a filter may not change it");
    return false;
  }
  if (weir::sdk::is_header_name(name)) {
    return true;
  }
  node.error("invalid header name '" + std::string(name) +
             "': a name is one or more of the characters A-Z a-z 0-9 !#$%&'*+-.^_`|~");
  return false;
}

/// Read `key` as a table of header name -> value.
std::vector<std::pair<std::string, std::string>>
read_table(const ConfigReader& cfg, std::string_view key, bool unique_names) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::optional<ConfigReader> table = cfg.get_table(key);
  if (!table) {
    return out;
  }
  table->each([&](std::string_view name, const ConfigReader& value) {
    const bool name_ok = check_name(value, name);
    std::optional<std::string> v = value.as_string();
    if (!name_ok || !v) {
      return;
    }
    if (!weir::sdk::is_header_value(*v)) {
      value.error("invalid value for header '" + std::string(name) +
                  "': values must not contain CR, LF or NUL");
      return;
    }
    if (unique_names) {
      for (const auto& [existing, unused] : out) {
        if (weir::sdk::iequals(existing, name)) {
          value.error("header '" + std::string(name) + "' is set twice (as '" + existing +
                      "'; names are case-insensitive)");
          return;
        }
      }
    }
    out.emplace_back(std::string(name), std::move(*v));
  });
  return out;
}

/// Read `key` as an array of header names (duplicates, ignoring case, collapse).
std::vector<std::string> read_names(const ConfigReader& cfg, std::string_view key) {
  std::vector<std::string> out;
  const std::optional<ConfigReader> list = cfg.get_array(key);
  if (!list) {
    return out;
  }
  for (const ConfigReader& element : list->elements()) {
    std::optional<std::string> name = element.as_string();
    if (!name || !check_name(element, *name)) {
      continue;
    }
    bool seen = false;
    for (const std::string& existing : out) {
      seen = seen || weir::sdk::iequals(existing, *name);
    }
    if (!seen) {
      out.push_back(std::move(*name));
    }
  }
  return out;
}

struct Config {
  explicit Config(ConfigReader& cfg) {
    cfg.expect_only_keys({"request-set", "request-add", "request-remove", "response-set",
                          "response-add", "response-remove"});
    request.remove = read_names(cfg, "request-remove");
    request.set = read_table(cfg, "request-set", true);
    request.add = read_table(cfg, "request-add", false);
    response.remove = read_names(cfg, "response-remove");
    response.set = read_table(cfg, "response-set", true);
    response.add = read_table(cfg, "response-add", false);
    if (cfg.ok() && request.empty() && response.empty()) {
      cfg.host().warn("the headers filter at ", cfg.path(), " has nothing to do");
    }
  }

  Edits request;
  Edits response;
};

class HeadersFilter {
public:
  HeadersFilter(weir::sdk::Host host, const Config& config) : host_(host), config_(config) {}

  weir::sdk::FilterResult on_request(weir::sdk::Http& http) {
    return apply(config_.request, http.request_headers(), "request");
  }

  weir::sdk::FilterResult on_response(weir::sdk::Http& http) {
    return apply(config_.response, http.response_headers(), "response");
  }

private:
  weir::sdk::FilterResult apply(const Edits& edits, const weir::sdk::Headers& headers,
                                const char* block) {
    for (const std::string& name : edits.remove) {
      if (!ok(headers.remove(name), "remove", block, name)) {
        return weir::sdk::FilterResult::Failed;
      }
    }
    for (const auto& [name, value] : edits.set) {
      if (!ok(headers.set(name, value), "set", block, name)) {
        return weir::sdk::FilterResult::Failed;
      }
    }
    for (const auto& [name, value] : edits.add) {
      if (!ok(headers.add(name, value), "add", block, name)) {
        return weir::sdk::FilterResult::Failed;
      }
    }
    return weir::sdk::FilterResult::Continue;
  }

  bool ok(weir_status_t st, const char* op, const char* block, const std::string& name) const {
    if (st == WEIR_OK) {
      return true;
    }
    host_.error("cannot ", op, " ", block, " header '", name, "': status ", st);
    return false;
  }

  weir::sdk::Host host_;
  const Config& config_;
};

} // namespace

WEIR_SDK_PLUGIN("filter-headers", WEIR_PLUGIN_VERSION,
                weir::sdk::filter_module<Config, HeadersFilter>("headers"))
