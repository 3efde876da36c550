#include "core/http/response_head.hpp"

#include "core/http/exchange.hpp"
#include "core/http/field_code.hpp"
#include "core/http/field_line.hpp"

#include <boost/beast/core/string.hpp>

namespace weir::core::http {

namespace beast = boost::beast;

namespace {

bool digits(std::string_view s, uint64_t& v) {
  if (s.empty() || s.size() > 19)
    return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return true;
}

} // namespace

size_t find_response_head_end(std::string_view data) {
  auto pos = data.find("\r\n\r\n");
  return pos == std::string_view::npos ? 0 : pos + 4;
}

const char* parse_response_head(std::string_view wire, beast::http::header<false, Fields>& res,
                                ResponseHead& out) {
  // Parsed from a copy kept in the message: its reason and fields are views into that one copy
  // (no copy per field).
  std::string_view head = res.hold(wire);
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (the SP before an empty
  // reason is often left out: accepted).
  auto eol = head.find("\r\n");
  if (eol == std::string_view::npos)
    return "no status line";
  std::string_view line = head.substr(0, eol);
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ')
    return "malformed status line";
  unsigned code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9')
      return "malformed status code";
    code = code * 10 + static_cast<unsigned>(line[i] - '0');
  }
  if (code < 100)
    return "malformed status code";
  std::string_view reason;
  if (line.size() > 12) {
    if (line[12] != ' ')
      return "malformed status line";
    reason = line.substr(13);
    if (has_control_byte(reason))
      return "control byte in the reason phrase";
  }
  res.version(line[7] == '1' ? 11 : 10);
  res.result(code);
  res.adopt_reason(reason);
  out.status = code;

  size_t pos = eol + 2;
  while (pos < head.size()) {
    FieldLine fl;
    const char* why = nullptr;
    auto kind = read_field_line(head, pos, fl, why);
    if (kind == FieldLineKind::end)
      return nullptr; // the end of the head
    if (kind == FieldLineKind::bad)
      return why;
    std::string_view name = fl.name;
    std::string_view value = fl.value;
    auto f = field_code(name);
    switch (f) {
    case beast::http::field::content_length: {
      if (out.chunked)
        return "both Content-Length and Transfer-Encoding";
      // A list ("5, 5") or a repeated field is accepted when every value is the same.
      std::string_view rest = value;
      for (;;) {
        auto comma = rest.find(',');
        uint64_t n = 0;
        if (!digits(trim_ows(rest.substr(0, comma)), n))
          return "invalid Content-Length";
        if (out.content_length && *out.content_length != n)
          return "conflicting Content-Length values";
        out.content_length = n;
        if (comma == std::string_view::npos)
          break;
        rest = rest.substr(comma + 1);
      }
      break;
    }
    case beast::http::field::transfer_encoding: {
      if (out.chunked)
        return "Transfer-Encoding after chunked";
      if (out.content_length)
        return "both Content-Length and Transfer-Encoding";
      out.transfer_encoding = true;
      // Chunked when it is the last coding; any other list leaves the body to the close.
      auto comma = value.rfind(',');
      std::string_view last =
          trim_ows(comma == std::string_view::npos ? value : value.substr(comma + 1));
      out.chunked = beast::iequals(last, "chunked");
      break;
    }
    case beast::http::field::connection:
      out.connection = true;
      out.hop_by_hop = true;
      break;
    case beast::http::field::keep_alive:
    case beast::http::field::te:
    case beast::http::field::trailer:
    case beast::http::field::upgrade:
      out.hop_by_hop = true;
      break;
    default:
      if (name.size() > 6 && (name[0] == 'p' || name[0] == 'P') &&
          beast::iequals(name.substr(0, 6), "proxy-"))
        out.hop_by_hop = true;
      break;
    }
    res.adopt(f, name, value);
  }
  return "unterminated head";
}

} // namespace weir::core::http
