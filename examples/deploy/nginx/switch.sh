#!/usr/bin/env bash
# Blue-green switch for nginx: switch.sh <green-port> [nginx-pid-file]
#
# 1. wait until green answers 200 on /health/ready (refuse to switch after READY_TIMEOUT);
# 2. point the upstream at green and reload nginx;
# 3. wait until green is what answers through nginx (X-Service-Version), N times in a row;
# 4. print what the caller does next: SIGTERM blue, which drains and exits on its own.
set -euo pipefail

GREEN_PORT=${1:?usage: switch.sh <green-port> [nginx-pid-file]}
PID_FILE=${2:-/run/nginx.pid}
DIR=$(cd "$(dirname "$0")" && pwd)
PROXY=${PROXY_URL:-http://127.0.0.1:8080}
READY_TIMEOUT=${READY_TIMEOUT:-60}

green_version=""
deadline=$((SECONDS + READY_TIMEOUT))
until green_version=$(curl -fsS -o /dev/null -D - "http://127.0.0.1:$GREEN_PORT/health/ready" 2>/dev/null \
  | tr -d '\r' | awk -F': ' 'tolower($1) == "x-service-version" {print $2}') && [[ -n $green_version ]]; do
  if ((SECONDS >= deadline)); then
    echo "refusing to switch: green (port $GREEN_PORT) not ready after ${READY_TIMEOUT}s" >&2
    exit 1
  fi
  sleep 1
done
echo "green $green_version is ready"

printf 'server 127.0.0.1:%s;  # green %s\n' "$GREEN_PORT" "$green_version" >"$DIR/upstream.conf.new"
mv "$DIR/upstream.conf.new" "$DIR/upstream.conf"
nginx -t -q -c "$DIR/nginx.conf"
kill -HUP "$(cat "$PID_FILE")"

streak=0
deadline=$((SECONDS + 30))
while ((streak < 20)); do
  ((SECONDS < deadline)) || { echo "nginx still answers with the old version after 30s" >&2; exit 1; }
  answered=$(curl -fsS -o /dev/null -D - "$PROXY/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-service-version" {print $2}')
  if [[ $answered == "$green_version" ]]; then streak=$((streak + 1)); else streak=0; fi
done
echo "traffic is on green $green_version; now send SIGTERM to blue (it drains, then exits)"
