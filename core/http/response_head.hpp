// An HTTP/1.x response head from an upstream, checked and stored into a message in one pass:
// the status line, the fields (no line folding, no control bytes, token names), and the framing
// of the body that follows (Content-Length, chunked, or until the connection closes), with the
// same rules as Beast's parser, which then reads only the bodies that are not counted bytes.
#pragma once

#include "core/http/fields.hpp"

#include <boost/beast/http/message.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace weir::core::http {

struct ResponseHead {
  unsigned status = 0;
  std::optional<uint64_t> content_length;
  bool chunked = false;           // Transfer-Encoding whose last coding is chunked
  bool transfer_encoding = false; // a Transfer-Encoding field (chunked or not)
  bool connection = false;        // a Connection field: keep-alive needs a look at its tokens
  bool hop_by_hop = false;        // a field that strip_hop_by_hop() removes or reads
};

// Where a head ends in `data` (just past the empty line), or 0 when it is not complete yet.
size_t find_response_head_end(std::string_view data);

// Parse `head` (the status line to the empty line included) into `res` (which must be empty) and
// `out`. Returns nullptr when the head is acceptable, else why it is not (for the log).
const char* parse_response_head(std::string_view head,
                                boost::beast::http::header<false, Fields>& res, ResponseHead& out);

} // namespace weir::core::http
