/* weir plugin ABI: load balancer modules (WEIR_KIND_LB). */
#ifndef WEIR_LB_H
#define WEIR_LB_H

#include "weir/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A load balancer object. One per worker thread per upstream group, so it needs no locking. */
typedef struct weir_lb_instance weir_lb_instance_t;

/* What the host asks for when it picks an upstream for one attempt of one request. */
typedef struct weir_lb_pick {
  uint32_t struct_size;
  weir_http_t* http;       /* the exchange, for hash keys; NULL when there is no request */
  uint32_t attempt;        /* 0 for the first try, then 1, 2, ... for retries */
  const uint8_t* excluded; /* `n` flags, 1 = already tried for this request; NULL = none */
  size_t n;                /* number of targets in the current set */
} weir_lb_pick_t;

typedef struct weir_lb_vtable {
  WEIR_VTABLE_HEAD;
  /* REQUIRED. Make the instance of one worker. THREADING: the worker's thread. OWNERSHIP: *out is
   * the plugin's, freed by instance_destroy; `config` outlives the instance. */
  weir_status_t (*instance_new)(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_plugin_config_t* config, weir_lb_instance_t** out);
  /* REQUIRED. THREADING: the worker's thread. */
  void (*instance_destroy)(weir_lb_instance_t* inst);
  /* REQUIRED. The complete new target set (after discovery or a health change). Indices used by
   * `pick` refer to this array until the next call. THREADING: the worker's thread. OWNERSHIP: the
   * array and its strings are valid only during the call: copy what you keep. */
  weir_status_t (*on_targets)(weir_lb_instance_t* inst, const weir_target_t* targets, size_t n);
  /* REQUIRED. Choose a target: store its index in *out and return WEIR_OK, or return
   * WEIR_ERROR_NOT_FOUND when no target can be used. Skip unhealthy and excluded targets when
   * another exists. THREADING: the worker's thread. */
  weir_status_t (*pick)(weir_lb_instance_t* inst, const weir_lb_pick_t* req, size_t* out);
  /* OPTIONAL. A request was sent to target `index`. THREADING: the worker's thread. */
  void (*on_start)(weir_lb_instance_t* inst, size_t index);
  /* OPTIONAL. A request to target `index` ended with `status` (0 = no response) after
   * `duration_ns`. THREADING: the worker's thread. */
  void (*on_done)(weir_lb_instance_t* inst, size_t index, uint32_t status, uint64_t duration_ns);
} weir_lb_vtable_t;

#ifdef __cplusplus
}
#endif

#endif /* WEIR_LB_H */
