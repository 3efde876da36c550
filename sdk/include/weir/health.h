/* weir plugin ABI: health check modules (WEIR_KIND_HEALTH). */
#ifndef WEIR_HEALTH_H
#define WEIR_HEALTH_H

#include "weir/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A health checker: one per upstream group that uses the module. Lives on the control thread. */
typedef struct weir_health_instance weir_health_instance_t;

/* The outcome of one proxied request (one attempt on one target), for passive checks. Delivered on
 * the control thread shortly after the attempt ended; attempts made by one worker thread arrive in
 * the order they ended. */
typedef struct weir_health_observation {
  uint32_t struct_size;
  weir_str_t target_id;
  uint32_t status;         /* HTTP status, 0 when no response was received */
  uint32_t connect_failed; /* 1 when the connection (or its TLS handshake) could not be made */
  /* ABI 1.2 (check struct_size): */
  uint32_t timed_out;   /* 1 when no response head came within the response timeout */
  uint64_t duration_ns; /* from the start of the attempt to its end */
} weir_health_observation_t;

typedef struct weir_health_vtable {
  WEIR_VTABLE_HEAD;
  /* REQUIRED. THREADING: control thread. OWNERSHIP: as for discovery instances. */
  weir_status_t (*instance_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t* config, weir_health_instance_t** out);
  /* REQUIRED. Cancel timers and free. THREADING: control thread. */
  void (*instance_destroy)(weir_health_instance_t* inst);
  /* REQUIRED. The group's current target set; report changes through api->report_health.
   * THREADING: control thread. OWNERSHIP: valid only during the call. */
  weir_status_t (*on_targets)(weir_health_instance_t* inst, const weir_target_t* targets, size_t n);
  /* OPTIONAL. Passive observations of proxied requests. THREADING: control thread. */
  void (*on_observation)(weir_health_instance_t* inst, const weir_health_observation_t* obs);
} weir_health_vtable_t;

#ifdef __cplusplus
}
#endif

#endif /* WEIR_HEALTH_H */
