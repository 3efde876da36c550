/* weir plugin ABI: certificate provider modules (WEIR_KIND_CERTS), e.g. the ACME client.
 * Declared in ABI 1.0 so that providers can be named in configuration. ABI 1.1 adds the host
 * functions that serve and withdraw certificates (api->install_certificate and
 * api->remove_certificate in weir/abi.h); the other services a provider needs (outbound HTTP,
 * storage, challenge answers) arrive in a later minor. */
#ifndef WEIR_CERTS_H
#define WEIR_CERTS_H

#include "weir/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_certs_instance weir_certs_instance_t;

typedef struct weir_certs_vtable {
  WEIR_VTABLE_HEAD;
  /* REQUIRED. THREADING: control thread. */
  weir_status_t (*instance_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t* config, weir_certs_instance_t** out);
  /* REQUIRED. THREADING: control thread. */
  void (*instance_destroy)(weir_certs_instance_t* inst);
  /* REQUIRED. Begin managing certificates. THREADING: control thread. */
  weir_status_t (*start)(weir_certs_instance_t* inst);
} weir_certs_vtable_t;

#ifdef __cplusplus
}
#endif

#endif /* WEIR_CERTS_H */
