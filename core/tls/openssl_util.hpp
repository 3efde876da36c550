// Small OpenSSL helpers shared by the TLS code: error text, certificate names and subjects.
#pragma once

#include <string>
#include <string_view>
#include <vector>

typedef struct x509_st X509; // NOLINT: OpenSSL's own forward declaration

namespace weir::core::tls {

// Everything OpenSSL queued, oldest first, as one string; the queue is left empty.
std::string openssl_error();

// ASCII lower-case copy.
std::string lower(std::string_view s);

// A DNS name as names compare: lower case, without a trailing dot.
std::string normalize_name(std::string_view s);

// The lowercase DNS names of a certificate: its subjectAltName DNS entries, or its subject CN when
// it has none.
std::vector<std::string> names_of(X509* x);

// The subject in OpenSSL's one-line form, for logs.
std::string subject_of(X509* x);

} // namespace weir::core::tls
