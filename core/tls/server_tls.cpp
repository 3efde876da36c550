#include "core/tls/server_tls.hpp"

#include "core/runtime/logging.hpp"
#include "core/tls/cert_store.hpp"
#include "core/tls/openssl_util.hpp"
#include "core/tls/session_cache.hpp"
#include "core/tls/ticket_keys.hpp"

#include <boost/asio/ssl/context.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <unordered_map>

namespace weir::core::tls {

namespace {

int version_of(const std::string& v) {
  return v == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

// ALPN protocols in wire format: length-prefixed strings.
std::string alpn_wire(const std::vector<std::string>& protocols) {
  std::string out;
  for (const auto& p : protocols) {
    out += static_cast<char>(p.size());
    out += p;
  }
  return out;
}

int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
            unsigned int inlen, void* arg) {
  const auto* wire = static_cast<const std::string*>(arg);
  unsigned char* chosen = nullptr;
  // Server preference: the first of our protocols that the client offers.
  if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(wire->data()),
                            static_cast<unsigned int>(wire->size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK; // no common protocol: go on without ALPN (plain HTTP/1.1)
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

} // namespace

struct ServerTls::CertSet {
  CertList files;     // in configuration order; [0] = the default
  CertList installed; // in install order
  std::unordered_map<std::string, std::shared_ptr<const Certificate>> exact;
  std::unordered_map<std::string, std::shared_ptr<const Certificate>> wildcard; // "*.x" -> "x"
};

ServerTls::ServerTls(config::TlsConfig cfg) : cfg_(std::move(cfg)) {
  static std::atomic<uint64_t> next{0};
  sid_ctx_ = "weir-" + std::to_string(++next);
}

ServerTls::~ServerTls() {
  // First: the store must not reach this listener while its members go.
  CertStore::global().detach(*this);
}

bool ServerTls::configure(SSL_CTX* ctx, std::string& error) const {
  SSL_CTX_set_min_proto_version(ctx, version_of(cfg_.min_version));
  SSL_CTX_set_max_proto_version(ctx, version_of(cfg_.max_version));
  if (SSL_CTX_set_cipher_list(ctx, cfg_.ciphers.c_str()) != 1) {
    error = fmt::format("ciphers \"{}\": {}", cfg_.ciphers, openssl_error());
    return false;
  }
  if (SSL_CTX_set_ciphersuites(ctx, cfg_.ciphersuites.c_str()) != 1) {
    error = fmt::format("ciphersuites \"{}\": {}", cfg_.ciphersuites, openssl_error());
    return false;
  }
  if (SSL_CTX_set1_groups_list(ctx, cfg_.groups.c_str()) != 1) {
    error = fmt::format("groups \"{}\": {}", cfg_.groups, openssl_error());
    return false;
  }
  uint64_t options =
      SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
  if (!cfg_.session_tickets)
    options |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(ctx, options);
  // No SSL_MODE_RELEASE_BUFFERS: a quiet connection gives OpenSSL's record buffers back, a busy
  // one keeps them (net::TlsQuietList).
  use_worker_session_cache(ctx);
  SSL_CTX_set_timeout(ctx, static_cast<long>(cfg_.session_timeout.count() / 1000));
  // Per listener: a session from one listener never resumes on another (OpenSSL compares it).
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(sid_ctx_.data()),
                                 static_cast<unsigned int>(sid_ctx_.size()));
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, const_cast<std::string*>(&alpn_));
  // Every context of the listener shares its ticket keys: OpenSSL encrypts and decrypts tickets
  // with the base context's callback, and the SNI callback may have moved the connection since.
  if (ticket_keys_ && !TicketKeys::attach(ctx, ticket_keys_)) {
    error = "cannot set the session ticket keys: " + openssl_error();
    return false;
  }
  return true;
}

std::shared_ptr<ServerTls> ServerTls::create(const config::TlsConfig& cfg,
                                             std::vector<config::Diagnostic>& errors) {
  std::shared_ptr<ServerTls> tls(new ServerTls(cfg));
  tls->alpn_ = alpn_wire(cfg.alpn);
  if (cfg.session_tickets) {
    const auto interval = TicketKeys::interval_for(cfg.session_timeout);
    std::string error;
    tls->ticket_keys_ =
        TicketKeys::create(interval, TicketKeys::keep_for(cfg.session_timeout, interval), error);
    if (!tls->ticket_keys_) {
      errors.push_back({cfg.loc, cfg.key_path, error});
      return nullptr;
    }
  }
  SSL_CTX* base = SSL_CTX_new(TLS_server_method());
  if (base == nullptr) {
    errors.push_back({cfg.loc, cfg.key_path, "cannot create a TLS context: " + openssl_error()});
    return nullptr;
  }
  // asio takes ownership of the native context.
  tls->base_ = std::make_unique<boost::asio::ssl::context>(base);
  std::string error;
  if (!tls->configure(base, error)) {
    errors.push_back({cfg.loc, cfg.key_path, error});
    return nullptr;
  }
  // The OpenSSL macros for these cast in C style; call what they expand to.
  SSL_CTX_callback_ctrl(base, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                        reinterpret_cast<void (*)(void)>(&ServerTls::on_servername));
  SSL_CTX_ctrl(base, SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG, 0, tls.get());
  auto files = tls->load(errors);
  if (files.empty())
    return nullptr;
  tls->set_ = index(std::move(files), {});
  // From now on the listener also serves the certificates installed at run time.
  CertStore::global().attach(*tls);
  return tls;
}

ServerTls::CertList ServerTls::load(std::vector<config::Diagnostic>& errors) const {
  CertList files;
  bool ok = true;
  for (const auto& c : cfg_.certificates) {
    auto fail = [&](std::string message) {
      errors.push_back({c.loc, c.key_path, std::move(message)});
      ok = false;
    };
    std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    std::string error;
    if (!ctx || !configure(ctx.get(), error)) {
      fail(error.empty() ? "cannot create a TLS context: " + openssl_error() : error);
      continue;
    }
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.cert.c_str()) != 1) {
      fail(fmt::format("cannot load certificate \"{}\": {}", c.cert, openssl_error()));
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        fail(fmt::format("private key \"{}\" does not match certificate \"{}\"", c.key, c.cert));
      } else {
        fail(fmt::format("cannot load private key \"{}\": {}", c.key, openssl_error()));
      }
      continue;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      fail(fmt::format("private key \"{}\" does not match certificate \"{}\"", c.key, c.cert));
      ERR_clear_error();
      continue;
    }
    X509* x = SSL_CTX_get0_certificate(ctx.get());
    auto cert = std::make_shared<Certificate>();
    cert->ctx = ctx;
    cert->names = names_of(x);
    cert->subject = subject_of(x);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
      logger("tls")->warn("{}: certificate \"{}\" ({}) has expired", c.key_path, c.cert,
                          cert->subject);
    files.push_back(std::move(cert));
  }
  if (!ok)
    files.clear();
  return files;
}

