// Strict checks on a raw HTTP/1.x request head, before any parser sees it. This is where request
// smuggling is refused: whatever passes here has one unambiguous framing.
#pragma once

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace weir::core::http {

struct HeadLimits {
  size_t max_request_line = 8192;
  size_t max_header_bytes = 32768;
  size_t max_headers = 100;
};

struct HeadCheck {
  unsigned status = 0; // 0 = acceptable; else the status to answer (400, 414, 431, 501, 505)
  std::string reason;  // for the log
  unsigned version = 11;
  std::optional<uint64_t> content_length;
  bool chunked = false;
};

// An absolute-form request target ("http://host:port/path?q") split into what goes upstream.
struct AbsoluteTarget {
  std::string authority;   // "host:port" or "host": the new Host
  std::string origin_form; // "/path?q" (at least "/")
};
// Parse and check an absolute-form target: scheme http or https (any case), a non-empty host, no
// userinfo (RFC 9110 4.2). std::nullopt when it is not acceptable.
std::optional<AbsoluteTarget> parse_absolute_target(std::string_view target);

// A Host header value: uri-host [ ":" port ], no userinfo, no path (RFC 9112 3.2). Empty is valid.
bool valid_host_value(std::string_view value);

// Where the head ends (the index just past "\r\n\r\n"), or 0 when it is not complete yet. Leading
// empty lines (allowed before a request line) are counted in `skip`.
size_t find_head_end(std::string_view data, size_t& skip);

// Inspect an incomplete head: a status (414 or 431) when it already breaks a limit, else 0.
unsigned check_partial_head(std::string_view data, const HeadLimits& limits);

// A method's code, as Beast's string_to_verb gives it (verb::unknown for an extension method),
// the usual ones found faster.
boost::beast::http::verb method_code(std::string_view method);

// The parts of an acceptable head, as views into it: for a caller that builds its message from
// them instead of parsing the head a second time.
struct HeadParts {
  std::string_view method;
  boost::beast::http::verb verb = boost::beast::http::verb::unknown; // its code (as Beast's)
  std::string_view target;
  struct Field {
    std::string_view name;
    std::string_view value; // without the whitespace around it
    boost::beast::http::field id;
  };
  std::vector<Field> fields;
  // What the caller would otherwise look up in the message, found on the same pass:
  std::string_view host;            // the (first) Host value
  bool hop_by_hop = false;          // a field that strip_hop_by_hop() removes or reads
  bool expect = false;              // an Expect field
  bool content_length_list = false; // Content-Length repeated or a list ("5, 5")
};

// Inspect a complete head (request line + headers + empty line); fill `parts` (when given) as it
// goes (complete only when the head is acceptable).
HeadCheck check_head(std::string_view head, const HeadLimits& limits, HeadParts* parts = nullptr);

} // namespace weir::core::http
