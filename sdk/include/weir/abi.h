/* weir plugin ABI: the one contract between the weir host and a plugin shared object.
 *
 * Compiles as C11 and as C++20. Only C types cross: fixed-width integers, string views, POD structs
 * that start with `struct_size`, opaque handles, and function pointers taking a `void* user`.
 *
 * Versioning (see docs/plugin-abi.md):
 *  - WEIR_ABI_MAJOR changes when anything existing changes meaning, layout or order. The host
 * refuses a plugin built for another major.
 *  - WEIR_ABI_MINOR grows when something is appended: a field at the end of a struct, a new hook at
 *    the end of a vtable (NULL = absent), a new host function at the end of weir_host_api_t, a new
 *    enum value. A plugin built for an older minor loads; one built for a newer minor is refused.
 *  - Every struct crossing the boundary begins with `uint32_t struct_size` set by whoever fills it,
 *    so the reader knows which trailing fields exist. In an array of such structs every element
 *    has the same struct_size and it is the array's stride: index with the first element's
 *    struct_size, never with your own sizeof.
 *
 * Ownership, unless a function says otherwise: views handed to a plugin are valid only for the
 * duration of the call; everything a plugin hands to the host is copied before the call returns.
 * Whoever allocates frees: every `*_new` hook has a matching `*_destroy` hook in the same vtable.
 */
#ifndef WEIR_ABI_H
#define WEIR_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEIR_ABI_MAJOR 1
#define WEIR_ABI_MINOR 2

/* Name of the one symbol a plugin exports. Its type is weir_plugin_entry_fn. */
#define WEIR_PLUGIN_ENTRY_SYMBOL "weir_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define WEIR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define WEIR_PLUGIN_EXPORT
#endif

/* ------------------------------------------------------------------------------------------------
 * Basic types
 * --------------------------------------------------------------------------------------------- */

/* A non-owning byte string. Not NUL-terminated unless a comment says so. */
typedef struct weir_str {
  const char* data;
  size_t len;
} weir_str_t;

/* Result of most calls. Negative values are errors. */
typedef int32_t weir_status_t;
#define WEIR_OK 0
#define WEIR_ERROR (-1)        /* generic failure; details were logged */
#define WEIR_ERROR_CONFIG (-2) /* the configuration was rejected; details were reported */
#define WEIR_ERROR_NOMEM (-3)
#define WEIR_ERROR_NOT_FOUND (-4) /* a looked-up item does not exist */
#define WEIR_ERROR_INVALID (-5)   /* an argument was invalid (bad header name, bad index, ...) */
#define WEIR_ERROR_UNSUPPORTED (-6)
#define WEIR_ERROR_STATE (-7) /* the call is not allowed at this point (e.g. headers sent) */

/* Plugin kinds. A module of one kind has the vtable declared in the header of that kind. */
typedef uint32_t weir_kind_t;
#define WEIR_KIND_LB 1        /* weir/lb.h: load balancer (upstream selection) */
#define WEIR_KIND_DISCOVERY 2 /* weir/discovery.h: service discovery (publishes upstream sets) */
#define WEIR_KIND_HEALTH 3    /* weir/health.h: health checker */
#define WEIR_KIND_FILTER 4    /* weir/filter.h: request/response filter */
#define WEIR_KIND_CERTS 5     /* weir/certs.h: certificate provider (ACME) */

typedef uint32_t weir_log_level_t;
#define WEIR_LOG_TRACE 0
#define WEIR_LOG_DEBUG 1
#define WEIR_LOG_INFO 2
#define WEIR_LOG_WARN 3
#define WEIR_LOG_ERROR 4

/* ------------------------------------------------------------------------------------------------
 * Opaque handles owned by the host
 * --------------------------------------------------------------------------------------------- */

/* Identifies one plugin object to the host (for logs, timers, publishing). Valid from the `*_new`
 * call that received it until the matching `*_destroy` returns. */
