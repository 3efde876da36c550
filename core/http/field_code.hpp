// The code of a header field's name, as Beast's `string_to_field` gives it, found faster for the
// names that fill real heads (Host, Content-Length, User-Agent, Accept-*, ...): a comparison of
// at most three 8-byte words against a table picked by the name's length, case folded by a mask.
// Every other name goes to Beast's lookup. Same answer as `string_to_field` for every input.
#pragma once

#include <boost/beast/http/field.hpp>

#include <string_view>

namespace weir::core::http {

boost::beast::http::field field_code(std::string_view name) noexcept;

// The name of a known field in lower case (HTTP/2's spelling), static text; "" for
// field::unknown.
std::string_view lower_field_name(boost::beast::http::field id) noexcept;

} // namespace weir::core::http
