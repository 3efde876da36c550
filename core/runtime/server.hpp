// Running weir: workers, listeners, the control thread (discovery, health, signals).
#pragma once

#include "core/runtime/plan.hpp"

#include <memory>

namespace weir::core {

// Serve `plan` until SIGTERM (graceful) or SIGINT (fast). Returns the process exit code.
int run_server(std::unique_ptr<Plan> plan);

} // namespace weir::core