typedef struct weir_host_ctx weir_host_ctx_t;

/* A node of the plugin's configuration table (a TOML value). Valid only during config_new. */
typedef struct weir_config_node weir_config_node_t;

/* One HTTP exchange (request and, once received, the response). Valid only during the hook call
 * that received it. */
typedef struct weir_http weir_http_t;

/* ------------------------------------------------------------------------------------------------
 * Configuration view
 * --------------------------------------------------------------------------------------------- */

typedef uint32_t weir_config_type_t;
#define WEIR_CONFIG_NONE 0 /* absent key */
#define WEIR_CONFIG_STRING 1
#define WEIR_CONFIG_INTEGER 2
#define WEIR_CONFIG_FLOAT 3
#define WEIR_CONFIG_BOOLEAN 4
#define WEIR_CONFIG_ARRAY 5
#define WEIR_CONFIG_TABLE 6

/* Called for each key of a table, in file order. Return non-zero to stop. */
typedef int (*weir_config_key_cb)(void* user, weir_str_t key, const weir_config_node_t* value);

/* Called for each header, in order. Return non-zero to stop. */
typedef int (*weir_header_cb)(void* user, weir_str_t name, weir_str_t value);

/* Timer callback. Runs on the thread that started the timer. */
typedef void (*weir_timer_cb)(void* user);

typedef uint64_t weir_timer_id_t;

/* Which header block of an exchange a header call acts on. */
typedef uint32_t weir_headers_which_t;
#define WEIR_HEADERS_REQUEST 0  /* the request as it will be sent upstream */
#define WEIR_HEADERS_RESPONSE 1 /* the response as it will be sent downstream */

/* One upstream target, as discovery publishes it and load balancers and health checkers see it. */
typedef struct weir_target {
  uint32_t struct_size;
  weir_str_t address; /* "ip:port", "[ipv6]:port", "host:port" or "unix:/path" */
  uint32_t weight;    /* >= 1; 0 from discovery means "use 1" */
  uint32_t healthy;   /* host view: 1 healthy, 0 unhealthy (ignored when publishing) */
  weir_str_t id;      /* stable identity; empty = the address */
  /* ABI 1.2 (check struct_size): */
  uint32_t priority; /* lower is preferred: requests go to the lowest priority that has a healthy
                        target (as SRV priorities); 0 for all = one group */
  const weir_str_t* metadata; /* 2 * metadata_count strings: key, value, ... (e.g. DNS-SD TXT
                                 keys); shown by the admin endpoint; NULL when none */
  size_t metadata_count;
} weir_target_t;

/* A certificate chain and its private key, as a certificate provider hands them to the host
 * (api->install_certificate, ABI 1.1). Both are PEM text, not NUL-terminated. */
typedef struct weir_certificate {
  uint32_t struct_size;
  weir_str_t cert_pem; /* the leaf certificate first, then its intermediates (a "full chain") */
  weir_str_t key_pem;  /* the leaf's private key, unencrypted (ECDSA, RSA or Ed25519) */
} weir_certificate_t;

/* ------------------------------------------------------------------------------------------------
 * Outbound checks and requests (ABI 1.2): the host owns the sockets, so a health checker (or a
 * certificate provider) asks the host to connect or to make an HTTP request and is called back.
 * --------------------------------------------------------------------------------------------- */

/* Identifies one outbound operation of a plugin object; 0 means "not started". */
typedef uint64_t weir_request_id_t;

typedef uint32_t weir_probe_kind_t;
#define WEIR_PROBE_TCP 0 /* open a connection (TCP, or a Unix socket), then close it */
#define WEIR_PROBE_TLS 1 /* open a connection and complete a TLS handshake, then close it */

