// lb/hash: the plugin library `lb-hash`, with the load balancer modules `hash`, `ketama` and
// `maglev` (see balancers.hpp).
#include "balancers.hpp"

#include <weir/sdk.hpp>

#ifndef WEIR_PLUGIN_VERSION
#define WEIR_PLUGIN_VERSION "0.0.0"
#endif

WEIR_SDK_PLUGIN("lb-hash", WEIR_PLUGIN_VERSION,
                weir::sdk::lb_module<weir_lb_hash::HashConfig, weir_lb_hash::Hash>("hash"),
                weir::sdk::lb_module<weir_lb_hash::KetamaConfig, weir_lb_hash::Ketama>("ketama"),
                weir::sdk::lb_module<weir_lb_hash::MaglevConfig, weir_lb_hash::Maglev>("maglev"))
