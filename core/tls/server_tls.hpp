// Downstream TLS for one listener: OpenSSL contexts, SNI choice of certificate (exact name beats a
// wildcard, the first certificate is the default), ALPN, session ticket keys that rotate, and a
// certificate set that can be replaced while running (new handshakes get the new set; open
// connections keep theirs). The set is the configured certificates (re-read on SIGHUP) plus the
// certificates installed at run time through the CertStore (kept across SIGHUP).
#pragma once

#include "weir/config/model.hpp"

#include <cstdint>
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
  bool installed = false;         // installed at run time (CertStore), not from the configuration
  uint64_t serial = 0;            // installed: InstalledCertificate::serial
};

struct InstalledCertificate;
class TicketKeys;

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

  // Re-read the certificate files. On failure the old set stays and `errors` says why. Installed
  // certificates stay either way.
  bool reload(std::vector<std::string>& errors);

  // The certificate for a server name ("" = none sent): a certificate listing exactly that name,
  // else a wildcard covering it, else the first configured certificate. For the same kind of
  // match an installed certificate beats a configured one, and a later install an earlier one.
  std::shared_ptr<const Certificate> select(std::string_view server_name) const;

  const config::TlsConfig& config() const { return cfg_; }

  // The session ticket keys of this listener (null when session tickets are off).
  const std::shared_ptr<TicketKeys>& ticket_keys() const { return ticket_keys_; }

  // For the CertStore: this listener's contexts for the installed certificates `next` (reusing
  // the ones it already has), or false and `error`.
  bool prepare_installed(const std::vector<std::shared_ptr<const InstalledCertificate>>& next,
                         std::vector<std::shared_ptr<const Certificate>>& out,
                         std::string& error) const;
  // For the CertStore: serve these installed certificates from the next handshake on.
  void set_installed(std::vector<std::shared_ptr<const Certificate>> installed);

private:
  struct CertSet;
  using CertList = std::vector<std::shared_ptr<const Certificate>>;
  explicit ServerTls(config::TlsConfig cfg);
  // The configured certificates, in order; empty when any failed (`errors` says why).
  CertList load(std::vector<config::Diagnostic>& errors) const;
  std::shared_ptr<const Certificate> prepare(const InstalledCertificate& c,
                                             std::string& error) const;
  static std::shared_ptr<const CertSet> index(CertList files, CertList installed);
  bool configure(SSL_CTX* ctx, std::string& error) const;
  static int on_servername(SSL* ssl, int* alert, void* arg);

  config::TlsConfig cfg_;
  std::string sid_ctx_; // session id context, unique per listener
  std::string alpn_;    // our ALPN protocols in wire format
  std::shared_ptr<TicketKeys> ticket_keys_;
  std::unique_ptr<boost::asio::ssl::context> base_;
  mutable std::mutex mutex_;
  std::shared_ptr<const CertSet> set_; // guarded by mutex_ (the pointer; the set is immutable)
};

} // namespace weir::core::tls