/* A connection probe (api->probe_start). */
typedef struct weir_probe {
  uint32_t struct_size;
  weir_str_t address;     /* as weir_target_t.address: "ip:port", "[ipv6]:port", "host:port",
                             "unix:/path" */
  weir_probe_kind_t kind; /* WEIR_PROBE_TCP or WEIR_PROBE_TLS */
  uint64_t timeout_ms;    /* for the whole probe; 0 = 5000 */
} weir_probe_t;

/* Flags of weir_fetch_t. */
/* https: use the TLS settings of the upstream group the calling health checker belongs to (CA,
 * client certificate, server name, verification), as proxied requests do. */
#define WEIR_FETCH_UPSTREAM_TLS 1u
/* https: do not verify the server's certificate. */
#define WEIR_FETCH_NO_VERIFY 2u

/* An HTTP/1.1 request made by the host for a plugin (api->fetch_start). */
typedef struct weir_fetch {
  uint32_t struct_size;
  weir_str_t method;         /* empty = "GET" */
  weir_str_t url;            /* absolute "http://authority/path?query" or "https://..." */
  weir_str_t connect_to;     /* empty = the URL's host and port; else an address as for
                                weir_target_t.address to connect to instead (the Host header and
                                the TLS server name still come from the URL) */
  const weir_str_t* headers; /* 2 * header_count strings: name, value, name, value, ... */
  size_t header_count;       /* extra request headers; Host, Content-Length, Transfer-Encoding
                                and Connection are the host's and ignored here; a User-Agent
                                replaces the host's ("weir") */
  weir_str_t body;           /* request body; sent with Content-Length when non-empty */
  uint64_t timeout_ms;       /* for the whole exchange, connect included; 0 = 10000 */
  uint64_t max_body;         /* response body bytes kept; the rest is read and dropped;
                                0 = 65536 */
  uint32_t flags;            /* WEIR_FETCH_* */
  weir_str_t ca_file;        /* https: PEM file of trusted roots; empty = the system's roots */
} weir_fetch_t;

/* The outcome of a probe. */
typedef struct weir_probe_result {
  uint32_t struct_size;
  weir_status_t status; /* WEIR_OK: connected (and handshake done); else WEIR_ERROR */
  weir_str_t error;     /* why it failed: exactly "timed out" when the timeout ran out, else a
                           reason like "Connection refused" or a TLS error; empty on success */
  uint64_t duration_ns;
} weir_probe_result_t;

/* The outcome of a fetch. */
typedef struct weir_fetch_result {
  uint32_t struct_size;
  weir_status_t status;      /* WEIR_OK: a complete response was received; else WEIR_ERROR */
  weir_str_t error;          /* why it failed: exactly "timed out" when the timeout ran out,
                                else a reason; empty on success */
  uint32_t http_status;      /* the final status (1xx skipped); 0 without a response */
  const weir_str_t* headers; /* 2 * header_count strings: name, value, ... as received */
  size_t header_count;
  weir_str_t body;    /* at most max_body bytes of the (de-chunked) body */
  uint32_t truncated; /* 1 when the body was longer than max_body */
  uint64_t duration_ns;
} weir_fetch_result_t;

/* Completion callbacks. OWNERSHIP: `result` and every view in it are valid only during the call.
 * THREADING: the control thread, never from inside the *_start call that began the operation. */
typedef void (*weir_probe_cb)(void* user, const weir_probe_result_t* result);
typedef void (*weir_fetch_cb)(void* user, const weir_fetch_result_t* result);

/* DNS record types a plugin may query (api->dns_query, ABI 1.2); the values are the RFC 1035 /
 * RFC 3596 / RFC 2782 type codes. */
typedef uint32_t weir_dns_type_t;
#define WEIR_DNS_A 1
#define WEIR_DNS_PTR 12
#define WEIR_DNS_TXT 16
#define WEIR_DNS_AAAA 28
#define WEIR_DNS_SRV 33

