#!/usr/bin/env bash
# Blue-green switch behind Traefik: switch.sh <blue|green> <version>
#
# 1. start the idle color running <version> (the hooks' start_instance);
# 2. wait until it is ready (instance_ready, READY_TIMEOUT): if it never is, refuse, stop it
#    again, and leave the routing untouched: the old color keeps serving;
# 3. move all traffic to it by rewriting the weights in the dynamic file Traefik watches;
# 4. confirm through Traefik that only <version> answers, VERIFY_COUNT times in a row (a failed
#    request is a miss, not an abort);
# 5. stop the old color (stop_instance): it drains (readiness 503, requests still served for
#    its drain delay) and exits.
#
# Settings (environment):
#   DEPLOY_HOOKS   file defining start_instance / instance_ready / stop_instance
#                  [../lib/compose-hooks.sh: Docker Compose with ./compose.yml]
#   DYNAMIC_FILE   the Traefik dynamic file with the weights [./dynamic/api.yml]
#   PROXY_URL      Traefik's entry point [http://127.0.0.1]
#   READY_TIMEOUT  seconds [120];  VERIFY_TIMEOUT  seconds [60];  VERIFY_COUNT  [20]
#
# Exit codes: 0 switched; 1 refused or failed (the message says where things stand); 2 usage.
set -euo pipefail

usage() { echo "usage: switch.sh <blue|green> <version>" >&2; exit 2; }
(($# == 2)) || usage
TO=$1 VERSION=$2
case $TO in blue) FROM=green ;; green) FROM=blue ;; *) echo "color must be blue or green, not '$TO'" >&2; usage ;; esac
[[ $VERSION =~ ^[0-9A-Za-z][0-9A-Za-z.+-]*$ ]] || { echo "not a version: '$VERSION'" >&2; usage; }
DIR=$(cd "$(dirname "$0")" && pwd)
export COMPOSE_FILE=${COMPOSE_FILE:-$DIR/compose.yml}
DYNAMIC_FILE=${DYNAMIC_FILE:-$DIR/dynamic/api.yml}
PROXY=${PROXY_URL:-http://127.0.0.1}
# shellcheck source=../lib/traefik.sh
source "$DIR/../lib/traefik.sh"
# shellcheck source=../lib/compose-hooks.sh
source "${DEPLOY_HOOKS:-$DIR/../lib/compose-hooks.sh}"
[[ -w $DYNAMIC_FILE ]] || { echo "cannot write $DYNAMIC_FILE (set DYNAMIC_FILE)" >&2; exit 2; }

echo "starting api-$TO $VERSION"
start_instance "$TO" "$VERSION"
if ! wait_ready "$TO" "${READY_TIMEOUT:-120}"; then
  echo "refusing to switch: api-$TO never became ready within ${READY_TIMEOUT:-120}s; stopping it, api-$FROM keeps serving, routing unchanged" >&2
  stop_instance "$TO" || true
  exit 1
fi
echo "api-$TO is ready; moving the traffic"
set_weights "$DYNAMIC_FILE" "$TO=100" "$FROM=0"
if ! confirm_only "$PROXY" "$VERSION" "${VERIFY_COUNT:-20}" "${VERIFY_TIMEOUT:-60}"; then
  echo "the weights now send everything to api-$TO, but Traefik did not confirm it; api-$FROM is left running: check Traefik, then rerun or switch back" >&2
  exit 1
fi
echo "traffic is on api-$TO $VERSION; draining api-$FROM"
stop_instance "$FROM"
echo "done: api-$FROM drained and stopped"
