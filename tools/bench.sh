#!/usr/bin/env bash
# Benchmark weir side by side with nginx and HAProxy on loopback (docs/performance.md).
#
#   tools/bench.sh [--quick] [--scenarios h1,h2c,...] [--reps N] [--duration S]
#                  [--proxies nginx,haproxy,weir] [--json FILE] [--weir PATH]
#
# Checks that the tools are installed (it installs nothing), picks the weir binary
# (build/release/bin/weir when it exists, else build/ci/bin/weir; --weir PATH overrides), and
# runs tests/bench/bench.py with the remaining arguments. The tables go to stdout, progress to
# stderr: `tools/bench.sh --quick > results.md`.
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
for pair in wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy perf:linux-perf \
            openssl:openssl taskset:util-linux python3:python3; do
  tool=${pair%%:*}
  pkg=${pair#*:}
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
    missing+=("$pkg")
    echo "bench: $tool not found (Debian package: $pkg)" >&2
  fi
done
if ((${#missing[@]})); then
  echo "bench: install with: apt-get install -y ${missing[*]}" >&2
  if [[ " ${missing[*]} " == *" python3 "* || " ${missing[*]} " == *" nginx "* ]]; then
    echo "bench: python3 and nginx (the origin) are required; stopping" >&2
    exit 2
  fi
  echo "bench: going on; the scenarios or proxies that need them are skipped" >&2
fi
# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac

args=("$@")
have_weir=0
for a in "$@"; do
  case $a in --weir | --weir=* | -h | --help) have_weir=1 ;; esac
done
if ((!have_weir)); then
  weir=""
  for cand in build/release/bin/weir build/ci/bin/weir; do
    if [[ -x $cand ]]; then
      weir=$cand
      break
    fi
  done
  if [[ -z $weir ]]; then
    echo "bench: no weir binary in build/release/bin or build/ci/bin: build one" \
         "(tools/build.sh) or pass --weir PATH" >&2
    exit 2
  fi
  args+=(--weir "$weir")
fi

# The command as typed, for the header of the results.
WEIR_BENCH_COMMAND="tools/bench.sh"
for a in "$@"; do
  if [[ $a =~ ^[A-Za-z0-9_./=,:@%+-]+$ ]]; then
    WEIR_BENCH_COMMAND+=" $a"
  else
    WEIR_BENCH_COMMAND+=" $(printf '%q' "$a")"
  fi
done
export WEIR_BENCH_COMMAND
exec python3 tests/bench/bench.py "${args[@]}"
