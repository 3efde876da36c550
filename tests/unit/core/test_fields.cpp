// http::Fields, the flat header container: Beast's Fields rules (framing, keep-alive, the
// serializer's head) and the member functions the proxy and the plugin host use.
#include "core/http/fields.hpp"

#include "core/http/field_code.hpp"
#include "core/net/h2_common.hpp"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

namespace bhttp = boost::beast::http;
using weir::core::http::Fields;

namespace {
std::vector<std::string> lines(const Fields& f) {
  std::vector<std::string> out;
  for (const auto& field : f)
    out.push_back(std::string(field.name_string()) + ": " + std::string(field.value()));
  return out;
}
} // namespace

TEST_CASE("fields keep their wire order and spelling; lookups ignore case") {
  Fields f;
  f.insert("Host", "a.test");
  f.insert("x-Custom", "1");
  f.insert(bhttp::field::accept, "*/*");
  f.insert("X-CUSTOM", "2");
  CHECK(lines(f) ==
        std::vector<std::string>{"Host: a.test", "x-Custom: 1", "Accept: */*", "X-CUSTOM: 2"});
  CHECK(f.find(bhttp::field::host)->name() == bhttp::field::host);
  CHECK(f.find("HOST")->value() == "a.test");
  CHECK(f["x-custom"] == "1");
  CHECK(f.count("X-Custom") == 2);
  CHECK(f.count(bhttp::field::accept) == 1);
  CHECK(f[bhttp::field::cookie].empty());
  CHECK(f.find("missing") == f.end());
  std::vector<std::string> customs;
  f.each_value("x-custom", [&](auto v) {
    customs.emplace_back(v);
    return false;
  });
  CHECK(customs == std::vector<std::string>{"1", "2"});
  CHECK(f.each_value("x-custom", [](auto v) { return v == "2"; }));
  CHECK_FALSE(f.each_value(bhttp::field::cookie, [](auto) { return true; }));
}

