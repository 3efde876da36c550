#include "core/http/head_check.hpp"

#include "core/http/exchange.hpp"
#include "core/http/field_line.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <string>
#include <string_view>

using weir::core::http::check_head;
using weir::core::http::check_partial_head;
using weir::core::http::find_head_end;
using weir::core::http::HeadLimits;
using weir::core::http::HeadParts;
using weir::core::http::method_code;

namespace {

unsigned status_of(const std::string& head, HeadLimits limits = {}) {
  return check_head(head, limits).status;
}

} // namespace

TEST_CASE("find_head_end finds the blank line and skips leading empty lines") {
  size_t skip = 0;
  CHECK(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", skip) == 27);
  CHECK(skip == 0);
  CHECK(find_head_end("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", skip) == 31);
  CHECK(skip == 4);
  CHECK(find_head_end("GET / HTTP/1.1\r\nHost: a\r\n", skip) == 0);
}

TEST_CASE("a plain request passes") {
  auto r = check_head("GET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", {});
  CHECK(r.status == 0);
  CHECK(r.version == 11);
  CHECK_FALSE(r.chunked);
  CHECK_FALSE(r.content_length.has_value());
}

TEST_CASE("framing headers are read") {
  auto r = check_head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", {});
  CHECK(r.status == 0);
  REQUIRE(r.content_length.has_value());
  CHECK(*r.content_length == 5);
  auto c = check_head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", {});
  CHECK(c.status == 0);
  CHECK(c.chunked);
  // Identical duplicates are one value (RFC 9112 6.3).
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n") ==
        0);
  CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n") == 0);
}

TEST_CASE("request smuggling vectors are refused with 400") {
  const char* cases[] = {
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tfolded\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n",
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
      "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET foo HTTP/1.1\r\nHost: a\r\n\r\n",
  };
  for (const char* c : cases) {
    CAPTURE(c);
    CHECK(status_of(c) == 400);
  }
}

