// Downstream TLS: session ticket keys that rotate (a ticket from before a rotation resumes, one
// older than the ring does not) and the store of certificates installed at run time (SNI choice,
// replacement, removal, SIGHUP reload, the host API functions). Handshakes run in memory between
// an OpenSSL client and the listener's real contexts.
#include "core/plugin/host_api.hpp"
#include "core/tls/cert_store.hpp"
#include "core/tls/server_tls.hpp"
#include "core/tls/ticket_keys.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using weir::core::tls::CertStore;
using weir::core::tls::ServerTls;
using weir::core::tls::TicketKeys;

namespace {

// --- certificates made in memory ----------------------------------------------------------------

struct Pem {
  std::string cert;
  std::string key;
};

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  // BIO_get_mem_data casts in C style; call what it expands to.
  const long len = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data);
  return std::string(data, static_cast<size_t>(len));
}

EVP_PKEY* new_key() {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  REQUIRE(ctx != nullptr);
  REQUIRE(EVP_PKEY_keygen_init(ctx) == 1);
  REQUIRE(EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1);
  REQUIRE(EVP_PKEY_generate(ctx, &key) == 1);
  EVP_PKEY_CTX_free(ctx);
  return key;
}

// A self-signed ECDSA P-256 certificate with subject O=`org`, CN=`cn` (none when empty) and the
// DNS names `sans` (no subjectAltName when empty). `key_of` signs with another key than the one
// certified, to make a mismatched pair.
Pem make_cert(const std::string& org, const std::string& cn, const std::vector<std::string>& sans,
              bool mismatched_key = false) {
  EVP_PKEY* key = new_key();
  X509* x = X509_new();
  X509_set_version(x, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0);
  if (!cn.empty())
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  if (!sans.empty()) {
    std::string value;
    for (const auto& s : sans)
      value += (value.empty() ? "DNS:" : ",DNS:") + s;
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, value.c_str());
    REQUIRE(ext != nullptr);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  REQUIRE(X509_sign(x, key, EVP_sha256()) > 0);
  Pem out;
  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  out.cert = bio_text(cb);
  BIO_free(cb);
  EVP_PKEY* written = key;
  if (mismatched_key)
    written = new_key();
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, written, nullptr, nullptr, 0, nullptr, nullptr);
  out.key = bio_text(kb);
  BIO_free(kb);
  if (written != key)
    EVP_PKEY_free(written);
  EVP_PKEY_free(key);
  X509_free(x);
  return out;
}

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/weir-tls-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string path;
};

// A listener's TLS configuration for these certificate files.
weir::config::TlsConfig tls_config(const TempDir& dir, const std::vector<Pem>& certs) {
  weir::config::TlsConfig cfg;
  cfg.key_path = "services.web.listeners[0].tls";
  for (size_t i = 0; i < certs.size(); ++i) {
    weir::config::TlsCertificate c;
    c.cert = dir.write("c" + std::to_string(i) + ".pem", certs[i].cert);
    c.key = dir.write("c" + std::to_string(i) + ".key", certs[i].key);
    c.key_path = cfg.key_path + ".certificates[" + std::to_string(i) + "]";
    cfg.certificates.push_back(c);
  }
  return cfg;
}

std::shared_ptr<ServerTls> make_listener(const weir::config::TlsConfig& cfg) {
  std::vector<weir::config::Diagnostic> errors;
  auto tls = ServerTls::create(cfg, errors);
  REQUIRE(errors.empty());
  REQUIRE(tls != nullptr);
  return tls;
}

// The store is process-wide: every test leaves it empty.
struct StoreGuard {
  StoreGuard() { CertStore::global().clear(); }
  ~StoreGuard() { CertStore::global().clear(); }
};

// --- in-memory handshakes -----------------------------------------------------------------------

struct Handshake {
  bool ok = false;
  bool reused = false;
  std::string organization; // O= of the certificate the server sent
  SSL_SESSION* session = nullptr;

  Handshake() = default;
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;
  Handshake(Handshake&& o) noexcept
      : ok(o.ok), reused(o.reused), organization(std::move(o.organization)), session(o.session) {
    o.session = nullptr;
  }
  ~Handshake() {
    if (session != nullptr)
      SSL_SESSION_free(session);
  }
};

