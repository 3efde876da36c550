#include "core/http/head_check.hpp"

#include "core/http/exchange.hpp"
#include "core/http/field_code.hpp"
#include "core/http/field_line.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/url/parse.hpp>

#include <array>
#include <charconv>
#include <vector>

namespace weir::core::http {

namespace {

using boost::beast::iequals;

HeadCheck reject(unsigned status, std::string reason) {
  HeadCheck r;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

} // namespace

boost::beast::http::verb method_code(std::string_view m) {
  using boost::beast::http::verb;
  // The usual ones without Beast's lookup (which goes through every method it knows).
  if (m.size() == 3) {
    if (m == "GET")
      return verb::get;
    if (m == "PUT")
      return verb::put;
  } else if (m.size() == 4) {
    if (m == "POST")
      return verb::post;
    if (m == "HEAD")
      return verb::head;
  }
  return boost::beast::http::string_to_verb(m);
}

namespace {

bool valid_method(std::string_view m) {
  return valid_header_name(m);
}

bool valid_target_char(unsigned char c) {
  return c > 0x20 && c < 0x7f;
}

constexpr size_t kMaxFieldBytes = 65000;

// Record in `parts` what a field other than Host, Content-Length and Transfer-Encoding tells the
// caller: hop-by-hop fields (those strip_hop_by_hop() removes or reads) and Expect.
void note_field(HeadParts& parts, boost::beast::http::field id, std::string_view name) {
  using field = boost::beast::http::field;
  switch (id) {
  case field::te:
  case field::trailer:
  case field::upgrade:
  case field::connection:
  case field::keep_alive:
    parts.hop_by_hop = true;
    break;
  case field::expect:
    parts.expect = true;
    break;
  default:
    // Proxy-Connection, Proxy-Authorization and the like (strip_hop_by_hop removes "proxy-*").
    if (name.size() > 6 && (name[0] == 'p' || name[0] == 'P') &&
        iequals(name.substr(0, 6), "proxy-"))
      parts.hop_by_hop = true;
    break;
  }
}

// A port of 1 to 65535, leading zeros allowed (RFC 3986: any number of digits). Boost.URL's
// port_number() keeps only the low 16 bits of a larger one.
bool valid_port(std::string_view port) {
  while (port.size() > 1 && port.front() == '0')
    port.remove_prefix(1);
  unsigned n = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  return !port.empty() && port.size() <= 5 && ec == std::errc() &&
         end == port.data() + port.size() && n != 0 && n <= 65535;
}

} // namespace

std::optional<AbsoluteTarget> parse_absolute_target(std::string_view target) {
  auto u = boost::urls::parse_absolute_uri(target);
  if (!u)
    return std::nullopt;
  if (!iequals(u->scheme(), "http") && !iequals(u->scheme(), "https"))
    return std::nullopt;
  if (!u->has_authority() || u->has_userinfo() || u->encoded_host().empty())
    return std::nullopt;
  if (u->has_port() && !valid_port(u->port()))
    return std::nullopt;
  AbsoluteTarget out;
  out.authority = std::string(u->encoded_host_and_port());
  out.origin_form = std::string(u->encoded_path());
  if (out.origin_form.empty())
    out.origin_form.push_back('/'); // (not = "/": GCC 12 -Wrestrict false positive at -O2)
  if (u->has_query()) {
    out.origin_form += '?';
    out.origin_form += std::string_view(u->encoded_query());
  }
  return out;
}

// The common Host: a name or IPv4 address of letters, digits, '-' and '.', and maybe ":port"
// (1 to 65535). nullopt when the value is anything else: the full parser decides.
std::optional<bool> plain_host_value(std::string_view value) {
  static constexpr auto kNameChars = [] {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c)
      t[static_cast<size_t>(c)] = t[static_cast<size_t>(c - 32)] = true;
    for (int c = '0'; c <= '9'; ++c)
      t[static_cast<size_t>(c)] = true;
    t['-'] = t['.'] = true;
    return t;
  }();
  const char* p = value.data();
  const char* const end = p + value.size();
  while (p != end && kNameChars[static_cast<unsigned char>(*p)])
    ++p;
  if (p == value.data())
    return std::nullopt;
  if (p == end)
    return true;
  size_t digits = static_cast<size_t>(end - p - 1); // (more than 5: the full parser decides)
  if (*p != ':' || digits == 0 || digits > 5)
    return std::nullopt;
  unsigned port = 0;
  while (++p != end) {
    auto d = static_cast<unsigned>(static_cast<unsigned char>(*p) - '0');
    if (d > 9)
      return std::nullopt;
    port = port * 10 + d;
  }
  if (port == 0 || port > 65535)
    return std::nullopt;
  return true;
}

bool valid_host_value(std::string_view value) {
  if (value.empty())
    return true;
  if (auto plain = plain_host_value(value))
    return *plain;
  auto a = boost::urls::parse_authority(value);
  if (!a || a->has_userinfo())
    return false;
  if (a->encoded_host().empty())
    return false;
  if (a->has_port() && !valid_port(a->port()))
    return false;
  return true;
}

size_t find_head_end(std::string_view data, size_t& skip) {
  skip = 0;
  while (skip + 1 < data.size() && data[skip] == '\r' && data[skip + 1] == '\n')
    skip += 2;
  auto pos = data.find("\r\n\r\n", skip);
  return pos == std::string_view::npos ? 0 : pos + 4;
}

unsigned check_partial_head(std::string_view data, const HeadLimits& limits) {
  auto eol = data.find("\r\n");
  if (eol == std::string_view::npos) {
    if (data.size() > limits.max_request_line)
      return 414;
  } else if (eol > limits.max_request_line) {
    return 414;
  }
  if (data.size() > limits.max_header_bytes)
    return 431;
  return 0;
}

HeadCheck check_head(std::string_view head, const HeadLimits& limits, HeadParts* parts) {
  if (head.size() > limits.max_header_bytes)
    return reject(431, "request head too large");
  auto eol = head.find("\r\n");
  if (eol == std::string_view::npos)
    return reject(400, "no request line");
  std::string_view line = head.substr(0, eol);
  if (line.size() > limits.max_request_line)
    return reject(414, "request line too long");

  // request-line = method SP request-target SP HTTP-version
  auto sp1 = line.find(' ');
  auto sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1)
    return reject(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  auto verb = method_code(method);
  if (verb == boost::beast::http::verb::unknown && !valid_method(method))
    return reject(400, "invalid method");
  if (target.empty())
    return reject(400, "empty request target");
  for (char c : target)
    if (!valid_target_char(static_cast<unsigned char>(c)))
      return reject(400, "invalid byte in request target");
  HeadCheck out;
  if (version == "HTTP/1.1") {
    out.version = 11;
  } else if (version == "HTTP/1.0") {
    out.version = 10;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[6] == '.') {
    return reject(505, "unsupported HTTP version");
  } else {
    return reject(400, "malformed HTTP version");
  }
  if (verb == boost::beast::http::verb::connect)
    return reject(405, "CONNECT is not supported");
  if (target.front() != '/' && !(target == "*" && verb == boost::beast::http::verb::options) &&
      !parse_absolute_target(target))
    return reject(400, "invalid request target");
  if (parts) {
    parts->method = method;
    parts->verb = verb;
    parts->target = target;
    parts->fields.clear();
    parts->host = {};
    parts->hop_by_hop = parts->expect = parts->content_length_list = false;
  }

  size_t count = 0;
  size_t hosts = 0;
  bool has_te = false;
  std::vector<std::string_view> te_values;
  std::optional<uint64_t> content_length;
  size_t pos = eol + 2;
  while (pos < head.size()) {
    FieldLine fl;
    const char* why = nullptr;
    auto kind = read_field_line(head, pos, fl, why);
    if (kind == FieldLineKind::end)
      break;
    if (kind == FieldLineKind::bad)
      return reject(400, why);
    if (++count > limits.max_headers)
      return reject(431, "too many headers");
    // A bound on one field (name and value), whatever max-header-bytes allows.
    if (fl.name.size() + fl.value.size() > kMaxFieldBytes)
      return reject(431, "a header field is larger than 64 KiB");
    std::string_view name = fl.name;
    std::string_view value = fl.value;
    auto id = field_code(name);
    if (parts)
      parts->fields.push_back({name, value, id});
    if (id == boost::beast::http::field::host) {
      if (++hosts == 1 && parts)
        parts->host = value;
      if (!valid_host_value(value))
        return reject(400, "invalid Host header");
    } else if (id == boost::beast::http::field::content_length) {
      if (parts && (content_length || value.find(',') != std::string_view::npos))
        parts->content_length_list = true;
      // A list ("5, 5") or repeated field is accepted only when every value is the same.
      std::string_view rest = value;
      do {
        auto comma = rest.find(',');
        std::string_view item = trim_ows(rest.substr(0, comma));
        uint64_t n = 0;
        auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
        if (item.empty() || ec != std::errc() || p != item.data() + item.size())
          return reject(400, "invalid Content-Length");
        for (char c : item)
          if (c < '0' || c > '9')
            return reject(400, "invalid Content-Length");
        if (content_length && *content_length != n)
          return reject(400, "conflicting Content-Length values");
        content_length = n;
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        if (comma != std::string_view::npos && trim_ows(rest).empty())
          return reject(400, "invalid Content-Length");
      } while (!rest.empty());
    } else if (id == boost::beast::http::field::transfer_encoding) {
      has_te = true;
      std::string_view rest = value;
      while (true) {
        auto comma = rest.find(',');
        std::string_view item = trim_ows(rest.substr(0, comma));
        if (!item.empty())
          te_values.push_back(item);
        if (comma == std::string_view::npos)
          break;
        rest = rest.substr(comma + 1);
      }
    } else if (parts) {
      note_field(*parts, id, name);
    }
  }
  if (has_te) {
    if (content_length)
      return reject(400, "both Content-Length and Transfer-Encoding");
    if (out.version == 10)
      return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (te_values.size() != 1 || !iequals(te_values.front(), "chunked"))
      return reject(400, "unsupported Transfer-Encoding (only \"chunked\" is accepted)");
    out.chunked = true;
  }
  if (out.version == 11 && hosts != 1)
    return reject(400, hosts == 0 ? "missing Host header" : "more than one Host header");
  if (out.version == 10 && hosts > 1)
    return reject(400, "more than one Host header");
  out.content_length = content_length;
  return out;
}

} // namespace weir::core::http
