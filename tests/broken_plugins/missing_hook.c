/* Broken plugin `missing-hook`: an LB module `missing-hook` whose required `pick` hook is NULL.
 * Expected: weir refuses the module (required hook `pick` missing) at load time, not at the first
 * request. */
#include "weir/lb.h"

#include <stddef.h>

static int config_token;
static int instance_token;

static weir_status_t config_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                const weir_config_node_t* cfg, weir_plugin_config_t** out) {
  (void)api;
  (void)ctx;
  (void)cfg;
  *out = (weir_plugin_config_t*)&config_token;
  return WEIR_OK;
}

static void config_destroy(weir_plugin_config_t* config) {
  (void)config;
}

static weir_status_t instance_new(const weir_host_api_t* api, weir_host_ctx_t* ctx,
                                  const weir_plugin_config_t* config, weir_lb_instance_t** out) {
  (void)api;
  (void)ctx;
  (void)config;
  *out = (weir_lb_instance_t*)&instance_token;
  return WEIR_OK;
}

static void instance_destroy(weir_lb_instance_t* inst) {
  (void)inst;
}

static weir_status_t on_targets(weir_lb_instance_t* inst, const weir_target_t* targets, size_t n) {
  (void)inst;
  (void)targets;
  (void)n;
  return WEIR_OK;
}

static const weir_lb_vtable_t vtable = {
    .struct_size = sizeof(weir_lb_vtable_t),
    .config_new = config_new,
    .config_destroy = config_destroy,
    .instance_new = instance_new,
    .instance_destroy = instance_destroy,
    .on_targets = on_targets,
    .pick = NULL, /* the defect */
    .on_start = NULL,
    .on_done = NULL,
};

static const weir_module_t modules[] = {
    {sizeof(weir_module_t), WEIR_KIND_LB, "missing-hook", &vtable},
};

static const weir_plugin_descriptor_t descriptor = {sizeof(weir_plugin_descriptor_t),
                                                    WEIR_ABI_MAJOR,
                                                    WEIR_ABI_MINOR,
                                                    "broken-missing-hook",
                                                    "0.0.0",
                                                    modules,
                                                    1};

WEIR_PLUGIN_ENTRY;
WEIR_PLUGIN_ENTRY {
  return &descriptor;
}
