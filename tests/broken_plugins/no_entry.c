/* Broken plugin `no-entry`: a valid descriptor, but exported under the wrong name
 * (weir_plugin_main instead of weir_plugin_entry), so the library has no entry point.
 * Expected: weir refuses the file because it does not export weir_plugin_entry. */
#include "minimal_filter.h"

static const weir_module_t modules[] = {
    {sizeof(weir_module_t), WEIR_KIND_FILTER, "no-entry", &minimal_filter_vtable},
};

static const weir_plugin_descriptor_t descriptor = {sizeof(weir_plugin_descriptor_t),
                                                    WEIR_ABI_MAJOR,
                                                    WEIR_ABI_MINOR,
                                                    "broken-no-entry",
                                                    "0.0.0",
                                                    modules,
                                                    1};

WEIR_PLUGIN_EXPORT const weir_plugin_descriptor_t* weir_plugin_main(void);
WEIR_PLUGIN_EXPORT const weir_plugin_descriptor_t* weir_plugin_main(void) {
  return &descriptor;
}