/* One answer record. Fields not used by the record's type are empty / 0. */
typedef struct weir_dns_record {
  uint32_t struct_size;
  weir_dns_type_t type;
  uint32_t ttl;          /* seconds, as received */
  weir_str_t name;       /* the owner name, lowercase, without the trailing dot */
  weir_str_t address;    /* A, AAAA: the address as text ("10.0.0.1", "2001:db8::1") */
  weir_str_t target;     /* SRV: the target host; PTR: the name pointed to (lowercase, no dot) */
  uint16_t priority;     /* SRV */
  uint16_t weight;       /* SRV */
  uint16_t port;         /* SRV */
  const weir_str_t* txt; /* TXT: the record's character-strings, in order */
  size_t txt_count;
} weir_dns_record_t;

/* The outcome of a DNS query. */
typedef struct weir_dns_result {
  uint32_t struct_size;
  weir_status_t status; /* WEIR_OK: an answer (`count` may be 0: the name has no record of this
                           type); WEIR_ERROR_NOT_FOUND: the name does not exist (NXDOMAIN);
                           WEIR_ERROR: no usable answer (SERVFAIL, refused, timed out, malformed) */
  weir_str_t error;     /* why, when status is not WEIR_OK ("timed out", "server failure", ...) */
  const weir_dns_record_t* records; /* the answer's records of the asked type (CNAMEs followed),
                                       in the order received; `struct_size` of the first is the
                                       array's stride */
  size_t count;
  uint32_t negative_ttl; /* NOT_FOUND or no records: how long the server says to remember it
                            (the SOA minimum), 0 when unknown */
} weir_dns_result_t;

typedef void (*weir_dns_cb)(void* user, const weir_dns_result_t* result);

/* ------------------------------------------------------------------------------------------------
 * The host API table. One table per process, handed to every hook that needs it.
 * THREADING: every function may be called from any thread that is currently running a hook of the
 * plugin, unless it says otherwise.
 * --------------------------------------------------------------------------------------------- */
