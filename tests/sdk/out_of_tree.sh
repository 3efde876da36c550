#!/usr/bin/env bash
# usage: out_of_tree.sh <weir build dir> <example source dir> [c++ compiler]
#
# 1. installs the `sdk` component of <weir build dir> into a temporary prefix;
# 2. checks find_package(weir-sdk) refuses another ABI major;
# 3. configures, builds and unit-tests the example against that prefix, in a temporary build dir;
# 4. checks the plugin exports exactly weir_plugin_entry;
# 5. hands the plugin's path to load_into_weir (at the end of this file).
# Set WEIR_KEEP_TMP=1 to keep the temporary directory.
set -euo pipefail

build_dir=$(cd "$1" && pwd)
example_dir=$(cd "$2" && pwd)
cxx=${3:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/weir-sdk-oot.XXXXXX")
cleanup() {
  if [[ -n "${WEIR_KEEP_TMP:-}" ]]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

prefix="$work/prefix"
echo "== install the sdk component into $prefix"
cmake --install "$build_dir" --prefix "$prefix" --component sdk
for f in include/weir/abi.h include/weir/lb.h include/weir/discovery.h include/weir/health.h \
         include/weir/filter.h include/weir/certs.h include/weir/sdk.hpp \
         include/weir/testing/fake_host.hpp; do
  [[ -f "$prefix/$f" ]] || fail "not installed: $f"
done
config_dir=$(dirname "$(find "$prefix" -name weir-sdkConfig.cmake -print -quit)")
[[ -n "$config_dir" && "$config_dir" == */cmake/weir-sdk ]] || fail "weir-sdkConfig.cmake not installed"
for f in weir-sdkConfigVersion.cmake weir-sdk-targets.cmake WeirPlugin.cmake; do
  [[ -f "$config_dir/$f" ]] || fail "not installed: $config_dir/$f"
done

generator_args=(-G Ninja)
compiler_args=()
if [[ -n "$cxx" ]]; then
  compiler_args=(-DCMAKE_CXX_COMPILER="$cxx")
fi

echo "== find_package(weir-sdk 2) must fail (SameMajorVersion)"
mkdir -p "$work/major2"
cat > "$work/major2/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(major2 LANGUAGES NONE)
find_package(weir-sdk 2 QUIET)
if(weir-sdk_FOUND)
  message(FATAL_ERROR "weir-sdk ${weir-sdk_VERSION} accepted a request for major 2")
endif()
find_package(weir-sdk 1 REQUIRED)
message(STATUS "weir-sdk ${weir-sdk_VERSION} (ABI ${WEIR_SDK_ABI_MAJOR}.${WEIR_SDK_ABI_MINOR}, weir ${WEIR_SDK_WEIR_VERSION})")
CMAKE
cmake -S "$work/major2" -B "$work/major2/build" "${generator_args[@]}" \
      -DCMAKE_PREFIX_PATH="$prefix" > "$work/major2.log" 2>&1 \
  || { cat "$work/major2.log"; fail "weir-sdk version check"; }
grep "weir-sdk " "$work/major2.log" || true

echo "== configure and build $example_dir"
example_build="$work/build"
cmake -S "$example_dir" -B "$example_build" "${generator_args[@]}" "${compiler_args[@]}" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_CXX_FLAGS="-Werror -Wshadow -Wsign-conversion -Wold-style-cast"
cmake --build "$example_build"

so="$example_build/filter-hello-header.so"
[[ -f "$so" ]] || fail "plugin not built: $so"

echo "== exported symbols of $so"
exported=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort)
echo "$exported"
[[ "$exported" == "weir_plugin_entry" ]] || fail "the plugin must export exactly weir_plugin_entry"

if [[ -f "$example_build/CTestTestfile.cmake" ]]; then
  echo "== unit test of the example (fake host, dlopen of the built .so)"
  ctest --test-dir "$example_build" --output-on-failure
fi

# --------------------------------------------------------------------------------------------------
# Load the built plugin into the real weir (WEIR_BIN) and see it act on a response.
# --------------------------------------------------------------------------------------------------
weir_pid=""
stop_weir() {
  if [[ -n "$weir_pid" ]]; then
    kill -KILL "$weir_pid" 2>/dev/null || true
    weir_pid=""
  fi
}
trap 'stop_weir; cleanup' EXIT

load_into_weir() {
  local plugin_so="$1"
  [[ -n "${WEIR_BIN:-}" && -x "$WEIR_BIN" ]] || fail "WEIR_BIN must name the weir binary"
  local pdir="$work/plugins"
  mkdir -p "$pdir"
  install -m 0644 "$plugin_so" "$pdir/"
  cat > "$work/weir.toml" <<TOML
[system]
workers = 1
plugin-dirs = ["$pdir"]
[services.web]
listeners = [{ address = "127.0.0.1:0" }]
filters = [{ use = "respond", body = "hi\n" }, { use = "hello-header", greeting = "hej" }]
TOML
  echo "== weir check with the out-of-tree plugin"
  "$WEIR_BIN" check -c "$work/weir.toml" || fail "weir check refused the out-of-tree plugin"
  echo "== weir run with the out-of-tree plugin"
  "$WEIR_BIN" run -c "$work/weir.toml" > "$work/weir.log" 2>&1 &
  weir_pid=$!
  local addr=""
  for _ in $(seq 1 100); do
    if grep -q "weir ready" "$work/weir.log"; then
      addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\) (service web).*/\1/p' "$work/weir.log")
      break
    fi
    kill -0 "$weir_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$addr" ]] || { cat "$work/weir.log"; fail "weir did not start"; }
  local head
  head=$(curl -sS --noproxy '*' --max-time 10 -D - -o /dev/null "http://$addr/")
  kill -TERM "$weir_pid"
  wait "$weir_pid" || true
  weir_pid=""
  echo "$head"
  grep -qi "^x-hello: hej" <<<"$head" || { cat "$work/weir.log"; fail "x-hello header missing"; }
}

load_into_weir "$so"
echo "PASS"
