/* weir plugin ABI: service discovery modules (WEIR_KIND_DISCOVERY). */
#ifndef WEIR_DISCOVERY_H
#define WEIR_DISCOVERY_H

#include "weir/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A discovery object: one per upstream group that uses the module. Lives on the control thread. */
typedef struct weir_discovery_instance weir_discovery_instance_t;

typedef struct weir_discovery_vtable {
  WEIR_VTABLE_HEAD;
  /* REQUIRED. THREADING: control thread. OWNERSHIP: *out is the plugin's, freed by
   * instance_destroy; `config` and `ctx` outlive the instance. */
  weir_status_t (*instance_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t* config,
                                weir_discovery_instance_t** out);
  /* REQUIRED. Cancel timers and free. Called once; no callback of the instance runs afterwards.
   * THREADING: control thread. */
  void (*instance_destroy)(weir_discovery_instance_t* inst);
  /* REQUIRED. Begin discovery: publish the first set through api->publish_targets (now, or later
   * from a timer) and keep it current. THREADING: control thread. */
  weir_status_t (*start)(weir_discovery_instance_t* inst);
} weir_discovery_vtable_t;

#ifdef __cplusplus
}
#endif

#endif /* WEIR_DISCOVERY_H */
