#!/usr/bin/env bash
# Install what weir needs to build and test on Debian 12 (bookworm), skipping what is present.
# Works as root (no sudo needed) and as a user with sudo.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config git binutils
  libboost1.81-all-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libnghttp2-dev libtomlplusplus-dev libspdlog-dev libfmt-dev doctest-dev
  libc-ares-dev libjemalloc-dev
  python3 curl procps openssl nghttp2-client nghttp2-server testssl.sh
  knot knot-dnsutils bind9-dnsutils
  valgrind wrk nginx haproxy linux-perf
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "weir: these packages are missing and I am neither root nor able to sudo: ${missing[*]}" >&2
  exit 1
fi
echo "weir: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