std::string organization_of(X509* x) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, buf, sizeof(buf));
  return buf;
}

// A full client/server handshake with SNI `name` (none when empty), offering `resume` when given.
// After the handshake the client reads what the server sent (TLS 1.3 tickets arrive then).
Handshake handshake(ServerTls& tls, const std::string& name, int version,
                    SSL_SESSION* resume = nullptr) {
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(cctx, version);
  SSL_CTX_set_max_proto_version(cctx, version);
  // No client cache: freeing a context with cached sessions marks them not resumable.
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
  SSL* client = SSL_new(cctx);
  SSL* server = SSL_new(tls.context().native_handle());
  BIO* cbio = nullptr;
  BIO* sbio = nullptr;
  REQUIRE(BIO_new_bio_pair(&cbio, 0, &sbio, 0) == 1);
  SSL_set_bio(client, cbio, cbio);
  SSL_set_bio(server, sbio, sbio);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  if (!name.empty())
    SSL_ctrl(client, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(name.c_str()));
  if (resume != nullptr)
    REQUIRE(SSL_set_session(client, resume) == 1);

  Handshake out;
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 50 && !(client_done && server_done); ++round) {
    if (!client_done) {
      int r = SSL_do_handshake(client);
      if (r == 1)
        client_done = true;
      else if (SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
        break;
    }
    if (!server_done) {
      int r = SSL_do_handshake(server);
      if (r == 1)
        server_done = true;
      else if (SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
        break;
    }
  }
  out.ok = client_done && server_done;
  if (out.ok) {
    // Let the client take in the post-handshake messages (TLS 1.3 NewSessionTicket).
    char byte = 0;
    for (int i = 0; i < 4; ++i)
      (void)SSL_read(client, &byte, 1);
    out.reused = SSL_session_reused(client) == 1;
    if (X509* peer = SSL_get1_peer_certificate(client)) {
      out.organization = organization_of(peer);
      X509_free(peer);
    }
    out.session = SSL_get1_session(client);
  }
  ERR_clear_error();
  // A connection freed without a shutdown marks its session not resumable.
  SSL_set_shutdown(client, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_set_shutdown(server, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(cctx);
  return out;
}

// A clock the test moves.
struct FakeClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
  TicketKeys::Clock fn() {
    return [this] { return now; };
  }
};

} // namespace

// ================================================================================================
// Session ticket keys
// ================================================================================================

TEST_CASE("ticket keys: the rotation interval and the ring size follow the session lifetime") {
  CHECK(TicketKeys::interval_for(1h) == 30min);
  CHECK(TicketKeys::interval_for(48h) == 12h); // never longer than 12 hours
  CHECK(TicketKeys::interval_for(1s) == 1s);   // never shorter than a second
  CHECK(TicketKeys::keep_for(1h, 30min) == 2);
  CHECK(TicketKeys::keep_for(48h, 12h) == 4);
  CHECK(TicketKeys::keep_for(25h, 12h) == 3);
  CHECK(TicketKeys::keep_for(1s, 1s) == 1);
  CHECK(TicketKeys::keep_for(std::chrono::hours(24 * 365 * 10), 12h) == TicketKeys::kMaxKeep);
}

TEST_CASE("ticket keys: the ring rotates lazily, whole intervals at a time") {
  FakeClock clock;
  std::string error;
  auto keys = TicketKeys::create(10min, 2, error, clock.fn());
  REQUIRE(keys != nullptr);
  CHECK(keys->size() == 1);
  CHECK(keys->generation() == 1);
  REQUIRE(keys->rotate());
  CHECK(keys->size() == 2);
  REQUIRE(keys->rotate());
  REQUIRE(keys->rotate());
  CHECK(keys->size() == 3); // current + keep
  CHECK(keys->generation() == 4);
}

TEST_CASE(
    "ticket keys: a ticket from before a rotation resumes; one older than the ring does not") {
  TempDir dir;
  auto cfg = tls_config(dir, {make_cert("weir", "a.test", {"a.test"})});
  cfg.session_timeout = 1h; // a key encrypts for 30 minutes, then decrypts for 60 more
  auto tls = make_listener(cfg);
  REQUIRE(tls->ticket_keys() != nullptr);
  CHECK(tls->ticket_keys()->interval() == 30min);
  CHECK(tls->ticket_keys()->keep() == 2);
  FakeClock clock;
  tls->ticket_keys()->set_clock(clock.fn());

  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    auto first = handshake(*tls, "a.test", version);
    REQUIRE(first.ok);
    CHECK_FALSE(first.reused);
    REQUIRE(first.session != nullptr);
    CHECK(SSL_SESSION_has_ticket(first.session) == 1);
    CHECK(SSL_SESSION_is_resumable(first.session) == 1);
    const uint64_t before = tls->ticket_keys()->generation();

    auto same_key = handshake(*tls, "a.test", version, first.session);
    CHECK(same_key.ok);
    CHECK(same_key.reused);

    clock.now += 31min; // one rotation: the ticket's key is now a retired one
    auto after_one = handshake(*tls, "a.test", version, first.session);
    CHECK(after_one.ok);
    CHECK(after_one.reused);
    CHECK(tls->ticket_keys()->generation() == before + 1);
    // The server renewed the ticket under the current key.
    REQUIRE(after_one.session != nullptr);
    CHECK(SSL_SESSION_has_ticket(after_one.session) == 1);

    clock.now += 30min; // two rotations: still in the ring (current + 2 retired)
    auto after_two = handshake(*tls, "a.test", version, first.session);
    CHECK(after_two.ok);
    CHECK(after_two.reused);

    clock.now += 30min; // three: the key has left the ring
    auto too_old = handshake(*tls, "a.test", version, first.session);
    CHECK(too_old.ok);
    CHECK_FALSE(too_old.reused);
    CHECK(tls->ticket_keys()->generation() == before + 3);

    // A renewed ticket from one rotation ago still resumes.
    auto renewed = handshake(*tls, "a.test", version, after_two.session);
    CHECK(renewed.ok);
    CHECK(renewed.reused);

    // Explicit rotations count the same way.
    auto fresh = handshake(*tls, "a.test", version);
    REQUIRE(fresh.ok);
    tls->ticket_keys()->rotate();
    tls->ticket_keys()->rotate();
    CHECK(handshake(*tls, "a.test", version, fresh.session).reused);
    tls->ticket_keys()->rotate();
    CHECK_FALSE(handshake(*tls, "a.test", version, fresh.session).reused);
  }
}

