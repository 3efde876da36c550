// The HTTP/1.x heads weir writes itself: the request head going upstream and the response head
// going to a client, byte for byte.
#include "core/http/wire.hpp"

#include <doctest/doctest.h>

#include <string>

namespace bhttp = boost::beast::http;
using namespace weir::core::http;

TEST_CASE(
    "a request head is written byte for byte, fields in the order added, repeated ones kept") {
  bhttp::request_header<Fields> h;
  h.method_string("PATCH");
  h.target("/a/b?c=d");
  h.version(11);
  h.insert("Host", "example.test:8080");
  h.insert("X-Forwarded-For", "10.0.0.1");
  h.insert("x-custom", "");
  h.insert("X-Forwarded-For", "10.0.0.2");
  std::string out(request_head_size(h), '\0');
  write_request_head(out.data(), h);
  CHECK(out == "PATCH /a/b?c=d HTTP/1.1\r\n"
               "Host: example.test:8080\r\n"
               "X-Forwarded-For: 10.0.0.1\r\n"
               "x-custom: \r\n"
               "X-Forwarded-For: 10.0.0.2\r\n"
               "\r\n");
}

TEST_CASE("a request head without fields, HTTP/1.0") {
  bhttp::request_header<Fields> h;
  h.method(bhttp::verb::get);
  h.target("/");
  h.version(10);
  std::string out(request_head_size(h), '\0');
  write_request_head(out.data(), h);
  CHECK(out == "GET / HTTP/1.0\r\n\r\n");
}

TEST_CASE("a response head keeps the reason received, else the standard one") {
  bhttp::response_header<Fields> h;
  h.result(404);
  h.version(11);
  h.insert("Content-Length", "0");
  std::string out = "prefix|";
  append_response_head(out, h);
  CHECK(out == "prefix|HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");

  bhttp::response_header<Fields> custom;
  custom.result(200);
  custom.reason("Fine");
  custom.version(11);
  std::string out2;
  append_response_head(out2, custom);
  CHECK(out2 == "HTTP/1.1 200 Fine\r\n\r\n");
}

TEST_CASE("names and values of every length from 0 to 40 are copied whole") {
  // The short pieces are copied with overlapping fixed-size moves (1-3, 4-7, 8-16 bytes), the
  // longer ones by memcpy: every length, at every boundary, byte for byte.
  std::string alphabet;
  for (int i = 0; i < 41; ++i)
    alphabet += static_cast<char>('A' + i % 26 + (i / 26) * 6);
  for (size_t n = 0; n <= 40; ++n) {
    bhttp::request_header<Fields> req;
    req.method_string(n == 0 ? std::string("GET") : "M" + alphabet.substr(0, n));
    req.target("/" + alphabet.substr(0, n));
    req.version(11);
    req.insert("N" + alphabet.substr(0, n), alphabet.substr(40 - n, n));
    std::string out(request_head_size(req), '\0');
    write_request_head(out.data(), req);
    std::string want = std::string(req.method_string()) + " /" + alphabet.substr(0, n) +
                       " HTTP/1.1\r\nN" + alphabet.substr(0, n) + ": " +
                       alphabet.substr(40 - n, n) + "\r\n\r\n";
    CAPTURE(n);
    CHECK(out == want);

    bhttp::response_header<Fields> res;
    res.result(200);
    res.reason(alphabet.substr(0, n));
    res.version(11);
    res.insert(alphabet.substr(1, n) + "x", alphabet.substr(0, n));
    std::string got;
    append_response_head(got, res);
    CHECK(got == "HTTP/1.1 200 " + (n == 0 ? std::string("OK") : alphabet.substr(0, n)) + "\r\n" +
                     alphabet.substr(1, n) + "x: " + alphabet.substr(0, n) + "\r\n\r\n");
  }
}
