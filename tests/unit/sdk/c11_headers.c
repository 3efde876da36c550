/* Every C header of the SDK must compile as strict C11 (-std=c11 -Wall -Wextra -Wpedantic
 * -Werror), in any order, alone or together, and a plugin must be writable in plain C. */
/* Kind headers first: each must be self-contained. */
/* clang-format off */
#include "weir/certs.h"
#include "weir/filter.h"
#include "weir/health.h"
#include "weir/lb.h"
#include "weir/discovery.h"
#include "weir/abi.h"
#include "weir/abi.h" /* include guards */
/* clang-format on */

#include <stddef.h>

/* The layout promises of the ABI, checked at compile time. */
_Static_assert(offsetof(weir_lb_vtable_t, struct_size) == 0, "vtables start with struct_size");
_Static_assert(offsetof(weir_filter_vtable_t, struct_size) == 0, "vtables start with struct_size");
_Static_assert(offsetof(weir_health_vtable_t, struct_size) == 0, "vtables start with struct_size");
_Static_assert(offsetof(weir_discovery_vtable_t, struct_size) == 0,
               "vtables start with struct_size");
_Static_assert(offsetof(weir_certs_vtable_t, struct_size) == 0, "vtables start with struct_size");
_Static_assert(offsetof(weir_host_api_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_target_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_lb_pick_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_health_observation_t, struct_size) == 0, "structs start with size");
_Static_assert(offsetof(weir_module_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_plugin_descriptor_t, struct_size) == 0, "structs start with size");
_Static_assert(offsetof(weir_certificate_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(WEIR_ABI_MAJOR >= 1 && WEIR_ABI_MINOR >= 1, "ABI version macros");
/* ABI 1.1 appended the certificate functions after the last 1.0 function, in this order. */
_Static_assert(offsetof(weir_host_api_t, install_certificate) >
                   offsetof(weir_host_api_t, http_respond),
               "1.1 host functions come after the 1.0 ones");
_Static_assert(offsetof(weir_host_api_t, remove_certificate) >
                   offsetof(weir_host_api_t, install_certificate),
               "remove_certificate follows install_certificate");
/* ABI 1.2 appended the outbound check and request functions after them, in this order. */
_Static_assert(offsetof(weir_host_api_t, probe_start) ==
                   offsetof(weir_host_api_t, remove_certificate) + sizeof(void (*)(void)),
               "1.2 host functions come right after the 1.1 ones");
_Static_assert(offsetof(weir_host_api_t, fetch_start) > offsetof(weir_host_api_t, probe_start),
               "fetch_start follows probe_start");
_Static_assert(offsetof(weir_host_api_t, request_cancel) ==
                   offsetof(weir_host_api_t, fetch_start) + sizeof(void (*)(void)),
               "request_cancel follows fetch_start");
_Static_assert(offsetof(weir_host_api_t, dns_query) ==
                   offsetof(weir_host_api_t, request_cancel) + sizeof(void (*)(void)),
               "dns_query follows request_cancel");
_Static_assert(sizeof(weir_host_api_t) ==
                   offsetof(weir_host_api_t, dns_query) + sizeof(void (*)(void)),
               "dns_query is the last host function");
_Static_assert(offsetof(weir_probe_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_fetch_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_probe_result_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_fetch_result_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_dns_record_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(offsetof(weir_dns_result_t, struct_size) == 0, "structs start with struct_size");
_Static_assert(WEIR_DNS_A == 1 && WEIR_DNS_PTR == 12 && WEIR_DNS_TXT == 16 && WEIR_DNS_AAAA == 28 &&
                   WEIR_DNS_SRV == 33,
               "DNS types are the RFC type codes");
/* The target grew at its end (1.2); its 1.0 fields did not move. */
_Static_assert(offsetof(weir_target_t, priority) >=
                   offsetof(weir_target_t, id) + sizeof(weir_str_t),
               "1.2 target fields come after the 1.0 ones");
_Static_assert(offsetof(weir_target_t, metadata) > offsetof(weir_target_t, priority),
               "metadata follows priority");
_Static_assert(sizeof(weir_target_t) == offsetof(weir_target_t, metadata_count) + sizeof(size_t),
               "metadata_count is the last target field");
/* The observation grew at its end (1.2); its 1.0 fields did not move. */
_Static_assert(offsetof(weir_health_observation_t, timed_out) >
                   offsetof(weir_health_observation_t, connect_failed),
               "1.2 observation fields come after the 1.0 ones");

/* A certificate provider in C calls the 1.1 functions only when the host has them. */
weir_status_t c_install(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t chain,
                        weir_str_t key);
weir_status_t c_install(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t chain,
                        weir_str_t key) {
  weir_certificate_t cert;
  if (api->struct_size <
          offsetof(weir_host_api_t, remove_certificate) + sizeof(api->remove_certificate) ||
      api->install_certificate == NULL)
    return WEIR_ERROR_UNSUPPORTED;
  cert.struct_size = sizeof cert;
  cert.cert_pem = chain;
  cert.key_pem = key;
  return api->install_certificate(ctx, &cert);
}

/* A health checker in C starts a TCP probe only when the host has the 1.2 functions. */
static void c_probe_done(void* user, const weir_probe_result_t* result) {
  *(int*)user = result != NULL && result->status == WEIR_OK;
}
weir_request_id_t c_probe(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t address,
                          int* healthy);
weir_request_id_t c_probe(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t address,
                          int* healthy) {
  weir_probe_t probe;
  if (api->struct_size < offsetof(weir_host_api_t, request_cancel) + sizeof(api->request_cancel) ||
      api->probe_start == NULL)
    return 0;
  probe.struct_size = sizeof probe;
  probe.address = address;
  probe.kind = WEIR_PROBE_TCP;
  probe.timeout_ms = 2000;
  return api->probe_start(ctx, &probe, c_probe_done, healthy);
}

/* A discovery plugin in C asks for SRV records only when the host has dns_query (1.2). */
static void c_dns_done(void* user, const weir_dns_result_t* result) {
  size_t i;
  const unsigned char* bytes;
  *(size_t*)user = 0;
  if (result == NULL || result->status != WEIR_OK || result->records == NULL)
    return;
  bytes = (const unsigned char*)result->records;
  for (i = 0; i < result->count; ++i) {
    const weir_dns_record_t* r =
        (const weir_dns_record_t*)(const void*)(bytes + i * result->records[0].struct_size);
    if (r->type == WEIR_DNS_SRV && r->port != 0)
      ++*(size_t*)user;
  }
}
weir_request_id_t c_srv(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t name,
                        size_t* count);
weir_request_id_t c_srv(const weir_host_api_t* api, weir_host_ctx_t* ctx, weir_str_t name,
                        size_t* count) {
  if (api->struct_size < offsetof(weir_host_api_t, dns_query) + sizeof(api->dns_query) ||
      api->dns_query == NULL)
    return 0;
  return api->dns_query(ctx, name, WEIR_DNS_SRV, c_dns_done, count);
}

/* A complete filter plugin in C. */
static int config_token;
static int instance_token;

static weir_status_t c_config_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                  const weir_config_node_t* cfg, weir_plugin_config_t** out) {
  weir_str_t use;
  const weir_config_node_t* node = api->config_get(cfg, (weir_str_t){"use", 3});
  if (node == NULL || api->config_string(node, &use) != WEIR_OK) {
    api->config_error(ctx, cfg, (weir_str_t){"no use key", 10});
    return WEIR_ERROR_CONFIG;
  }
  *out = (weir_plugin_config_t*)&config_token;
  return WEIR_OK;
}

static void c_config_destroy(weir_plugin_config_t* config) {
  (void)config;
}

static weir_status_t c_instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                    const weir_plugin_config_t* config,
                                    weir_filter_instance_t** out) {
  (void)api;
  (void)ctx;
  (void)config;
  *out = (weir_filter_instance_t*)&instance_token;
  return WEIR_OK;
}

static void c_instance_destroy(weir_filter_instance_t* inst) {
  (void)inst;
}

static weir_filter_result_t c_on_response(weir_filter_instance_t* inst, weir_http_t* http) {
  (void)inst;
  (void)http;
  return WEIR_FILTER_CONTINUE;
}

static const weir_filter_vtable_t c_filter = {
    .struct_size = sizeof(weir_filter_vtable_t),
    .config_new = c_config_new,
    .config_destroy = c_config_destroy,
    .instance_new = c_instance_new,
    .instance_destroy = c_instance_destroy,
    .on_request = NULL,
    .on_response = c_on_response,
};

static const weir_module_t c_modules[] = {
    {sizeof(weir_module_t), WEIR_KIND_FILTER, "c-filter", &c_filter},
};

static const weir_plugin_descriptor_t c_descriptor = {sizeof(weir_plugin_descriptor_t),
                                                      WEIR_ABI_MAJOR,
                                                      WEIR_ABI_MINOR,
                                                      "c-plugin",
                                                      "1.0",
                                                      c_modules,
                                                      sizeof c_modules / sizeof c_modules[0]};

WEIR_PLUGIN_ENTRY;
WEIR_PLUGIN_ENTRY {
  return &c_descriptor;
}

/* The entry's type matches weir_plugin_entry_fn. */
static const weir_plugin_entry_fn c_entry_check = weir_plugin_entry;
const weir_plugin_entry_fn* weir_c11_check_anchor(void);
const weir_plugin_entry_fn* weir_c11_check_anchor(void) {
  return &c_entry_check;
}
