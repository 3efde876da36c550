#!/usr/bin/env bash
# Configure and build weir with the given CMake preset (default: ci) and optional ninja targets.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${WEIR_PRESET:-ci}"
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" >/dev/null
fi
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
jobs="${WEIR_JOBS:-$(nproc)}"
cmake --build --preset "$preset" -j "$jobs" ${1:+--target "$@"}
