// lb/hash: the request key, the target list and the eligibility rule (see key.hpp).
#include "key.hpp"

#include <algorithm>

namespace weir_lb_hash {

namespace {

namespace sdk = weir::sdk;

struct SourceName {
  std::string_view name;
  KeySource source;
  bool needs_name;
};

constexpr std::array<SourceName, 6> source_names = {{
    {"client-ip", KeySource::ClientIp, false},
    {"path", KeySource::Path, false},
    {"uri", KeySource::Uri, false},
    {"header", KeySource::Header, true},
    {"cookie", KeySource::Cookie, true},
    {"query", KeySource::Query, true},
}};

constexpr std::string_view allowed_sources = "client-ip, path, uri, header, cookie, query";

[[nodiscard]] constexpr bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t';
}

[[nodiscard]] constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_blank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_blank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

/// Why `name` cannot be a cookie or query parameter name, or "" when it can.
[[nodiscard]] std::string_view bad_name(KeySource source, std::string_view name) {
  if (name.empty()) {
    return "must not be empty";
  }
  switch (source) {
  case KeySource::Header:
    return sdk::is_header_name(name) ? std::string_view()
                                     : "must be an HTTP header name (letters, digits and "
                                       "!#$%&'*+-.^_`|~)";
  case KeySource::Cookie:
    for (char c : name) {
      if (!sdk::is_token_char(c)) {
        return "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)";
      }
    }
    return {};
  case KeySource::Query:
    for (char c : name) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '&' || c == '=' || c == '#' || u <= 0x20 || u == 0x7f) {
        return "must be a query parameter name as it appears in the query, without '&', '=', "
               "'#', blanks or control characters";
      }
    }
    return {};
  default:
    return {};
  }
}

} // namespace

KeySpec KeySpec::read(const sdk::ConfigReader& cfg) {
  KeySpec spec;
  bool needs_name = false;
  std::string source_text = "client-ip";
  if (const sdk::ConfigReader key = cfg.child("key")) {
    if (auto s = key.as_string()) {
      source_text = *s;
      const auto* found = std::find_if(source_names.begin(), source_names.end(),
                                       [&](const SourceName& n) { return n.name == source_text; });
      if (found == source_names.end()) {
        std::array<std::string_view, source_names.size()> candidates{};
        std::transform(source_names.begin(), source_names.end(), candidates.begin(),
                       [](const SourceName& n) { return n.name; });
        std::string msg = sdk::cat("unknown key source \"", source_text,
                                   "\" (expected one of: ", allowed_sources, ")");
        const std::string suggestion = sdk::did_you_mean(source_text, candidates);
        if (!suggestion.empty()) {
          msg += sdk::cat("; did you mean \"", suggestion, "\"?");
        }
        key.error(msg);
        return spec;
      }
      spec.source = found->source;
      needs_name = found->needs_name;
    } else {
      return spec; // the type error is reported
    }
  }

  const sdk::ConfigReader name = cfg.child("name");
  if (needs_name) {
    if (!name) {
      cfg.error(sdk::cat("missing required key 'name' (a string): key = \"", source_text,
                         "\" needs the ", source_text, source_text == "query" ? " parameter" : "",
                         " name"));
      return spec;
    }
    if (auto s = name.as_string()) {
      const std::string_view why = bad_name(spec.source, *s);
      if (!why.empty()) {
        name.error(sdk::cat("'name' ", why, ", got \"", *s, "\""));
        return spec;
      }
      spec.name = std::move(*s);
    }
  } else if (name) {
    name.error(sdk::cat("'name' is allowed only with key = \"header\", \"cookie\" or \"query\" "
                        "(key is \"",
                        source_text, "\")"));
  }
  return spec;
}

size_t Key::size() const noexcept {
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    total += parts[i].size();
  }
  return total;
}

void Key::copy_to(std::string& out) const {
  out.clear();
  for (size_t i = 0; i < count; ++i) {
    out.append(parts[i]);
  }
}

