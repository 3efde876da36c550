/* weir plugin ABI: request/response filter modules (WEIR_KIND_FILTER). */
#ifndef WEIR_FILTER_H
#define WEIR_FILTER_H

#include "weir/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A filter object: one per worker thread per place the filter is configured. */
typedef struct weir_filter_instance weir_filter_instance_t;

typedef int32_t weir_filter_result_t;
#define WEIR_FILTER_CONTINUE 0  /* go on with the next filter */
#define WEIR_FILTER_RESPONDED 1 /* the hook answered through api->http_respond; stop the chain */
#define WEIR_FILTER_FAILED (-1) /* the hook failed; the host answers 500 and logs it */

typedef struct weir_filter_vtable {
  WEIR_VTABLE_HEAD;
  /* REQUIRED. THREADING: the worker's thread. OWNERSHIP: *out is the plugin's, freed by
   * instance_destroy; `config` outlives the instance. */
  weir_status_t (*instance_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t* config, weir_filter_instance_t** out);
  /* REQUIRED. THREADING: the worker's thread. */
  void (*instance_destroy)(weir_filter_instance_t* inst);
  /* OPTIONAL. Request headers arrived and a route was chosen; request headers may be edited
   * (WEIR_HEADERS_REQUEST) or the request answered locally. THREADING: the worker's thread. */
  weir_filter_result_t (*on_request)(weir_filter_instance_t* inst, weir_http_t* http);
  /* OPTIONAL. Response headers are about to go downstream (from the upstream or a local answer);
   * they may be edited (WEIR_HEADERS_RESPONSE). THREADING: the worker's thread. */
  weir_filter_result_t (*on_response)(weir_filter_instance_t* inst, weir_http_t* http);
} weir_filter_vtable_t;

#ifdef __cplusplus
}
#endif

#endif /* WEIR_FILTER_H */