typedef struct weir_host_api {
  uint32_t struct_size;
  uint16_t abi_major; /* the host's ABI version */
  uint16_t abi_minor;

  /* --- logging ------------------------------------------------------------------------------ */
  /* Log a message under the plugin's name. `msg` is copied. */
  void (*log)(weir_host_ctx_t* ctx, weir_log_level_t level, weir_str_t msg);
  /* Non-zero when `level` would be logged, so a plugin can skip formatting. */
  int (*log_enabled)(weir_host_ctx_t* ctx, weir_log_level_t level);

  /* --- configuration (valid only during config_new) ------------------------------------------- */
  weir_config_type_t (*config_type)(const weir_config_node_t* node);
  /* Child of a table by key; NULL when absent or when node is not a table. */
  const weir_config_node_t* (*config_get)(const weir_config_node_t* node, weir_str_t key);
  /* Element of an array; NULL when out of range. */
  const weir_config_node_t* (*config_at)(const weir_config_node_t* node, size_t index);
  /* Number of elements of an array or keys of a table; 0 otherwise. */
  size_t (*config_size)(const weir_config_node_t* node);
  /* Visit the keys of a table in file order. */
  void (*config_each)(const weir_config_node_t* node, weir_config_key_cb cb, void* user);
  /* Scalar readers. Return WEIR_ERROR_INVALID when the node has another type. */
  weir_status_t (*config_string)(const weir_config_node_t* node, weir_str_t* out);
  weir_status_t (*config_int)(const weir_config_node_t* node, int64_t* out);
  weir_status_t (*config_float)(const weir_config_node_t* node, double* out); /* ints convert */
  weir_status_t (*config_bool)(const weir_config_node_t* node, int* out);
  /* Parse a duration string ("250ms", "5s", "1h") or an integer of milliseconds. */
  weir_status_t (*config_duration_ms)(const weir_config_node_t* node, uint64_t* out);
  /* Report a configuration error at `node` (its file:line:column and key path are added by the
   * host). Any reported error fails the configuration even if config_new returns WEIR_OK. */
  void (*config_error)(weir_host_ctx_t* ctx, const weir_config_node_t* node, weir_str_t msg);
  /* Key path of a node, e.g. "upstreams.app.lb.targets[1]". */
  weir_str_t (*config_path)(const weir_config_node_t* node);

  /* --- timers (control-thread plugins: discovery, health, certs) ----------------------------- */
  /* Run `cb(user)` once after `delay_ms` on the calling plugin's thread. Returns 0 on failure. */
  weir_timer_id_t (*timer_start)(weir_host_ctx_t* ctx, uint64_t delay_ms, weir_timer_cb cb,
                                 void* user);
  /* Cancel a pending timer; its callback will not run. Unknown or fired ids are ignored. */
  void (*timer_cancel)(weir_host_ctx_t* ctx, weir_timer_id_t id);
  /* Monotonic clock in nanoseconds. */
  uint64_t (*now_ns)(void);

  /* --- discovery and health ------------------------------------------------------------------ */
  /* Publish the complete upstream set of the discovery instance `ctx`. The array is copied; it
   * replaces the previous set. THREADING: control thread only. */
  weir_status_t (*publish_targets)(weir_host_ctx_t* ctx, const weir_target_t* targets, size_t n);
  /* Report the health of a target (by id or address) of the health instance `ctx`. `reason` is
   * logged on a transition. THREADING: control thread only. */
  weir_status_t (*report_health)(weir_host_ctx_t* ctx, weir_str_t target_id, int healthy,
                                 weir_str_t reason);

  /* --- per-exchange accessors (filters and load balancers, worker threads) -------------------- */
  weir_str_t (*http_method)(weir_http_t* http);
  weir_str_t (*http_path)(weir_http_t* http);  /* normalized path, without the query */
  weir_str_t (*http_query)(weir_http_t* http); /* without the '?'; empty when none */
  weir_str_t (*http_host)(weir_http_t* http);  /* Host header, as received */
  /* Client address ("ip" without the port) and port. */
  weir_str_t (*http_client_ip)(weir_http_t* http);
  uint16_t (*http_client_port)(weir_http_t* http);
  /* Response status; 0 before a response exists. */
  uint32_t (*http_status)(weir_http_t* http);
  /* Value of the `index`-th header named `name` (case-insensitive). WEIR_ERROR_NOT_FOUND when
   * absent. The view is valid until the headers are next modified or the hook returns. */
  weir_status_t (*header_get)(weir_http_t* http, weir_headers_which_t which, weir_str_t name,
                              size_t index, weir_str_t* out);
  /* Replace every header named `name` with one header (upsert). */
  weir_status_t (*header_set)(weir_http_t* http, weir_headers_which_t which, weir_str_t name,
                              weir_str_t value);
  /* Append a header, keeping existing ones of the same name. */
  weir_status_t (*header_add)(weir_http_t* http, weir_headers_which_t which, weir_str_t name,
                              weir_str_t value);
  /* Remove every header named `name`. WEIR_OK even when none existed. */
  weir_status_t (*header_remove)(weir_http_t* http, weir_headers_which_t which, weir_str_t name);
  /* Visit headers in order. Do not modify headers from inside the callback. */
  void (*header_each)(weir_http_t* http, weir_headers_which_t which, weir_header_cb cb, void* user);
  /* Answer the request locally with `status`, `content_type` (may be empty) and `body` (copied).
   * Only from request-stage hooks; the hook must then return WEIR_FILTER_RESPONDED. */
  weir_status_t (*http_respond)(weir_http_t* http, uint32_t status, weir_str_t content_type,
                                weir_str_t body);

  /* --- certificates (ABI 1.1: check api->abi_minor >= 1 first) ------------------------------- */
  /* Serve `cert` on every TLS listener from the next handshake on. The host parses the chain and
   * the key, checks that the key belongs to the leaf, and takes the names the certificate serves
   * from its subjectAltName DNS entries (or its subject CN when it has none). A certificate
   * installed earlier with exactly the same set of names is replaced. SNI choice: an exact name
   * beats a wildcard; for the same kind of match an installed certificate beats one from the
   * configuration, and a later install beats an earlier one; clients without SNI (or with a name
   * nothing serves) keep getting the listener's first configured certificate. Connections already
   * open are not affected. Installed certificates live in memory until removed or until weir
   * exits, and survive the SIGHUP reload of the configured certificate files.
   * Returns WEIR_OK; WEIR_ERROR_INVALID for a NULL or too small `cert`, unreadable PEM, a key that
   * does not match the certificate or a certificate without names (the host logs why, under the
   * plugin's name); WEIR_ERROR_STATE when called from a worker-thread object (load balancer,
   * filter) or during config_new; WEIR_ERROR when a listener cannot use it (then none does);
   * WEIR_ERROR_NOMEM.
   * OWNERSHIP: `cert` and the PEM text are copied (parsed) before the call returns.
   * THREADING: control thread only, from an instance of a control-thread kind. Meant for
   * certificate providers (WEIR_KIND_CERTS, e.g. an ACME client). May block briefly while every
   * listener builds its context for the certificate. */
  weir_status_t (*install_certificate)(weir_host_ctx_t* ctx, const weir_certificate_t* cert);
  /* Stop serving the installed certificate(s) whose names include `name` (compared without
   * regard to case, a trailing dot ignored; a wildcard certificate is named by its wildcard,
   * "*.example.test"). Certificates from the configuration are never removed: names they serve
   * fall back to them from the next handshake on. Connections already open are not affected.
   * Returns WEIR_OK, WEIR_ERROR_NOT_FOUND when no installed certificate lists `name`,
   * WEIR_ERROR_INVALID for an empty name, WEIR_ERROR_STATE as for install_certificate.
   * OWNERSHIP: `name` is valid only during the call. THREADING: as install_certificate. */
  weir_status_t (*remove_certificate)(weir_host_ctx_t* ctx, weir_str_t name);

  /* --- outbound checks and requests (ABI 1.2: check api->abi_minor >= 2 first) ---------------- */
  /* Start a connection probe; `cb(user, result)` runs exactly once when it ends, unless cancelled.
   * A TLS probe uses the TLS settings of the upstream group the calling object belongs to (a
   * group without `tls` gets the system's roots and full verification, the server name being the
   * host part of the address). Returns the operation's id, or 0 when it could not start
   * (a NULL or too small `probe`, an empty address, a caller that is not a control-thread object;
   * the host logs why) and then `cb` never runs.
   * OWNERSHIP: `probe` is copied before the call returns. THREADING: control thread only, from an
   * instance of a control-thread kind (health, discovery, certs). Every operation still running
   * when the instance is destroyed is cancelled. */
  weir_request_id_t (*probe_start)(weir_host_ctx_t* ctx, const weir_probe_t* probe,
                                   weir_probe_cb cb, void* user);
  /* Start an HTTP/1.1 request (one connection per request, closed afterwards); `cb` runs exactly
   * once when it ends, unless cancelled. Returns the id, or 0 as for probe_start (also for a URL
   * that is not absolute http or https, a bad header, or WEIR_FETCH_UPSTREAM_TLS from an object
   * that belongs to no upstream group). OWNERSHIP and THREADING: as for probe_start. */
  weir_request_id_t (*fetch_start)(weir_host_ctx_t* ctx, const weir_fetch_t* fetch,
                                   weir_fetch_cb cb, void* user);
  /* Cancel a running probe or fetch: its callback will not run. Unknown or finished ids are
   * ignored. THREADING: control thread only. */
  void (*request_cancel)(weir_host_ctx_t* ctx, weir_request_id_t id);
  /* Ask the resolvers configured in [dns] (default: the system's, from /etc/resolv.conf) for the
   * records of `type` at `name`: a domain name in presentation format (RFC 1035 section 5.1:
   * "\." and "\DDD" escape a dot or any byte inside a label, as DNS-SD instance names need; a
   * trailing dot is allowed). Names the host returns (record owners, SRV and PTR targets) are in
   * that format, lowercased, without the trailing dot, and can be queried as they are; the root
   * (an SRV target of ".", "no such service") is returned as an empty string. `cb` runs exactly
   * once when the answer (or the failure, after the configured timeout and tries) is known, unless
   * the query is cancelled with request_cancel. Returns the id, or 0 when it could not start (an
   * empty name, one longer than 1024 bytes or with control characters, an unsupported type, a
   * caller that is not a control-thread object; the host logs why). Answers are not cached by the
   * host: every call asks the servers. OWNERSHIP: `name` is copied. THREADING: as for probe_start.
   */
  weir_request_id_t (*dns_query)(weir_host_ctx_t* ctx, weir_str_t name, weir_dns_type_t type,
                                 weir_dns_cb cb, void* user);
} weir_host_api_t;

