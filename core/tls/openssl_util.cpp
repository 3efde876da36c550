#include "core/tls/openssl_util.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cctype>

namespace weir::core::tls {

std::string openssl_error() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string normalize_name(std::string_view s) {
  std::string name = lower(s);
  if (!name.empty() && name.back() == '.')
    name.pop_back();
  return name;
}

std::vector<std::string> names_of(X509* x) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS)
        continue;
      const auto* data = ASN1_STRING_get0_data(gn->d.dNSName);
      auto len = static_cast<size_t>(ASN1_STRING_length(gn->d.dNSName));
      names.push_back(lower(std::string_view(reinterpret_cast<const char*>(data), len)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    // No DNS names: fall back to the subject's CN, as clients used to.
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    if (n > 0)
      names.push_back(lower(std::string_view(cn, static_cast<size_t>(n))));
  }
  return names;
}

std::string subject_of(X509* x) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
  return buf;
}

} // namespace weir::core::tls
