#include "core/http/wire.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

#include <cstring>
#include <string_view>

namespace weir::core::http {

namespace bhttp = boost::beast::http;

namespace {

void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

// Sized once, then copied: appending piece by piece costs a capacity check per piece.
void append_fields(std::string& out, const Fields& fields) {
  size_t size = 2;
  for (const auto& f : fields)
    size += f.name_string().size() + f.value().size() + 4;
  size_t at = out.size();
  out.resize(at + size);
  char* p = out.data() + at;
  auto put = [&p](const char* s, size_t n) {
    std::memcpy(p, s, n);
    p += n;
  };
  for (const auto& f : fields) {
    auto name = f.name_string();
    auto value = f.value();
    put(name.data(), name.size());
    put(": ", 2);
    put(value.data(), value.size());
    put("\r\n", 2);
  }
  put("\r\n", 2);
}

} // namespace

size_t request_head_size(const bhttp::header<true, Fields>& h) {
  size_t size = h.method_string().size() + 1 + h.target().size() + 1 + 8 + 2 + 2;
  for (const auto& f : h)
    size += f.name_string().size() + f.value().size() + 4;
  return size;
}

void write_request_head(char* out, const bhttp::header<true, Fields>& h) {
  auto put = [&out](std::string_view s) {
    std::memcpy(out, s.data(), s.size());
    out += s.size();
  };
  put(h.method_string());
  put(" ");
  put(h.target());
  unsigned v = h.version();
  char version[] = {' ',
                    'H',
                    'T',
                    'T',
                    'P',
                    '/',
                    static_cast<char>('0' + v / 10 % 10),
                    '.',
                    static_cast<char>('0' + v % 10),
                    '\r',
                    '\n'};
  put({version, sizeof version});
  for (const auto& f : h) {
    put(f.name_string());
    put(": ");
    put(f.value());
    put("\r\n");
  }
  put("\r\n");
}

void append_response_head(std::string& out, const bhttp::header<false, Fields>& h) {
  append_version(out, h.version());
  unsigned code = h.result_int();
  out += ' ';
  out += static_cast<char>('0' + code / 100 % 10);
  out += static_cast<char>('0' + code / 10 % 10);
  out += static_cast<char>('0' + code % 10);
  out += ' ';
  auto reason = h.reason();
  if (reason.empty())
    reason = bhttp::obsolete_reason(h.result());
  out.append(reason.data(), reason.size());
  out += "\r\n";
  append_fields(out, h);
}

} // namespace weir::core::http