/* ------------------------------------------------------------------------------------------------
 * Plugin descriptor
 * --------------------------------------------------------------------------------------------- */

/* One module: a named implementation of one kind. `vtable` points to the kind's vtable struct
 * (e.g. weir_lb_vtable_t), which starts with struct_size. */
typedef struct weir_module {
  uint32_t struct_size;
  weir_kind_t kind;
  const char* name; /* NUL-terminated, [a-z0-9-]+, unique per kind in one process */
  const void* vtable;
} weir_module_t;

/* Returned by the entry point. Must stay valid while the library is loaded (static storage). */
typedef struct weir_plugin_descriptor {
  uint32_t struct_size;
  uint16_t abi_major;  /* WEIR_ABI_MAJOR the plugin was built against */
  uint16_t abi_minor;  /* WEIR_ABI_MINOR the plugin was built against */
  const char* name;    /* NUL-terminated plugin (library) name */
  const char* version; /* NUL-terminated free-form version */
  const weir_module_t* modules;
  size_t module_count;
} weir_plugin_descriptor_t;

/* The entry point, exported as WEIR_PLUGIN_ENTRY_SYMBOL. Must not fail, allocate or have side
 * effects: the host may call it to inspect a plugin it then refuses. */
typedef const weir_plugin_descriptor_t* (*weir_plugin_entry_fn)(void);