TEST_CASE("ticket keys: a long idle period does not make the ring grow") {
  FakeClock clock;
  std::string error;
  auto keys = TicketKeys::create(1min, 3, error, clock.fn());
  REQUIRE(keys != nullptr);
  TempDir dir;
  auto cfg = tls_config(dir, {make_cert("weir", "a.test", {"a.test"})});
  auto tls = make_listener(cfg);
  tls->ticket_keys()->set_clock(clock.fn());
  auto first = handshake(*tls, "a.test", TLS1_3_VERSION);
  REQUIRE(first.ok);
  clock.now += 24h * 30;
  auto later = handshake(*tls, "a.test", TLS1_3_VERSION, first.session);
  CHECK(later.ok);
  CHECK_FALSE(later.reused);
  CHECK(tls->ticket_keys()->size() <= tls->ticket_keys()->keep() + 1);
}

TEST_CASE("ticket keys: none when session tickets are off") {
  TempDir dir;
  auto cfg = tls_config(dir, {make_cert("weir", "a.test", {"a.test"})});
  cfg.session_tickets = false;
  auto tls = make_listener(cfg);
  CHECK(tls->ticket_keys() == nullptr);
  auto first = handshake(*tls, "a.test", TLS1_3_VERSION);
  CHECK(first.ok);
}

// ================================================================================================
// Installed certificates
// ================================================================================================

