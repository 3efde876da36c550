#!/usr/bin/env bash
# Install what is missing, build weir and its plugins, and start weir in the background on
# examples/quickstart.toml (front service on 127.0.0.1:8080; nothing else needs to run).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh weir plugins
mkdir -p build/run
if [ -f build/run/weir.pid ] && kill -0 "$(cat build/run/weir.pid)" 2>/dev/null; then
  kill "$(cat build/run/weir.pid)" && sleep 1
fi
nohup build/ci/bin/weir run -c examples/quickstart.toml >build/run/weir.log 2>&1 &
echo $! >build/run/weir.pid
for _ in $(seq 1 100); do
  if grep -q "weir ready" build/run/weir.log; then
    grep "listening on" build/run/weir.log | sed 's/^/  /'
    echo
    echo "weir is running (pid $(cat build/run/weir.pid), log build/run/weir.log). Try:"
    echo "  curl -i http://127.0.0.1:8080/"
    echo "Stop it with: kill \$(cat build/run/weir.pid)"
    exit 0
  fi
  if ! kill -0 "$(cat build/run/weir.pid)" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "weir did not start; its log:" >&2
cat build/run/weir.log >&2
exit 1
