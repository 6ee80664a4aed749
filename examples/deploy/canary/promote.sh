#!/usr/bin/env bash
# Promote the canary: all traffic to it, wait until only it answers, then stop stable (which
# drains before it exits). Roll back instead with: promote.sh --rollback
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
COMPOSE=(docker compose -f "$DIR/compose.yml")
PROXY=${PROXY_URL:-http://127.0.0.1}
if [[ ${1:-} == --rollback ]]; then stable=100 canary=0 stop=api-canary; else stable=0 canary=100 stop=api-stable; fi

sed -e "/name: api-stable/{n;s/weight: .*/weight: $stable/}" \
    -e "/name: api-canary/{n;s/weight: .*/weight: $canary/}" \
    "$DIR/dynamic/api.yml" >"$DIR/dynamic/api.yml.new"
mv "$DIR/dynamic/api.yml.new" "$DIR/dynamic/api.yml"

keep=$([[ $stop == api-stable ]] && echo "${CANARY_VERSION:-1.3.0}" || echo "${STABLE_VERSION:-1.2.0}")
streak=0
deadline=$((SECONDS + 60))
while ((streak < 20)); do
  ((SECONDS < deadline)) || { echo "Traefik still routes to $stop after 60s" >&2; exit 1; }
  answered=$(curl -fsS -o /dev/null -D - "$PROXY/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-service-version" {print $2}') || answered=""
  if [[ $answered == "$keep" ]]; then streak=$((streak + 1)); else streak=0; sleep 0.2; fi
done
"${COMPOSE[@]}" stop "$stop"
echo "only $keep serves; $stop drained and stopped"