TEST_CASE("cert store: installed certificates and the SNI rules") {
  StoreGuard guard;
  TempDir dir;
  auto tls = make_listener(tls_config(dir, {make_cert("file default", "a.test", {"a.test"}),
                                            make_cert("file x", "x.test", {"x.test"}),
                                            make_cert("file y", "y.w.test", {"y.w.test"})}));
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "file x");

  auto installed_x = make_cert("installed x", "x.test", {"x.test", "x2.test"});
  auto r = CertStore::global().install(installed_x.cert, installed_x.key);
  REQUIRE(r.status == CertStore::InstallResult::Status::Ok);
  CHECK(r.listeners >= 1);
  CHECK(r.replaced == 0);
  CHECK(r.names == std::vector<std::string>{"x.test", "x2.test"});
  // An installed exact name beats a configured exact name.
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "installed x");
  CHECK(handshake(*tls, "X2.TEST.", TLS1_2_VERSION).organization == "installed x");
  // Without SNI, or for a name nothing serves: the first configured certificate.
  CHECK(handshake(*tls, "", TLS1_3_VERSION).organization == "file default");
  CHECK(handshake(*tls, "nothing.test", TLS1_3_VERSION).organization == "file default");

  // A configured exact name beats an installed wildcard; the wildcard covers one label.
  auto wild = make_cert("installed wildcard", "", {"*.w.test"});
  REQUIRE(CertStore::global().install(wild.cert, wild.key).status ==
          CertStore::InstallResult::Status::Ok);
  CHECK(handshake(*tls, "y.w.test", TLS1_3_VERSION).organization == "file y");
  CHECK(handshake(*tls, "z.w.test", TLS1_3_VERSION).organization == "installed wildcard");
  CHECK(handshake(*tls, "a.z.w.test", TLS1_3_VERSION).organization == "file default");

  // Exactly the same names: replaced. Overlapping names: the later install wins where they meet.
  auto renewed_x = make_cert("renewed x", "x.test", {"x2.test", "x.test"});
  r = CertStore::global().install(renewed_x.cert, renewed_x.key);
  REQUIRE(r.status == CertStore::InstallResult::Status::Ok);
  CHECK(r.replaced == 1);
  CHECK(CertStore::global().installed().size() == 2);
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "renewed x");
  auto only_x2 = make_cert("only x2", "x2.test", {"x2.test"});
  REQUIRE(CertStore::global().install(only_x2.cert, only_x2.key).status ==
          CertStore::InstallResult::Status::Ok);
  CHECK(handshake(*tls, "x2.test", TLS1_3_VERSION).organization == "only x2");
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "renewed x");

  // SIGHUP re-reads the files and keeps the installed certificates.
  std::vector<std::string> errors;
  REQUIRE(tls->reload(errors));
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "renewed x");

  // Removal by name: every installed certificate listing it; configured ones stay.
  CHECK(CertStore::global().remove("X2.test.") == 2);
  CHECK(handshake(*tls, "x.test", TLS1_3_VERSION).organization == "file x");
  CHECK(CertStore::global().remove("x.test") == 0);
  CHECK(CertStore::global().remove("z.w.test") == 0); // a wildcard is named by its wildcard
  CHECK(CertStore::global().remove("*.w.test") == 1);
  CHECK(handshake(*tls, "z.w.test", TLS1_3_VERSION).organization == "file default");
  CHECK(CertStore::global().installed().empty());
}

TEST_CASE("cert store: a listener made after an install serves it; a destroyed one is dropped") {
  StoreGuard guard;
  TempDir dir;
  auto cert = make_cert("installed", "n.test", {"n.test"});
  const size_t before = CertStore::global().listener_count();
  REQUIRE(CertStore::global().install(cert.cert, cert.key).status ==
          CertStore::InstallResult::Status::Ok);
  {
    auto tls = make_listener(tls_config(dir, {make_cert("file", "a.test", {"a.test"})}));
    CHECK(CertStore::global().listener_count() == before + 1);
    CHECK(handshake(*tls, "n.test", TLS1_3_VERSION).organization == "installed");
    // An open connection is not affected by a removal: its SSL holds its context.
    CHECK(CertStore::global().remove("n.test") == 1);
    CHECK(handshake(*tls, "n.test", TLS1_3_VERSION).organization == "file");
  }
  CHECK(CertStore::global().listener_count() == before);
}

