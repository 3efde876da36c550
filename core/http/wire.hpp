// HTTP/1.x heads written straight into a string, for one gathered write: a request head going
// upstream and a response head going to a client. Beast's serializer walks the fields through a
// chain of buffer views per write; these append every byte once.
#pragma once

#include "core/http/fields.hpp"

#include <boost/beast/http/message.hpp>

#include <string>

namespace weir::core::http {

// "METHOD target HTTP/x.y\r\n", the fields as they are, "\r\n": its size, and the head
// written at `out`, which has room for exactly that many bytes.
size_t request_head_size(const boost::beast::http::header<true, Fields>& h);
void write_request_head(char* out, const boost::beast::http::header<true, Fields>& h);

// "HTTP/x.y code reason\r\n" (the reason as received, else the standard one), the fields as they
// are, "\r\n".
void append_response_head(std::string& out, const boost::beast::http::header<false, Fields>& h);

} // namespace weir::core::http
