// Downstream TLS for one listener: OpenSSL contexts, SNI choice of certificate (exact name beats a
// wildcard, the first certificate is the default), ALPN, and a certificate set that can be
// replaced while running (new handshakes get the new set; open connections keep theirs).
#pragma once

#include "weir/config/model.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace boost::asio::ssl {
class context;
}
typedef struct ssl_ctx_st SSL_CTX; // NOLINT: OpenSSL's own forward declaration
typedef struct ssl_st SSL;         // NOLINT

namespace weir::core::tls {

// One loaded certificate chain + key, with the names it serves.
struct Certificate {
  std::shared_ptr<SSL_CTX> ctx;
  std::vector<std::string> names; // lowercase DNS names from subjectAltName (or the CN)
  std::string subject;            // for logs
};

class ServerTls {
public:
  // Load every certificate of `cfg`; problems are appended as diagnostics at the certificate's
  // position. Returns null when anything failed.
  static std::shared_ptr<ServerTls> create(const config::TlsConfig& cfg,
                                           std::vector<config::Diagnostic>& errors);
  ~ServerTls();
  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;

  // The context streams are created with. It holds no certificate: the SNI callback switches
  // every connection to the context of its certificate.
  boost::asio::ssl::context& context() { return *base_; }

  // Re-read the certificate files. On failure the old set stays and `errors` says why.
  bool reload(std::vector<std::string>& errors);

  // The certificate for a server name ("" = none sent).
  std::shared_ptr<const Certificate> select(std::string_view server_name) const;

  const config::TlsConfig& config() const { return cfg_; }

private:
  struct CertSet;
  explicit ServerTls(config::TlsConfig cfg);
  std::shared_ptr<const CertSet> load(std::vector<config::Diagnostic>& errors) const;
  bool configure(SSL_CTX* ctx, std::string& error) const;
  static int on_servername(SSL* ssl, int* alert, void* arg);

  config::TlsConfig cfg_;
  std::string alpn_; // our ALPN protocols in wire format
  std::unique_ptr<boost::asio::ssl::context> base_;
  mutable std::mutex mutex_;
  std::shared_ptr<const CertSet> set_;
};

} // namespace weir::core::tls