TEST_CASE("cert store: what install refuses") {
  StoreGuard guard;
  auto good = make_cert("good", "g.test", {"g.test"});
  auto other = make_cert("other", "o.test", {"o.test"});
  auto mismatched = make_cert("mismatch", "m.test", {"m.test"}, true);
  auto nameless = make_cert("nameless", "", {});
  using Status = CertStore::InstallResult::Status;
  auto& store = CertStore::global();

  auto r = store.install("not a certificate", good.key);
  CHECK(r.status == Status::Invalid);
  CHECK(r.error.find("cannot read the certificate PEM") != std::string::npos);
  r = store.install(good.cert, "");
  CHECK(r.status == Status::Invalid);
  r = store.install(good.cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  CHECK(r.status == Status::Invalid);
  CHECK(r.error.find("cannot read the private key") != std::string::npos);
  r = store.install(good.cert, other.key);
  CHECK(r.status == Status::Invalid);
  CHECK(r.error.find("does not match") != std::string::npos);
  r = store.install(mismatched.cert, mismatched.key);
  CHECK(r.status == Status::Invalid);
  r = store.install(nameless.cert, nameless.key);
  CHECK(r.status == Status::Invalid);
  CHECK(r.error.find("names no host") != std::string::npos);
  r = store.install(
      good.cert + "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", good.key);
  CHECK(r.status == Status::Invalid);
  CHECK(r.error.find("intermediate certificate 1") != std::string::npos);
  CHECK(store.installed().empty());

  // A chain: the leaf first, then intermediates (not verified by the host).
  std::string error;
  auto parsed = weir::core::tls::parse_certificate(good.cert + other.cert, good.key, error);
  REQUIRE(parsed != nullptr);
  CHECK(parsed->chain.size() == 1);
  CHECK(parsed->names == std::vector<std::string>{"g.test"});
  // Only the CN: its name.
  auto cn_only = make_cert("cn only", "Cn.Test", {});
  parsed = weir::core::tls::parse_certificate(cn_only.cert, cn_only.key, error);
  REQUIRE(parsed != nullptr);
  CHECK(parsed->names == std::vector<std::string>{"cn.test"});
}

TEST_CASE("host API: install_certificate and remove_certificate") {
  StoreGuard guard;
  TempDir dir;
  auto tls = make_listener(tls_config(dir, {make_cert("file", "a.test", {"a.test"})}));
  const weir_host_api_t* api = weir::core::plugin::host_api();
  CHECK(api->abi_minor >= 1); // install/remove arrived in 1.1
  REQUIRE(api->struct_size == sizeof(weir_host_api_t));
  REQUIRE((api->install_certificate != nullptr && api->remove_certificate != nullptr));
  auto pem = make_cert("via api", "api.test", {"api.test"});
  weir_certificate_t cert{};
  cert.struct_size = sizeof(cert);
  cert.cert_pem = weir_str_t{pem.cert.data(), pem.cert.size()};
  cert.key_pem = weir_str_t{pem.key.data(), pem.key.size()};
  const weir_str_t name{"api.test", 8};

  // A worker-thread object (no control-thread timers) and config_new may not.
  weir::core::plugin::HostCtx worker("filter \"x\"", "x");
  CHECK(api->install_certificate(worker.handle(), &cert) == WEIR_ERROR_STATE);
  CHECK(api->remove_certificate(worker.handle(), name) == WEIR_ERROR_STATE);

  boost::asio::io_context control;
  weir::core::plugin::HostCtx provider("certs \"x\"", "x");
  provider.timer_context = &control;
  CHECK(api->install_certificate(provider.handle(), nullptr) == WEIR_ERROR_INVALID);
  weir_certificate_t small = cert;
  small.struct_size = 4;
  CHECK(api->install_certificate(provider.handle(), &small) == WEIR_ERROR_INVALID);
  weir_certificate_t bad = cert;
  bad.key_pem = weir_str_t{"x", 1};
  CHECK(api->install_certificate(provider.handle(), &bad) == WEIR_ERROR_INVALID);

  CHECK(api->install_certificate(provider.handle(), &cert) == WEIR_OK);
  CHECK(handshake(*tls, "api.test", TLS1_3_VERSION).organization == "via api");
  CHECK(api->remove_certificate(provider.handle(), weir_str_t{"", 0}) == WEIR_ERROR_INVALID);
  CHECK(api->remove_certificate(provider.handle(), name) == WEIR_OK);
  CHECK(api->remove_certificate(provider.handle(), name) == WEIR_ERROR_NOT_FOUND);
  CHECK(handshake(*tls, "api.test", TLS1_3_VERSION).organization == "file");
}
