#!/usr/bin/env bash
# Install what is missing, build everything (tests included) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh
ctest --preset "${WEIR_PRESET:-ci}" -j "${WEIR_TEST_JOBS:-2}" "$@"