TEST_CASE("versions and methods") {
  CHECK(status_of("GET / HTTP/1.0\r\n\r\n") == 0);
  CHECK(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTX/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(status_of("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n") == 405);
  CHECK(status_of("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status_of("GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
}

TEST_CASE("method codes: the usual ones and Beast's agree; extension methods are unknown") {
  using bhttp_verb = boost::beast::http::verb;
  for (std::string_view m : {"GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH", "TRACE",
                             "PROPFIND", "get", "Get", "GE", "GETS", "POS", "BREW", ""})
    CHECK_MESSAGE(method_code(m) == boost::beast::http::string_to_verb(m), m);
  CHECK(method_code("GET") == bhttp_verb::get);
  CHECK(method_code("HEAD") == bhttp_verb::head);
  CHECK(method_code("BREW") == bhttp_verb::unknown);
  HeadParts parts;
  REQUIRE(check_head("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n", {}, &parts).status == 0);
  CHECK(parts.method == "BREW");
  CHECK(parts.verb == bhttp_verb::unknown);
  REQUIRE(
      check_head("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", {}, &parts).status ==
      0);
  CHECK(parts.verb == bhttp_verb::post);
  CHECK(status_of("G@T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400); // not a token
}

TEST_CASE("limits give 414 and 431") {
  HeadLimits limits;
  limits.max_request_line = 64;
  limits.max_header_bytes = 256;
  limits.max_headers = 3;
  std::string long_line = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  CHECK(status_of(long_line, limits) == 414);
  CHECK(check_partial_head("GET /" + std::string(100, 'a'), limits) == 414);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits) == 431);
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'x') + "\r\n\r\n";
  CHECK(status_of(big, limits) == 431);
  CHECK(check_partial_head("GET / HTTP/1.1\r\nX: " + std::string(300, 'x'), limits) == 431);
  CHECK(check_partial_head("GET / HTTP/1.1\r\nX: y", limits) == 0);
}

TEST_CASE("absolute-form targets") {
  using weir::core::http::parse_absolute_target;
  auto a = parse_absolute_target("http://example.test:8080/p/q?x=1");
  REQUIRE(a.has_value());
  CHECK(a->authority == "example.test:8080");
  CHECK(a->origin_form == "/p/q?x=1");
  auto b = parse_absolute_target("HTTP://Example.TEST");
  REQUIRE(b.has_value());
  CHECK(b->origin_form == "/");
  CHECK(parse_absolute_target("http://[::1]:80/x").has_value());
  CHECK_FALSE(parse_absolute_target("http:///x").has_value());
  CHECK_FALSE(parse_absolute_target("http://user:pw@example.test/x").has_value());
  CHECK_FALSE(parse_absolute_target("http://[::1/x").has_value());
  CHECK_FALSE(parse_absolute_target("ftp://example.test/x").has_value());
  CHECK_FALSE(parse_absolute_target("http://example.test:65536/x").has_value());
  CHECK_FALSE(parse_absolute_target("http://example.test:0/x").has_value());
  CHECK(parse_absolute_target("http://example.test:65535/x").has_value());
  CHECK(status_of("GET HTTP://Example.TEST/p HTTP/1.1\r\nHost: a\r\n\r\n") == 0);
  CHECK(status_of("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
}

TEST_CASE("Host header values") {
  using weir::core::http::valid_host_value;
  CHECK(valid_host_value("example.test"));
  CHECK(valid_host_value("example.test:8080"));
  CHECK(valid_host_value("[::1]:8080"));
  CHECK(valid_host_value("127.0.0.1"));
  CHECK(valid_host_value(""));
  CHECK_FALSE(valid_host_value("evil.test/../x"));
  CHECK_FALSE(valid_host_value("x y"));
  CHECK_FALSE(valid_host_value("user@host"));
  CHECK_FALSE(valid_host_value("host:port"));
  // The fast path (names, IPv4, ports) and the full parser agree at the edges.
  CHECK(valid_host_value("A-b.C"));
  CHECK(valid_host_value("a:65535"));
  CHECK(valid_host_value("a:080"));
  CHECK(valid_host_value("1.2.3.4:99"));
  CHECK_FALSE(valid_host_value("a:0"));
  CHECK_FALSE(valid_host_value("a:65536"));
  CHECK_FALSE(valid_host_value("a:"));
  CHECK_FALSE(valid_host_value(":80"));
  CHECK_FALSE(valid_host_value("a:8x"));
  CHECK_FALSE(valid_host_value("a:99999"));
  CHECK_FALSE(valid_host_value("a:123456"));
  CHECK_FALSE(valid_host_value("a:/"));
  CHECK(valid_host_value("a:1"));
  CHECK(valid_host_value("[::1]:65535"));
  CHECK_FALSE(valid_host_value("[::1]:65536"));
  CHECK_FALSE(valid_host_value("[::1]:99999"));
  CHECK_FALSE(valid_host_value("[::1]:0"));
  CHECK(valid_host_value("a:000080"));
  CHECK(valid_host_value("[::1]:0000065535"));
  CHECK_FALSE(valid_host_value("a:0000065536"));
  CHECK_FALSE(valid_host_value("a:0000"));
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n") == 400);
}

TEST_CASE("a single header field must fit the parser's 16-bit lengths") {
  HeadLimits limits;
  limits.max_header_bytes = 1 << 20;
  std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(70000, 'x') + "\r\n\r\n";
  CHECK(status_of(head, limits) == 431);
}

TEST_CASE("read_field_line at the edges: no LF, bytes after the last LF, pos at or past the end") {
  using weir::core::http::FieldLine;
  using weir::core::http::FieldLineKind;
  using weir::core::http::read_field_line;
  auto kind_at = [](std::string_view head, size_t pos) {
    FieldLine fl;
    const char* why = nullptr;
    auto kind = read_field_line(head, pos, fl, why);
    return std::make_pair(kind, std::string(why ? why : ""));
  };
  CHECK(kind_at("", 0) ==
        std::make_pair(FieldLineKind::bad, std::string("unterminated header line")));
  CHECK(kind_at("A: b", 0).first == FieldLineKind::bad);
  CHECK(kind_at("A: b\r\n", 6).first == FieldLineKind::bad); // pos == size
  CHECK(kind_at("A: b\r\n", 9).first == FieldLineKind::bad); // pos > size
  // A whole line before bytes that are not one yet: the line reads; the rest is unterminated.
  std::string head = "A: b\r\nC: d";
  size_t pos = 0;
  FieldLine fl;
  const char* why = nullptr;
  REQUIRE(read_field_line(head, pos, fl, why) == FieldLineKind::field);
  CHECK(fl.name == "A");
  CHECK(fl.value == "b");
  CHECK(pos == 6);
  CHECK(read_field_line(head, pos, fl, why) == FieldLineKind::bad);
  CHECK(std::string(why) == "unterminated header line");
  // A name that runs into the LF, a bare CR before the last LF, a lone LF.
  CHECK(kind_at("Name\n", 0).first == FieldLineKind::bad);
  CHECK(kind_at("A: b\r\r\n", 0).first == FieldLineKind::bad);
  CHECK(kind_at("A: b\n", 0).first == FieldLineKind::bad);
  CHECK(kind_at("\r", 0).first == FieldLineKind::bad);
  CHECK(kind_at("\r\n", 0).first == FieldLineKind::end);
}

TEST_CASE("read_field_line agrees with a byte-by-byte reading at every offset") {
  using weir::core::http::FieldLine;
  using weir::core::http::FieldLineKind;
  using weir::core::http::read_field_line;
  // The reference: a token, ':', OWS, a value of no control byte but HTAB, OWS, CRLF.
  auto reference = [](std::string_view line, FieldLine& out) {
    auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos)
      return false;
    for (char c : line.substr(0, colon))
      if (!(std::isalnum(static_cast<unsigned char>(c)) ||
            std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos))
        return false;
    std::string_view v = line.substr(colon + 1);
    for (char c : v) {
      auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f)
        return false;
    }
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
      v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
      v.remove_suffix(1);
    out.name = line.substr(0, colon);
    out.value = v;
    return true;
  };
  static const char specials[] = {'\0',   '\x01', '\x08', '\t', '\n', '\r', '\x1f', ' ',
                                  '\x7f', '\x80', '\xfe', ':',  '!',  'A',  '~'};
  // The value is read eight bytes at a time until a word may hold a control byte (HTAB too), then
  // byte by byte: one base without HTAB, one with it late.
  size_t bad = 0;
  for (const std::string& base :
       {std::string("X-Long-Name: abcdefghijklmnop\x80\xff qrstuvwxyz 0123456789 ~}|{ and more"),
        std::string("X-Long-Name: abcdefghijklmnop\x80\xff qrstuvwxyz 0123456789 ~}|{\tend")}) {
    for (size_t at = 0; at <= base.size(); ++at)
      for (char sp : specials) {
        std::string line = base;
        line.insert(at, 1, sp);
        for (const std::string& tail : {std::string("\r\n"), std::string("  \r\n")}) {
          std::string head = "GET / HTTP/1.1\r\n" + line + tail + "\r\n";
          size_t pos = 16;
          FieldLine got;
          const char* why = nullptr;
          auto kind = read_field_line(head, pos, got, why);
          FieldLine want;
          // The line as the head splits it: up to the first CRLF.
          std::string_view whole(head);
          auto eol = whole.find("\r\n", 16);
          bool ok = eol == 16 + line.size() + tail.size() - 2 &&
                    reference(whole.substr(16, eol - 16), want);
          CAPTURE(at);
          CAPTURE(static_cast<int>(static_cast<unsigned char>(sp)));
          REQUIRE((kind == FieldLineKind::field) == ok);
          if (ok) {
            CHECK(got.name == want.name);
            CHECK(got.value == want.value);
            CHECK(pos == eol + 2);
            FieldLine end_line;
            CHECK(read_field_line(head, pos, end_line, why) == FieldLineKind::end);
            CHECK(pos == head.size());
          } else {
            CHECK(why != nullptr);
            ++bad;
          }
        }
      }
  }
  CHECK(bad > 0);
  // What a bad line is told apart as.
  auto why_of = [&](std::string line) {
    std::string head = "GET / HTTP/1.1\r\n" + line;
    size_t pos = 16;
    FieldLine f;
    const char* why = nullptr;
    REQUIRE(read_field_line(head, pos, f, why) == FieldLineKind::bad);
    return std::string(why);
  };
  CHECK(why_of(" folded\r\n\r\n") == "obsolete line folding in headers");
  CHECK(why_of("Bad Name: x\r\n\r\n") == "invalid header name");
  CHECK(why_of("NoColon\r\n\r\n") == "header line without colon");
  CHECK(why_of("X: a\x01z\r\n\r\n") == "control byte in header");
  CHECK(why_of("X: a\nz\r\n\r\n") == "control byte in header");
  CHECK(why_of("X: abc") == "unterminated header line");
  CHECK(why_of(": empty name\r\n\r\n") == "invalid header name");
}
