// Certificates installed while running (by a certificate provider plugin, through the host API's
// install_certificate): one process-wide store that every TLS listener registers with.
//
// A certificate is parsed and checked once here; each listener then builds its own OpenSSL context
// for it (with that listener's versions, ciphers and ALPN) and serves it next to its configured
// certificates (ServerTls). An install or removal builds every listener's contexts first and only
// then swaps them in, so either every listener serves the change or none does. Handshakes in
// progress and connections already open keep the context they had.
//
// THREADING: every member may be called from any thread. The store's mutex is taken before a
// listener's own (never the other way round).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

typedef struct x509_st X509;         // NOLINT: OpenSSL's own forward declarations
typedef struct evp_pkey_st EVP_PKEY; // NOLINT

namespace weir::core::tls {

class ServerTls;

// A certificate chain and key installed at run time, independent of any listener.
struct InstalledCertificate {
  std::shared_ptr<X509> leaf;
  std::vector<std::shared_ptr<X509>> chain; // intermediates, in the order given
  std::shared_ptr<EVP_PKEY> key;
  std::vector<std::string> names; // lowercase DNS names, sorted, without duplicates
  std::string subject;            // for logs
  bool expired = false;
  uint64_t serial = 0; // install order: a later install beats an earlier one for the same name
};

// Parse a PEM chain (leaf first) and its PEM private key and check that they belong together and
// that the certificate names something. Returns null and says why in `error` otherwise.
std::shared_ptr<InstalledCertificate>
parse_certificate(std::string_view cert_pem, std::string_view key_pem, std::string& error);

class CertStore {
public:
  // The store of this process.
  static CertStore& global();

  struct InstallResult {
    enum class Status { Ok, Invalid, Failed } status = Status::Failed;
    std::string error;   // Invalid, Failed: why
    std::string subject; // Ok: the certificate's subject
    std::vector<std::string> names;
    bool expired = false; // Ok, but the certificate has expired (it is served anyway)
    size_t replaced = 0;  // installed certificates with the same names that it replaced
    size_t listeners = 0; // TLS listeners now serving it
  };

  // Serve a certificate on every TLS listener from the next handshake on, replacing the installed
  // certificate(s) with exactly the same set of names.
  InstallResult install(std::string_view cert_pem, std::string_view key_pem);

  // Stop serving the installed certificates whose names include `name` (case-insensitive, a
  // trailing dot ignored). Returns how many were removed.
  size_t remove(std::string_view name);

  // The installed certificates, in install order.
  std::vector<std::shared_ptr<const InstalledCertificate>> installed() const;
  // Listeners registered.
  size_t listener_count() const;
  // Remove every installed certificate (tests).
  void clear();

  // A listener starts (attach: it serves the installed certificates at once) or stops (detach)
  // taking part. Called by ServerTls.
  void attach(ServerTls& tls);
  void detach(ServerTls& tls);

private:
  CertStore() = default;
  // Make every listener serve `next`; false (nothing changed) when a listener cannot.
  bool publish_locked(const std::vector<std::shared_ptr<const InstalledCertificate>>& next,
                      std::string& error);

  mutable std::mutex mutex_;
  std::vector<ServerTls*> listeners_;
  std::vector<std::shared_ptr<const InstalledCertificate>> installed_; // in install order
  uint64_t next_serial_ = 1;
};

} // namespace weir::core::tls
