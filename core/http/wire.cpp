#include "core/http/wire.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

namespace weir::core::http {

namespace bhttp = boost::beast::http;

namespace {

void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10 % 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

void append_fields(std::string& out, const bhttp::fields& fields) {
  for (const auto& f : fields) {
    auto name = f.name_string();
    auto value = f.value();
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  out += "\r\n";
}

} // namespace

void append_request_head(std::string& out, const bhttp::header<true, bhttp::fields>& h) {
  auto method = h.method_string();
  auto target = h.target();
  out.append(method.data(), method.size());
  out += ' ';
  out.append(target.data(), target.size());
  out += ' ';
  append_version(out, h.version());
  out += "\r\n";
  append_fields(out, h);
}

void append_response_head(std::string& out, const bhttp::header<false, bhttp::fields>& h) {
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
