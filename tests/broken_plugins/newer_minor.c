/* Broken plugin `newer-minor`: a complete filter module whose descriptor says it was built for ABI
 * WEIR_ABI_MAJOR.(WEIR_ABI_MINOR + 1), newer than the host. Expected: weir refuses the plugin (it
 * may use hooks or host functions the host does not have). */
#include "minimal_filter.h"

static const weir_module_t modules[] = {
    {sizeof(weir_module_t), WEIR_KIND_FILTER, "newer-minor", &minimal_filter_vtable},
};

static const weir_plugin_descriptor_t descriptor = {sizeof(weir_plugin_descriptor_t),
                                                    WEIR_ABI_MAJOR,
                                                    WEIR_ABI_MINOR + 1,
                                                    "broken-newer-minor",
                                                    "0.0.0",
                                                    modules,
                                                    1};

WEIR_PLUGIN_ENTRY;
WEIR_PLUGIN_ENTRY {
  return &descriptor;
}
