#include "core/http/wire.hpp"

#include "core/http/copy_bytes.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

#include <cstring>
#include <string_view>

namespace weir::core::http {

namespace bhttp = boost::beast::http;

namespace {

// Writes a head's pieces at a cursor that has room for them (the size is worked out first).
struct Writer {
  char* p;
  void put(std::string_view s) noexcept {
    copy_bytes(p, s.data(), s.size());
    p += s.size();
  }
  void put(char c) noexcept { *p++ = c; }
  // "HTTP/x.y" (8 bytes; the caller writes what goes around it).
  void version(unsigned v) noexcept {
    std::memcpy(p, "HTTP/", 5);
    p[5] = static_cast<char>('0' + v / 10 % 10);
    p[6] = '.';
    p[7] = static_cast<char>('0' + v % 10);
    p += 8;
  }
  void fields(const Fields& fields) noexcept {
    for (const auto& f : fields) {
      put(f.name_string());
      std::memcpy(p, ": ", 2);
      p += 2;
      put(f.value());
      std::memcpy(p, "\r\n", 2);
      p += 2;
    }
    std::memcpy(p, "\r\n", 2);
    p += 2;
  }
};

// The fields and the empty line.
size_t fields_size(const Fields& fields) {
  size_t size = 2;
  for (const auto& f : fields)
    size += f.name_string().size() + f.value().size() + 4;
  return size;
}

} // namespace

size_t request_head_size(const bhttp::header<true, Fields>& h) {
  return h.method_string().size() + 1 + h.target().size() + 1 + 8 + 2 + fields_size(h);
}

void write_request_head(char* out, const bhttp::header<true, Fields>& h) {
  Writer w{out};
  w.put(h.method_string());
  w.put(' ');
  w.put(h.target());
  w.put(' ');
  w.version(h.version());
  w.put('\r');
  w.put('\n');
  w.fields(h);
}

void append_response_head(std::string& out, const bhttp::header<false, Fields>& h) {
  unsigned code = h.result_int();
  auto reason = h.reason();
  if (reason.empty())
    reason = bhttp::obsolete_reason(h.result());
  // "HTTP/x.y ddd reason\r\n", sized once with the fields.
  size_t at = out.size();
  out.resize(at + 8 + 5 + reason.size() + 2 + fields_size(h));
  Writer w{out.data() + at};
  w.version(h.version());
  w.put(' ');
  w.put(static_cast<char>('0' + code / 100 % 10));
  w.put(static_cast<char>('0' + code / 10 % 10));
  w.put(static_cast<char>('0' + code % 10));
  w.put(' ');
  w.put(std::string_view(reason.data(), reason.size()));
  w.put('\r');
  w.put('\n');
  w.fields(h);
}

} // namespace weir::core::http