std::optional<std::string_view> find_cookie(std::string_view header,
                                            std::string_view name) noexcept {
  while (!header.empty()) {
    const size_t end = header.find(';');
    const std::string_view pair = header.substr(0, end);
    header = end == std::string_view::npos ? std::string_view() : header.substr(end + 1);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      continue; // not a name=value pair
    }
    if (trim(pair.substr(0, eq)) == name) {
      return trim(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

std::optional<std::string_view> find_query_param(std::string_view query,
                                                 std::string_view name) noexcept {
  while (!query.empty()) {
    const size_t end = query.find('&');
    const std::string_view param = query.substr(0, end);
    query = end == std::string_view::npos ? std::string_view() : query.substr(end + 1);
    const size_t eq = param.find('=');
    if (param.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    }
  }
  return std::nullopt;
}

std::optional<Key> request_key(const KeySpec& spec, const sdk::PickRequest& req) {
  if (!req.http) {
    return std::nullopt;
  }
  const sdk::Http& http = *req.http;
  Key key;
  switch (spec.source) {
  case KeySource::ClientIp: {
    const std::string_view ip = http.client_ip();
    if (ip.empty()) {
      return std::nullopt;
    }
    key.add(ip);
    return key;
  }
  case KeySource::Path:
    key.add(http.path());
    return key;
  case KeySource::Uri: {
    key.add(http.path());
    const std::string_view query = http.query();
    if (!query.empty()) {
      key.add("?");
      key.add(query);
    }
    return key;
  }
  case KeySource::Header: {
    const auto value = http.request_headers().get(spec.name);
    if (!value) {
      return std::nullopt;
    }
    key.add(*value);
    return key;
  }
  case KeySource::Cookie: {
    const sdk::Headers headers = http.request_headers();
    for (size_t i = 0;; ++i) {
      const auto header = headers.get("cookie", i);
      if (!header) {
        break;
      }
      if (const auto value = find_cookie(*header, spec.name)) {
        key.add(*value);
        return key;
      }
    }
    return std::nullopt;
  }
  case KeySource::Query: {
    const auto value = find_query_param(http.query(), spec.name);
    if (!value) {
      return std::nullopt;
    }
    key.add(*value);
    return key;
  }
  }
  return std::nullopt;
}

std::vector<Peer> read_peers(const std::vector<sdk::Target>& targets) {
  std::vector<Peer> peers;
  peers.reserve(targets.size());
  for (const sdk::Target& t : targets) {
    Peer p;
    p.key = std::string(t.key());
    p.weight = t.weight == 0 ? 1 : t.weight;
    p.healthy = t.healthy;
    peers.push_back(std::move(p));
  }
  return peers;
}

std::optional<Eligible> Eligible::of(const std::vector<Peer>& peers,
                                     const sdk::PickRequest& req) noexcept {
  bool any_untried = false;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (req.is_excluded(i)) {
      continue;
    }
    if (peers[i].healthy) {
      return Eligible(peers, req, /*require_healthy=*/true);
    }
    any_untried = true;
  }
  if (any_untried) {
    return Eligible(peers, req, /*require_healthy=*/false);
  }
  return std::nullopt;
}

size_t weighted_random(const std::vector<Peer>& peers, const Eligible& eligible,
                       std::mt19937_64& rng) {
  uint64_t total = 0;
  size_t last = 0;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (eligible(i)) {
      total += peers[i].weight;
      last = i;
    }
  }
  uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng);
  for (size_t i = 0; i < peers.size(); ++i) {
    if (eligible(i)) {
      if (r < peers[i].weight) {
        return i;
      }
      r -= peers[i].weight;
    }
  }
  return last;
}

size_t next_eligible(size_t start, size_t n, const Eligible& eligible) noexcept {
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    if (eligible(i)) {
      return i;
    }
  }
  return start % n;
}

std::mt19937_64 seeded_rng() {
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return std::mt19937_64(seed);
}

} // namespace weir_lb_hash
