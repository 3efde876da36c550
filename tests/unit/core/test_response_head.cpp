// parse_response_head: the status line, the fields as received, and the body's framing with the
// rules of Beast's parser (the upstream response path depends on them for reuse and smuggling).
#include "core/http/proxy.hpp"
#include "core/http/response_head.hpp"

#include <boost/beast/core/string.hpp>
#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace weir::core::http;
namespace bhttp = boost::beast::http;

namespace {

struct Parsed {
  ResponseMessage res;
  ResponseHead head;
  const char* error = nullptr;
};

Parsed parse(std::string_view text) {
  Parsed p;
  REQUIRE(find_response_head_end(text) == text.size());
  p.error = parse_response_head(text, p.res, p.head);
  return p;
}

} // namespace

TEST_CASE("response head: status line, reason and fields") {
  auto p = parse("HTTP/1.1 404 Not Here\r\nServer: origin\r\nX-A: 1\r\nx-a:  2 \r\n"
                 "Content-Length: 5\r\n\r\n");
  REQUIRE(p.error == nullptr);
  CHECK(p.head.status == 404);
  CHECK(p.res.result_int() == 404);
  CHECK(p.res.version() == 11);
  CHECK(p.res.reason() == "Not Here");
  CHECK(p.res[bhttp::field::server] == "origin");
  CHECK(p.res.count("x-a") == 2);
  std::string values;
  for (const auto& f : p.res)
    if (boost::beast::iequals(f.name_string(), "x-a"))
      values += std::string(f.value()) + ";";
  CHECK(values == "1;2;"); // order kept, value trimmed
  REQUIRE(p.head.content_length);
  CHECK(*p.head.content_length == 5);
  CHECK_FALSE(p.head.chunked);
  CHECK_FALSE(p.head.hop_by_hop);
}

TEST_CASE("response head: the message keeps its own copy of the head") {
  // The head is read from the upstream's buffer, which the body and the next response reuse.
  std::string wire = "HTTP/1.1 201 Made\r\nLocation: /a/b\r\nX-Id: 42\r\n\r\n";
  ResponseMessage res;
  ResponseHead head;
  REQUIRE(parse_response_head(wire, res, head) == nullptr);
  wire.assign(wire.size(), '#');
  wire.shrink_to_fit();
  CHECK(res.reason() == "Made");
  CHECK(res[bhttp::field::location] == "/a/b");
  CHECK(res["x-id"] == "42");
  res.set("X-Id", "43"); // edits after the copy work as on any message
  res.insert(bhttp::field::server, "weir");
  CHECK(res["X-Id"] == "43");
  CHECK(res[bhttp::field::location] == "/a/b");
  CHECK(res.size() == 3);
}

TEST_CASE("response head: HTTP/1.0, an empty reason, no space before it") {
  auto p = parse("HTTP/1.0 200 \r\n\r\n");
  REQUIRE(p.error == nullptr);
  CHECK(p.res.version() == 10);
  CHECK(p.res.reason() == "OK"); // none received: Beast gives the standard one
  auto q = parse("HTTP/1.1 204\r\nDate: x\r\n\r\n");
  REQUIRE(q.error == nullptr);
  CHECK(q.head.status == 204);
  CHECK_FALSE(q.head.content_length);
}

TEST_CASE("response head: framing") {
  auto chunked = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  REQUIRE(chunked.error == nullptr);
  CHECK(chunked.head.chunked);
  CHECK(chunked.head.transfer_encoding);
  // A coding list that does not end in chunked: the body runs to the close.
  auto to_close = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
  REQUIRE(to_close.error == nullptr);
  CHECK_FALSE(to_close.head.chunked);
  CHECK(to_close.head.transfer_encoding);
  // Repeated or listed Content-Length values that agree.
  auto list = parse("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n");
  REQUIRE(list.error == nullptr);
  CHECK(*list.head.content_length == 7);
  auto hop = parse("HTTP/1.1 200 OK\r\nConnection: close\r\nProxy-Thing: 1\r\n\r\n");
  REQUIRE(hop.error == nullptr);
  CHECK(hop.head.connection);
  CHECK(hop.head.hop_by_hop);
  CHECK_FALSE(hop.res.keep_alive());
}

TEST_CASE("response head: refused") {
  const char* bad[] = {
      "HTTP/2.0 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 099 Low\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 200 O\x01K\r\n\r\n",
      "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  for (std::string_view text : bad) {
    // (Some cases hold a NUL: take the whole literal up to its end.)
    CAPTURE(text);
    ResponseMessage res;
    ResponseHead head;
    CHECK(parse_response_head(text, res, head) != nullptr);
  }
  std::string with_nul = "HTTP/1.1 200 OK\r\nX: a";
  with_nul += '\0';
  with_nul += "b\r\n\r\n";
  ResponseMessage res;
  ResponseHead head;
  CHECK(parse_response_head(with_nul, res, head) != nullptr);
}

TEST_CASE("response head: where it ends") {
  CHECK(find_response_head_end("HTTP/1.1 200 OK\r\n") == 0);
  CHECK(find_response_head_end("HTTP/1.1 200 OK\r\n\r\nbody") == 19);
}
