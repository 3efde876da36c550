// The header field container of every message on the request path: Beast's fields, with their
// entries (and a request's target, a response's reason) in per-thread free lists instead of
// malloc (see runtime/small_alloc.hpp).
#pragma once

#include "core/runtime/small_alloc.hpp"

#include <boost/beast/http/fields.hpp>

namespace weir::core::http {

using Fields = boost::beast::http::basic_fields<SmallAllocator<char>>;

} // namespace weir::core::http
