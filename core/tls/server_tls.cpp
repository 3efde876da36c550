#include "core/tls/server_tls.hpp"

#include "core/runtime/logging.hpp"

#include <boost/asio/ssl/context.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <unordered_map>

namespace weir::core::tls {

namespace {

// Everything OpenSSL queued, oldest first, as one string; the queue is left empty.
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

int version_of(const std::string& v) {
  return v == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
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

} // namespace

struct ServerTls::CertSet {
  std::vector<std::shared_ptr<const Certificate>> all; // in configuration order; [0] = default
  std::unordered_map<std::string, std::shared_ptr<const Certificate>> exact;
  std::unordered_map<std::string, std::shared_ptr<const Certificate>> wildcard; // "*.x" -> "x"
};

ServerTls::ServerTls(config::TlsConfig cfg) : cfg_(std::move(cfg)) {}

ServerTls::~ServerTls() = default;

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
  // Idle connections give their read and write buffers back.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_timeout(ctx, static_cast<long>(cfg_.session_timeout.count() / 1000));
  static const unsigned char sid_ctx[] = "weir";
  SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, const_cast<std::string*>(&alpn_));
  return true;
}

std::shared_ptr<ServerTls> ServerTls::create(const config::TlsConfig& cfg,
                                             std::vector<config::Diagnostic>& errors) {
  std::shared_ptr<ServerTls> tls(new ServerTls(cfg));
  tls->alpn_ = alpn_wire(cfg.alpn);
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
  auto set = tls->load(errors);
  if (!set)
    return nullptr;
  tls->set_ = std::move(set);
  return tls;
}

std::shared_ptr<const ServerTls::CertSet>
ServerTls::load(std::vector<config::Diagnostic>& errors) const {
  auto set = std::make_shared<CertSet>();
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
    for (const auto& name : cert->names) {
      if (name.size() > 2 && name.compare(0, 2, "*.") == 0)
        set->wildcard.emplace(name.substr(2), cert); // the first certificate naming it wins
      else
        set->exact.emplace(name, cert);
    }
    set->all.push_back(std::move(cert));
  }
  if (!ok || set->all.empty())
    return nullptr;
  return set;
}

bool ServerTls::reload(std::vector<std::string>& errors) {
  std::vector<config::Diagnostic> diags;
  auto set = load(diags);
  if (!set) {
    for (const auto& d : diags)
      errors.push_back(d.to_string());
    return false;
  }
  std::lock_guard lock(mutex_);
  set_ = std::move(set);
  return true;
}

std::shared_ptr<const Certificate> ServerTls::select(std::string_view server_name) const {
  std::shared_ptr<const CertSet> set;
  {
    std::lock_guard lock(mutex_);
    set = set_;
  }
  std::string name = lower(server_name);
  if (!name.empty() && name.back() == '.')
    name.pop_back();
  if (!name.empty()) {
    if (auto it = set->exact.find(name); it != set->exact.end())
      return it->second;
    // A wildcard covers exactly one label: *.example.test matches a.example.test only.
    if (auto dot = name.find('.'); dot != std::string::npos && dot > 0) {
      if (auto it = set->wildcard.find(name.substr(dot + 1)); it != set->wildcard.end())
        return it->second;
    }
  }
  return set->all.front();
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