/* Declare the entry point in a plugin source file:
 *   WEIR_PLUGIN_ENTRY { return &my_descriptor; } */
#ifdef __cplusplus
#define WEIR_PLUGIN_ENTRY                                                                          \
  extern "C" WEIR_PLUGIN_EXPORT const weir_plugin_descriptor_t* weir_plugin_entry(void)
#else
#define WEIR_PLUGIN_ENTRY WEIR_PLUGIN_EXPORT const weir_plugin_descriptor_t* weir_plugin_entry(void)
#endif

/* Plugin-side configuration object made by config_new; opaque to the host. */
typedef struct weir_plugin_config weir_plugin_config_t;

/* Common head of every kind's vtable.
 *
 * config_new   REQUIRED. Validate `cfg` (the module's table, including its `use` key) and build a
 *              configuration object. Report each problem through api->config_error and return
 *              WEIR_ERROR_CONFIG. THREADING: control thread. OWNERSHIP: *out belongs to the plugin
 *              and is freed by config_destroy; `cfg` is valid only during the call.
 * config_destroy REQUIRED. Free a configuration object. Called after every instance made from it
 *              has been destroyed. THREADING: control thread. */
#define WEIR_VTABLE_HEAD                                                                           \
  uint32_t struct_size;                                                                            \
  weir_status_t (*config_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,                    \
                              const weir_config_node_t* cfg, weir_plugin_config_t** out);          \
  void (*config_destroy)(weir_plugin_config_t * config)

#ifdef __cplusplus
}
#endif

#endif /* WEIR_ABI_H */
