#!/usr/bin/env bash
# Blue-green switch behind Traefik: switch.sh <to-color> <version>
#
# Starts the idle color, waits for its /health/ready (through its container health check),
# moves all traffic to it, waits until it is what answers (X-Service-Version), then stops the
# old color, which drains (readiness 503, requests served for the drain delay) and exits.
# Refuses to switch to a color that never becomes healthy; the old color keeps serving.
set -euo pipefail

TO=${1:?usage: switch.sh <blue|green> <version>}
VERSION=${2:?usage: switch.sh <blue|green> <version>}
case $TO in blue) FROM=green ;; green) FROM=blue ;; *) echo "color must be blue or green" >&2; exit 2 ;; esac
DIR=$(cd "$(dirname "$0")" && pwd)
COMPOSE=(docker compose -f "$DIR/compose.yml")
PROXY=${PROXY_URL:-http://127.0.0.1}
TO_UPPER=$(tr '[:lower:]' '[:upper:]' <<<"$TO")

export "${TO_UPPER}_VERSION=$VERSION"
echo "starting api-$TO $VERSION"
if ! timeout "${READY_TIMEOUT:-120}" "${COMPOSE[@]}" up -d --wait "api-$TO"; then
  echo "refusing to switch: api-$TO never became healthy; api-$FROM keeps serving" >&2
  "${COMPOSE[@]}" logs --tail 30 "api-$TO" >&2 || true
  "${COMPOSE[@]}" stop "api-$TO" >/dev/null || true
  exit 1
fi

weight() { if [[ $1 == "$TO" ]]; then echo 100; else echo 0; fi; }
sed -e "/name: api-blue/{n;s/weight: .*/weight: $(weight blue)/}" \
    -e "/name: api-green/{n;s/weight: .*/weight: $(weight green)/}" \
    "$DIR/dynamic/api.yml" >"$DIR/dynamic/api.yml.new"
mv "$DIR/dynamic/api.yml.new" "$DIR/dynamic/api.yml"

streak=0
deadline=$((SECONDS + 60))
while ((streak < 20)); do
  ((SECONDS < deadline)) || { echo "Traefik still routes to api-$FROM after 60s" >&2; exit 1; }
  answered=$(curl -fsS -o /dev/null -D - "$PROXY/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-service-version" {print $2}') || answered=""
  if [[ $answered == "$VERSION" ]]; then streak=$((streak + 1)); else streak=0; sleep 0.2; fi
done
echo "traffic is on api-$TO $VERSION; draining api-$FROM"
"${COMPOSE[@]}" stop "api-$FROM"
echo "done"
