/* A complete, do-nothing filter vtable in plain C, shared by the broken plugins whose only defect
 * is elsewhere (the descriptor or the entry symbol). */
#ifndef WEIR_BROKEN_MINIMAL_FILTER_H
#define WEIR_BROKEN_MINIMAL_FILTER_H

#include "weir/filter.h"

#include <stdlib.h>

static int minimal_config_token;
static int minimal_instance_token;

static weir_status_t minimal_config_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                        const weir_config_node_t* cfg, weir_plugin_config_t** out) {
  (void)api;
  (void)ctx;
  (void)cfg;
  *out = (weir_plugin_config_t*)&minimal_config_token;
  return WEIR_OK;
}

static void minimal_config_destroy(weir_plugin_config_t* config) {
  (void)config;
}

static weir_status_t minimal_instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                          const weir_plugin_config_t* config,
                                          weir_filter_instance_t** out) {
  (void)api;
  (void)ctx;
  (void)config;
  *out = (weir_filter_instance_t*)&minimal_instance_token;
  return WEIR_OK;
}

static void minimal_instance_destroy(weir_filter_instance_t* inst) {
  (void)inst;
}

static weir_filter_result_t minimal_on_request(weir_filter_instance_t* inst, weir_http_t* http) {
  (void)inst;
  (void)http;
  return WEIR_FILTER_CONTINUE;
}

static const weir_filter_vtable_t minimal_filter_vtable = {
    .struct_size = sizeof(weir_filter_vtable_t),
    .config_new = minimal_config_new,
    .config_destroy = minimal_config_destroy,
    .instance_new = minimal_instance_new,
    .instance_destroy = minimal_instance_destroy,
    .on_request = minimal_on_request,
    .on_response = NULL,
};

#endif
