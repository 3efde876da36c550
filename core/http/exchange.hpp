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
// `s` without the optional whitespace (spaces and tabs) around it (RFC 9110 5.6.3).
std::string_view trim_ows(std::string_view s);

} // namespace weir::core::http
