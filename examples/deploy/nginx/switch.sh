#!/usr/bin/env bash
# Point nginx's upstream at new backends without dropping a request:
#
#   switch.sh <port>[:<weight>]...        e.g. switch.sh 8002 (blue-green), 8001:9 8002:1 (canary)
#
# 1. wait until every backend answers 200 on /health/ready (refuse after READY_TIMEOUT: the
#    upstream is not touched, the old backends keep serving);
# 2. write the new upstream.conf, check the whole configuration with `nginx -t`, and put the old
#    upstream.conf back if the check fails (nothing is reloaded);
# 3. reload nginx (SIGHUP: new workers take new connections, old workers finish theirs);
# 4. wait until only the new backends' versions (X-Service-Version) answer through nginx,
#    VERIFY_COUNT times in a row; a failed request counts as a miss, never as an abort.
# Then the caller stops the old backends: SIGTERM, they drain and exit on their own.
#
# Settings (environment):
#   NGINX_DIR       the directory of nginx.conf and upstream.conf [this script's directory]
#   NGINX_PID_FILE  the master's pid file [/run/nginx.pid]
#   NGINX           the nginx binary [nginx]
#   PROXY_URL       nginx's address, for the final check [http://127.0.0.1:8080]
#   BACKEND_HOST    where the backends listen [127.0.0.1]
#   READY_TIMEOUT   seconds to wait for readiness [60];  VERIFY_TIMEOUT  seconds to confirm [30]
#   VERIFY_COUNT    answers in a row that confirm the switch [20]
#
# Exit codes: 0 switched and confirmed; 1 refused or failed (the message says what state nginx
# is in); 2 bad arguments.
set -euo pipefail

usage() { echo "usage: switch.sh <port>[:<weight>]..." >&2; exit 2; }
(($#)) || usage
DIR=${NGINX_DIR:-$(cd "$(dirname "$0")" && pwd)}
PID_FILE=${NGINX_PID_FILE:-/run/nginx.pid}
NGINX=${NGINX:-nginx}
PROXY=${PROXY_URL:-http://127.0.0.1:8080}
HOST=${BACKEND_HOST:-127.0.0.1}
READY_TIMEOUT=${READY_TIMEOUT:-60}
VERIFY_TIMEOUT=${VERIFY_TIMEOUT:-30}
VERIFY_COUNT=${VERIFY_COUNT:-20}
UPSTREAM=$DIR/upstream.conf

for backend in "$@"; do
  [[ $backend =~ ^[0-9]{1,5}(:[0-9]{1,3})?$ ]] || { echo "not a <port>[:<weight>]: '$backend'" >&2; usage; }
done
[[ -f $DIR/nginx.conf ]] || { echo "no nginx.conf in $DIR (set NGINX_DIR)" >&2; exit 2; }

# The version a URL answers with, from its X-Service-Version header; fails when the request
# fails or answers anything but 2xx.
version_of() {
  curl -fsS --max-time 2 -o /dev/null -D - "$1" | tr -d '\r' \
    | awk -F': ' 'tolower($1) == "x-service-version" { print $2 }'
}

# 1. Readiness of every new backend.
declare -A versions=()
lines=""
for backend in "$@"; do
  port=${backend%%:*}
  weight=1
  [[ $backend == *:* ]] && weight=${backend#*:}
  deadline=$((SECONDS + READY_TIMEOUT))
  until version=$(version_of "http://$HOST:$port/health/ready" 2>/dev/null) && [[ -n $version ]]; do
    if ((SECONDS >= deadline)); then
      echo "refusing to switch: $HOST:$port not ready after ${READY_TIMEOUT}s; upstream.conf unchanged, the current backends keep serving" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$HOST:$port is ready ($version)"
  versions[$version]=1
  lines+="server $HOST:$port weight=$weight;  # $version"$'\n'
done

# 2. The new upstream, checked before anything is reloaded.
cp -p "$UPSTREAM" "$UPSTREAM.previous" 2>/dev/null || : >"$UPSTREAM.previous"
printf '# Written by switch.sh.\n%s' "$lines" >"$UPSTREAM.new"
mv "$UPSTREAM.new" "$UPSTREAM"
if ! check=$("$NGINX" -t -q -c "$DIR/nginx.conf" 2>&1); then
  mv "$UPSTREAM.previous" "$UPSTREAM"
  echo "refusing to switch: nginx -t failed; upstream.conf restored, nginx not reloaded:" >&2
  printf '%s\n' "$check" >&2
  exit 1
fi

# 3. Reload.
pid=$(cat "$PID_FILE" 2>/dev/null) || pid=""
if [[ -z $pid ]] || ! kill -HUP "$pid" 2>/dev/null; then
  mv "$UPSTREAM.previous" "$UPSTREAM"
  echo "refusing to switch: no nginx master at pid '${pid}' (from $PID_FILE); upstream.conf restored" >&2
  exit 1
fi
rm -f "$UPSTREAM.previous"

# 4. Confirmation through nginx.
want=$(printf '%s ' "${!versions[@]}")
streak=0
last=""
deadline=$((SECONDS + VERIFY_TIMEOUT))
while ((streak < VERIFY_COUNT)); do
  if ((SECONDS >= deadline)); then
    echo "nginx was reloaded with the new upstream, but answers from ${want% } were not confirmed within ${VERIFY_TIMEOUT}s (last: ${last:-nothing}); keep the old backends running and check $PROXY" >&2
    exit 1
  fi
  if answered=$(version_of "$PROXY/" 2>&1); then
    last="version '${answered}'"
  else
    last="request failed: ${answered:-no answer}"
    answered=""
  fi
  if [[ -n $answered && -n ${versions[$answered]+x} ]]; then
    streak=$((streak + 1))
  else
    streak=0
    sleep 0.1
  fi
done
echo "switched: nginx answers with ${want% } only; now send SIGTERM to the old backends (they drain, then exit)"
