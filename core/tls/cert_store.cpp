#include "core/tls/cert_store.hpp"

#include "core/runtime/logging.hpp"
#include "core/tls/openssl_util.hpp"
#include "core/tls/server_tls.hpp"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>

namespace weir::core::tls {

namespace {

// PEM password callback: no password, so an encrypted key fails instead of prompting on a terminal.
int no_password(char*, int, int, void*) {
  return 0;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr memory_bio(std::string_view pem) {
  if (pem.size() > static_cast<size_t>(INT_MAX))
    return nullptr;
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// True when the last OpenSSL error says "no more PEM blocks" (the normal end of a chain).
bool at_pem_end() {
  const unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

} // namespace

std::shared_ptr<InstalledCertificate>
parse_certificate(std::string_view cert_pem, std::string_view key_pem, std::string& error) {
  ERR_clear_error();
  if (cert_pem.empty()) {
    error = "no certificate given (empty PEM)";
    return nullptr;
  }
  if (key_pem.empty()) {
    error = "no private key given (empty PEM)";
    return nullptr;
  }
  auto out = std::make_shared<InstalledCertificate>();
  auto bio = memory_bio(cert_pem);
  if (!bio) {
    error = "cannot read the certificate PEM: " + openssl_error();
    return nullptr;
  }
  X509* leaf = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr);
  if (leaf == nullptr) {
    error = "cannot read the certificate PEM: " + openssl_error();
    return nullptr;
  }
  out->leaf.reset(leaf, X509_free);
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr);
    if (x == nullptr) {
      if (at_pem_end()) {
        ERR_clear_error();
        break;
      }
      error = fmt::format("cannot read intermediate certificate {} of the chain: {}",
                          out->chain.size() + 1, openssl_error());
      return nullptr;
    }
    out->chain.emplace_back(x, X509_free);
  }

  auto kbio = memory_bio(key_pem);
  EVP_PKEY* key =
      kbio ? PEM_read_bio_PrivateKey(kbio.get(), nullptr, no_password, nullptr) : nullptr;
  if (key == nullptr) {
    error =
        "cannot read the private key PEM (encrypted keys are not supported): " + openssl_error();
    return nullptr;
  }
  out->key.reset(key, EVP_PKEY_free);

  out->subject = subject_of(leaf);
  if (X509_check_private_key(leaf, key) != 1) {
    ERR_clear_error();
    error = fmt::format("the private key does not match the certificate {}", out->subject);
    return nullptr;
  }
  for (const auto& name : names_of(leaf))
    out->names.push_back(normalize_name(name));
  std::sort(out->names.begin(), out->names.end());
  out->names.erase(std::unique(out->names.begin(), out->names.end()), out->names.end());
  out->names.erase(std::remove(out->names.begin(), out->names.end(), std::string()),
                   out->names.end());
  if (out->names.empty()) {
    error = fmt::format("the certificate {} names no host (no subjectAltName DNS entry, no CN)",
                        out->subject);
    return nullptr;
  }
  out->expired = X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0;
  return out;
}

CertStore& CertStore::global() {
  // Never destroyed: a listener destroyed during static destruction may still detach.
  static CertStore* store = new CertStore();
  return *store;
}

bool CertStore::publish_locked(const std::vector<std::shared_ptr<const InstalledCertificate>>& next,
                               std::string& error) {
  // Build every listener's contexts first; swap only when all could.
  std::vector<std::vector<std::shared_ptr<const Certificate>>> prepared(listeners_.size());
  for (size_t i = 0; i < listeners_.size(); ++i)
    if (!listeners_[i]->prepare_installed(next, prepared[i], error))
      return false;
  for (size_t i = 0; i < listeners_.size(); ++i)
    listeners_[i]->set_installed(std::move(prepared[i]));
  return true;
}

CertStore::InstallResult CertStore::install(std::string_view cert_pem, std::string_view key_pem) {
  InstallResult result;
  auto cert = parse_certificate(cert_pem, key_pem, result.error);
  if (!cert) {
    result.status = InstallResult::Status::Invalid;
    return result;
  }
  std::lock_guard lock(mutex_);
  cert->serial = next_serial_++;
  std::vector<std::shared_ptr<const InstalledCertificate>> next;
  next.reserve(installed_.size() + 1);
  for (const auto& c : installed_) {
    if (c->names == cert->names)
      ++result.replaced;
    else
      next.push_back(c);
  }
  next.push_back(cert);
  if (!publish_locked(next, result.error)) {
    result.status = InstallResult::Status::Failed;
    return result;
  }
  installed_ = std::move(next);
  result.status = InstallResult::Status::Ok;
  result.subject = cert->subject;
  result.names = cert->names;
  result.expired = cert->expired;
  result.listeners = listeners_.size();
  return result;
}

size_t CertStore::remove(std::string_view name) {
  const std::string wanted = normalize_name(name);
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<const InstalledCertificate>> next;
  for (const auto& c : installed_)
    if (!std::binary_search(c->names.begin(), c->names.end(), wanted))
      next.push_back(c);
  const size_t removed = installed_.size() - next.size();
  if (removed == 0)
    return 0;
  // Removing only drops contexts every listener already has: this cannot fail.
  std::string error;
  publish_locked(next, error);
  installed_ = std::move(next);
  return removed;
}

std::vector<std::shared_ptr<const InstalledCertificate>> CertStore::installed() const {
  std::lock_guard lock(mutex_);
  return installed_;
}

size_t CertStore::listener_count() const {
  std::lock_guard lock(mutex_);
  return listeners_.size();
}

void CertStore::clear() {
  std::lock_guard lock(mutex_);
  std::string error;
  publish_locked({}, error);
  installed_.clear();
}

void CertStore::attach(ServerTls& tls) {
  std::lock_guard lock(mutex_);
  listeners_.push_back(&tls);
  if (installed_.empty())
    return;
  std::vector<std::shared_ptr<const Certificate>> prepared;
  std::string error;
  if (tls.prepare_installed(installed_, prepared, error))
    tls.set_installed(std::move(prepared));
  else
    // The listener still serves its configured certificates; say why it lacks the others.
    logger("tls")->error("{}: the installed certificates are not served: {}", tls.config().key_path,
                         error);
}

void CertStore::detach(ServerTls& tls) {
  std::lock_guard lock(mutex_);
  listeners_.erase(std::remove(listeners_.begin(), listeners_.end(), &tls), listeners_.end());
}

} // namespace weir::core::tls
