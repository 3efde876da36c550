/* Broken plugin `other-major`: a complete filter module whose descriptor says it was built for ABI
 * major 2. Expected: weir refuses the plugin (ABI major 2, host major 1) and loads none of its
 * modules. */
#include "minimal_filter.h"

static const weir_module_t modules[] = {
    {sizeof(weir_module_t), WEIR_KIND_FILTER, "other-major", &minimal_filter_vtable},
};

static const weir_plugin_descriptor_t descriptor = {
    sizeof(weir_plugin_descriptor_t), 2, 0, "broken-other-major", "0.0.0", modules, 1};

WEIR_PLUGIN_ENTRY;
WEIR_PLUGIN_ENTRY {
  return &descriptor;
}