std::shared_ptr<const ServerTls::CertSet> ServerTls::index(CertList files, CertList installed) {
  auto set = std::make_shared<CertSet>();
  auto add = [&set](const std::shared_ptr<const Certificate>& cert, bool replace) {
    for (const auto& name : cert->names) {
      const bool wild = name.size() > 2 && name.compare(0, 2, "*.") == 0;
      auto& map = wild ? set->wildcard : set->exact;
      auto key = wild ? name.substr(2) : name;
      if (replace)
        map.insert_or_assign(std::move(key), cert);
      else
        map.emplace(std::move(key), cert);
    }
  };
  // Configured: the first certificate naming a name wins. Installed (in install order): each one
  // takes its names over, from the configured certificates and from earlier installs.
  for (const auto& cert : files)
    add(cert, false);
  for (const auto& cert : installed)
    add(cert, true);
  set->files = std::move(files);
  set->installed = std::move(installed);
  return set;
}

bool ServerTls::reload(std::vector<std::string>& errors) {
  std::vector<config::Diagnostic> diags;
  auto files = load(diags);
  if (files.empty()) {
    for (const auto& d : diags)
      errors.push_back(d.to_string());
    return false;
  }
  std::lock_guard lock(mutex_);
  set_ = index(std::move(files), set_->installed);
  return true;
}

std::shared_ptr<const Certificate> ServerTls::prepare(const InstalledCertificate& c,
                                                      std::string& error) const {
  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_error();
    return nullptr;
  }
  if (!configure(ctx.get(), error))
    return nullptr;
  bool ok = SSL_CTX_use_certificate(ctx.get(), c.leaf.get()) == 1;
  // SSL_CTX_add1_chain_cert casts in C style; call what it expands to.
  for (size_t i = 0; ok && i < c.chain.size(); ++i)
    ok = SSL_CTX_ctrl(ctx.get(), SSL_CTRL_CHAIN_CERT, 1, c.chain[i].get()) == 1;
  ok = ok && SSL_CTX_use_PrivateKey(ctx.get(), c.key.get()) == 1 &&
       SSL_CTX_check_private_key(ctx.get()) == 1;
  if (!ok) {
    error = fmt::format("cannot use certificate {} on listener {}: {}", c.subject, cfg_.key_path,
                        openssl_error());
    return nullptr;
  }
  auto cert = std::make_shared<Certificate>();
  cert->ctx = std::move(ctx);
  cert->names = c.names;
  cert->subject = c.subject;
  cert->installed = true;
  cert->serial = c.serial;
  return cert;
}

bool ServerTls::prepare_installed(
    const std::vector<std::shared_ptr<const InstalledCertificate>>& next, CertList& out,
    std::string& error) const {
  CertList current;
  {
    std::lock_guard lock(mutex_);
    current = set_->installed;
  }
  out.clear();
  for (const auto& c : next) {
    auto it = std::find_if(current.begin(), current.end(),
                           [&c](const auto& have) { return have->serial == c->serial; });
    if (it != current.end()) {
      out.push_back(*it);
      continue;
    }
    auto cert = prepare(*c, error);
    if (!cert)
      return false;
    out.push_back(std::move(cert));
  }
  return true;
}

void ServerTls::set_installed(CertList installed) {
  std::lock_guard lock(mutex_);
  set_ = index(set_->files, std::move(installed));
}

std::shared_ptr<const Certificate> ServerTls::select(std::string_view server_name) const {
  std::shared_ptr<const CertSet> set;
  {
    std::lock_guard lock(mutex_);
    set = set_;
  }
  const std::string name = normalize_name(server_name);
  if (!name.empty()) {
    if (auto it = set->exact.find(name); it != set->exact.end())
      return it->second;
    // A wildcard covers exactly one label: *.example.test matches a.example.test only.
    if (auto dot = name.find('.'); dot != std::string::npos && dot > 0) {
      if (auto it = set->wildcard.find(name.substr(dot + 1)); it != set->wildcard.end())
        return it->second;
    }
  }
  return set->files.front();
}

int ServerTls::on_servername(SSL* ssl, int*, void* arg) {
  auto* self = static_cast<ServerTls*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  auto cert = self->select(name != nullptr ? std::string_view(name) : std::string_view());
  // The SSL object holds a reference to the context: a reload cannot free it under the handshake.
  SSL_set_SSL_CTX(ssl, cert->ctx.get());
  return SSL_TLSEXT_ERR_OK;
}

} // namespace weir::core::tls