TEST_CASE("the X-Forwarded-* names the proxy sets by code are unknown to Beast") {
  // prepare_request passes field::unknown for them; a code of their own would make it wrong.
  for (const char* name : {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"})
    CHECK(bhttp::string_to_field(name) == bhttp::field::unknown);
  Fields f;
  f.insert("x-forwarded-for", "10.0.0.1");
  f.set(bhttp::field::unknown, "X-Forwarded-For", "10.0.0.1, 127.0.0.1");
  CHECK(f.count("X-Forwarded-For") == 1);
  CHECK(f["x-forwarded-for"] == "10.0.0.1, 127.0.0.1");
  CHECK(f.each_value(bhttp::field::unknown, "X-FORWARDED-FOR", [](auto) { return true; }));
}

TEST_CASE("set replaces every field of the name; erase removes them; values stay readable") {
  Fields f;
  f.insert("X-Forwarded-For", "10.0.0.1");
  f.insert("Host", "a.test");
  f.insert("x-forwarded-for", "10.0.0.2");
  auto old = f["X-Forwarded-For"];
  f.set("X-Forwarded-For", "10.0.0.1, 10.0.0.2, 127.0.0.1");
  CHECK(lines(f) ==
        std::vector<std::string>{"Host: a.test", "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1"});
  CHECK(old == "10.0.0.1"); // still readable after set()
  CHECK(f.erase(bhttp::field::host) == 1);
  CHECK(f.erase("nothing") == 0);
  f.insert("A", "1");
  f.insert("B", "2");
  f.insert("C", "3");
  // erase(iterator) returns the next field.
  auto it = f.find("B");
  it = f.erase(it);
  CHECK(it->name_string() == "C");
  CHECK(lines(f) ==
        std::vector<std::string>{"X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1", "A: 1", "C: 3"});
  f.clear();
  CHECK(f.empty());
  f.insert("After", "clear");
  CHECK(lines(f) == std::vector<std::string>{"After: clear"});
}

TEST_CASE("hold and adopt: a head copied once, its fields views into the copy") {
  std::string wire = "GET /p?q HTTP/1.1\r\nHost: a.example\r\nX-Trace: 7\r\n\r\n";
  boost::beast::http::request_header<Fields> msg;
  std::string_view held = msg.hold(wire);
  REQUIRE(held == wire);
  CHECK(held.data() != wire.data());
  msg.method(boost::beast::http::verb::get);
  msg.adopt_target(held.substr(4, 4));
  msg.adopt(boost::beast::http::field::host, held.substr(19, 4), held.substr(25, 9));
  msg.adopt(boost::beast::http::field::unknown, held.substr(36, 7), held.substr(45, 1));
  msg.adopt(boost::beast::http::field::unknown, "X-Static", "text"); // static text is fine too
  wire.assign(wire.size(), '#');                                     // the source is gone
  CHECK(msg.target() == "/p?q");
  CHECK(msg[boost::beast::http::field::host] == "a.example");
  CHECK(msg["x-trace"] == "7");
  CHECK(msg["X-Static"] == "text");
  msg.set("X-Trace", "8");
  CHECK(msg["X-Trace"] == "8");
  CHECK(msg.count("x-trace") == 1);
  Fields copy = msg; // a copy copies the values (no views into the other's blocks)
  msg.clear();
  CHECK(copy["X-Trace"] == "8");
  CHECK(copy[boost::beast::http::field::host] == "a.example");
  CHECK(copy.size() == 3);
}

TEST_CASE("many and long fields spill into further blocks without moving earlier values") {
  Fields f;
  std::vector<std::string> names;
  std::vector<Fields::string_view> views;
  for (int i = 0; i < 200; ++i) {
    names.push_back("X-Field-" + std::to_string(i));
    f.insert(names.back(), std::string(static_cast<size_t>(i * 7), 'v'));
    views.push_back(f[names.back()]);
  }
  std::string big(10000, 'b');
  f.insert("X-Big", big);
  CHECK(f.size() == 201);
  for (int i = 0; i < 200; ++i) {
    CHECK(views[static_cast<size_t>(i)].size() == static_cast<size_t>(i * 7));
    CHECK(f[names[static_cast<size_t>(i)]].data() == views[static_cast<size_t>(i)].data());
  }
  CHECK(f["x-big"] == big);
  // Copies and moves carry everything.
  Fields copy = f;
  CHECK(copy.size() == 201);
  CHECK(copy["X-Field-199"] == std::string(199 * 7, 'v'));
  CHECK(copy["X-Field-199"].data() != f["X-Field-199"].data());
  Fields moved = std::move(copy);
  CHECK(moved.size() == 201);
  CHECK(copy.empty()); // NOLINT(bugprone-use-after-move): a moved-from container is empty
  copy = moved;
  CHECK(copy["x-big"] == big);
}

TEST_CASE("Beast's message rules: method, target, reason, keep-alive, chunked, content length") {
  bhttp::request<bhttp::empty_body, Fields> req;
  req.method_string("PURGE");
  req.target("/x?y");
  req.version(11);
  CHECK(req.method() == bhttp::verb::purge);
  req.method_string("BREW");
  CHECK(req.method() == bhttp::verb::unknown);
  CHECK(req.method_string() == "BREW");
  CHECK(req.target() == "/x?y");
  CHECK(req.keep_alive());
  req.insert(bhttp::field::connection, "Upgrade, close");
  CHECK_FALSE(req.keep_alive());
  req.keep_alive(true);
  CHECK(req[bhttp::field::connection] == "Upgrade");
  req.version(10);
  CHECK_FALSE(req.keep_alive());
  req.keep_alive(true);
  CHECK(req.keep_alive());

  bhttp::response<bhttp::empty_body, Fields> res;
  res.result(404);
  CHECK(res.reason() == "Not Found");
  res.reason("Nope");
  CHECK(res.reason() == "Nope");
  CHECK_FALSE(res.has_content_length());
  res.content_length(12345);
  CHECK(res[bhttp::field::content_length] == "12345");
  CHECK(res.has_content_length());
  res.content_length(boost::none);
  CHECK_FALSE(res.has_content_length());
  CHECK_FALSE(res.chunked());
  res.chunked(true);
  CHECK(res.chunked());
  res.set(bhttp::field::transfer_encoding, "gzip");
  res.chunked(true);
  CHECK(res[bhttp::field::transfer_encoding] == "gzip, chunked");
  res.chunked(false);
  CHECK(res[bhttp::field::transfer_encoding] == "gzip");
  res.set(bhttp::field::transfer_encoding, "chunked, gzip");
  CHECK_FALSE(res.chunked()); // only a last "chunked" counts
}

TEST_CASE("Beast's serializer writes the head from the writer") {
  bhttp::request<bhttp::string_body, Fields> req;
  req.method(bhttp::verb::post);
  req.target("/upload");
  req.version(11);
  req.insert("Host", "a.test");
  req.insert("x-b", "2");
  req.body() = "hello";
  req.prepare_payload();
  std::ostringstream out;
  out << req;
  CHECK(out.str() == "POST /upload HTTP/1.1\r\nHost: a.test\r\nx-b: 2\r\nContent-Length: 5\r\n\r\n"
                     "hello");

  bhttp::response<bhttp::empty_body, Fields> res;
  res.result(299); // no reason phrase known
  res.version(10);
  res.insert("Server", "weir");
  std::ostringstream out2;
  out2 << res;
  CHECK(out2.str() == "HTTP/1.0 299 <unknown-status>\r\nServer: weir\r\n\r\n");
}

TEST_CASE("field_code gives Beast's answer for every name, in any case") {
  using weir::core::http::field_code;
  auto flip = [](std::string s, int mode) {
    for (size_t i = 0; i < s.size(); ++i) {
      char& c = s[i];
      bool upper = mode == 1 || (mode == 2 && i % 2 == 0) || (mode == 3 && i % 3 == 1);
      if (upper && c >= 'a' && c <= 'z')
        c = static_cast<char>(c - 32);
      if (!upper && c >= 'A' && c <= 'Z')
        c = static_cast<char>(c + 32);
    }
    return s;
  };
  size_t checked = 0;
  // Every field Beast knows: its codes run from 1 to field::xref, the last.
  for (auto code = static_cast<unsigned>(bhttp::field::accept);
       code <= static_cast<unsigned>(bhttp::field::xref); ++code) {
    auto f = static_cast<bhttp::field>(code);
    std::string name(bhttp::to_string(f));
    for (int mode = 0; mode < 4; ++mode) {
      std::string n = flip(name, mode);
      CAPTURE(n);
      CHECK(field_code(n) == bhttp::string_to_field(n));
      CHECK(field_code(n) == f);
      ++checked;
    }
  }
  CHECK(checked > 4 * 300);
  // Names that are one byte away from a fast one, or that Beast does not know, or that differ
  // only in a byte the case fold must not touch ('-' against '\r', '_' against DEL, ...).
  for (const std::string& n : std::vector<std::string>{"hosts",
                                                       "hos",
                                                       "hpst",
                                                       "host\r",
                                                       "Host ",
                                                       "content-lengtH",
                                                       "content_length",
                                                       "content\rlength",
                                                       "contentmlength",
                                                       "x-forwarded-for",
                                                       "X-Forwarded-For",
                                                       "x-forwarded-fob",
                                                       "x-real-ip",
                                                       "X-Request-Id",
                                                       "te",
                                                       "TE",
                                                       "tE",
                                                       "t",
                                                       "",
                                                       "transfer-encodinG",
                                                       "transfer-encodin",
                                                       "transfer\x0d"
                                                       "encoding",
                                                       "keep-alivE",
                                                       "keep\x0d"
                                                       "alive",
                                                       "accept-encoding",
                                                       "ACCEPT-ENCODING",
                                                       "accept-encodinh",
                                                       "if-modified-since",
                                                       "if-modified-sincf",
                                                       std::string("ho\0t", 4),
                                                       "\xc8ost",
                                                       "H\xcfST"}) {
    CAPTURE(n);
    CHECK(field_code(n) == bhttp::string_to_field(n));
  }
}

TEST_CASE("lower_field_name: every known field's name in lower case; nothing for unknown") {
  using weir::core::http::lower_field_name;
  CHECK(lower_field_name(bhttp::field::unknown).empty());
  for (auto code = static_cast<unsigned>(bhttp::field::accept);
       code <= static_cast<unsigned>(bhttp::field::xref); ++code) {
    auto f = static_cast<bhttp::field>(code);
    std::string want(bhttp::to_string(f));
    for (auto& c : want)
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c + 32);
    CAPTURE(want);
    CHECK(lower_field_name(f) == want);
  }
}

TEST_CASE("HTTP/2 header lists: names in lower case, by code or folded; forbidden fields dropped") {
  Fields f;
  f.insert("Content-Type", "text/plain");   // known: the static lower-case name
  f.insert("X-Custom-Thing", "1");          // unknown: folded into the list's text
  f.insert("Connection", "keep-alive");     // forbidden in HTTP/2 (RFC 9113 8.2.2)
  f.insert("Keep-Alive", "timeout=5");      // so is this
  f.insert("Transfer-Encoding", "chunked"); // and this
  f.insert("HOST", "example.com");          // skipped by the caller's request
  f.insert(bhttp::field::unknown, "Proxy-Connection", "close"); // forbidden, by name only
  f.insert("Set-Cookie", "a=1");
  weir::core::net::HeaderList h;
  h.add_all(f, false, "host");
  const nghttp2_nv* nv = h.build();
  std::vector<std::pair<std::string, std::string>> got;
  for (size_t i = 0; i < h.size(); ++i)
    got.emplace_back(std::string(reinterpret_cast<const char*>(nv[i].name), nv[i].namelen),
                     std::string(reinterpret_cast<const char*>(nv[i].value), nv[i].valuelen));
  std::vector<std::pair<std::string, std::string>> want = {
      {"content-type", "text/plain"}, {"x-custom-thing", "1"}, {"set-cookie", "a=1"}};
  CHECK(got == want);
}
