// The host side of weir_http_t: one HTTP exchange as filters and load balancers see it.
#pragma once

#include "core/http/fields.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace weir::core::http {

struct LocalResponse {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

struct Exchange {
  Fields* request = nullptr;  // headers as they will go upstream
  Fields* response = nullptr; // headers as they will go downstream
  std::string_view method;
  std::string_view path;
  std::string_view query;
  std::string_view host;
  std::string_view client_ip;
  uint16_t client_port = 0;
  unsigned status = 0;
  bool can_respond = false; // request stages only
  std::optional<LocalResponse> local;
};

// RFC 9110 token (header name) and field-value checks.
bool valid_header_name(std::string_view name);
bool valid_header_value(std::string_view value);
// Whether `s` holds a control byte that no header line may carry: below 0x20 but HTAB, or DEL.
bool has_control_byte(std::string_view s);
// One field line of a head: its name and its value without the whitespace around it (views into
// the head).
struct FieldLine {
  std::string_view name;
  std::string_view value;
};
enum class FieldLineKind { field, end, bad };
// Reads the line that starts at `pos` of `head`: a field (a token, a colon, a value of no control
// byte but HTAB, CRLF), the empty line that ends the head (`end`), or neither (`bad`, with `why`
// saying what is wrong: obsolete line folding, a control byte, no colon, an invalid name, no CRLF).
// Moves `pos` past the line's CRLF unless bad. One pass, eight bytes at a time through a value.
FieldLineKind read_field_line(std::string_view head, std::size_t& pos, FieldLine& out,
                              const char*& why) noexcept;
// `s` without the optional whitespace (spaces and tabs) around it (RFC 9110 5.6.3).
std::string_view trim_ows(std::string_view s);

} // namespace weir::core::http
