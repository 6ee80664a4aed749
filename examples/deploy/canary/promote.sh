#!/usr/bin/env bash
# Promote the canary step by step, judged by what its clients get; roll back on its own.
#
#   CANARY_VERSION=1.3.0 STABLE_VERSION=1.2.0 promote.sh          promote (or roll back)
#   CANARY_VERSION=1.3.0 STABLE_VERSION=1.2.0 promote.sh --rollback
#
# For each weight in STEPS (10 then 50): send that share to the canary, wait ANALYSIS_WINDOW,
# then ask Prometheus (the request metrics every instance exports) whether
#   - the canary's 5xx ratio exceeds the stable version's by more than MAX_ERROR_DELTA (0.01),
#   - the canary's p99 latency exceeds 1.5 x the stable one's + 50 ms.
# Either, or no data to judge by, rolls back: all traffic to stable, the canary stopped, the
# reason printed, exit 1. Otherwise: all traffic to the canary, confirmed through Traefik, and
# stable drained and stopped. The queries are the Argo Rollouts AnalysisTemplate's
# (kubernetes/argo/api-service-rollout.yaml), with WINDOW for its 1m.
#
# Settings (environment):
#   CANARY_VERSION, STABLE_VERSION   the two versions' X-Service-Version (required)
#   PROMETHEUS_URL   [http://127.0.0.1:9090]   WINDOW  rate window [1m]
#   STEPS            canary weights before 100 ["10 50"]   ANALYSIS_WINDOW  seconds per step [120]
#   DEPLOY_HOOKS, DYNAMIC_FILE, PROXY_URL, VERIFY_TIMEOUT, VERIFY_COUNT: as in blue-green/switch.sh
#
# Exit codes: 0 promoted (or rolled back on request); 1 rolled back by the analysis, or failed;
# 2 usage. Needs curl and jq.
set -euo pipefail

usage() { echo "usage: CANARY_VERSION=<v> STABLE_VERSION=<v> promote.sh [--rollback]" >&2; exit 2; }
ROLLBACK=0
case ${1:-} in "") ;; --rollback) ROLLBACK=1 ;; *) usage ;; esac
CANARY=${CANARY_VERSION:?set CANARY_VERSION}
STABLE=${STABLE_VERSION:?set STABLE_VERSION}
for v in "$CANARY" "$STABLE"; do
  [[ $v =~ ^[0-9A-Za-z][0-9A-Za-z.+-]*$ ]] || { echo "not a version: '$v'" >&2; usage; }
done
DIR=$(cd "$(dirname "$0")" && pwd)
export COMPOSE_FILE=${COMPOSE_FILE:-$DIR/compose.yml}
DYNAMIC_FILE=${DYNAMIC_FILE:-$DIR/dynamic/api.yml}
PROXY=${PROXY_URL:-http://127.0.0.1}
PROMETHEUS=${PROMETHEUS_URL:-http://127.0.0.1:9090}
WINDOW=${WINDOW:-1m}
MAX_ERROR_DELTA=${MAX_ERROR_DELTA:-0.01}
# shellcheck source=../lib/traefik.sh
source "$DIR/../lib/traefik.sh"
# shellcheck source=../lib/compose-hooks.sh
source "${DEPLOY_HOOKS:-$DIR/../lib/compose-hooks.sh}"
command -v jq >/dev/null || { echo "promote.sh needs jq" >&2; exit 2; }

# The canary's 5xx ratio minus the stable version's (no 5xx at all is a ratio of 0).
ERROR_QUERY="(
  (sum(rate(http_requests_total{service_version=\"$CANARY\",status=~\"5..\"}[$WINDOW])) or on() vector(0))
    / sum(rate(http_requests_total{service_version=\"$CANARY\"}[$WINDOW]))
)
- on() (
  (
    (sum(rate(http_requests_total{service_version!=\"$CANARY\",status=~\"5..\"}[$WINDOW])) or on() vector(0))
      / sum(rate(http_requests_total{service_version!=\"$CANARY\"}[$WINDOW]))
  ) or on() vector(0)
)"
# The canary's p99 minus what it may be (1.5 x the stable p99 + 50 ms): <= 0 passes.
LATENCY_QUERY="histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service_version=\"$CANARY\"}[$WINDOW])))
- on() (
  1.5 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service_version!=\"$CANARY\"}[$WINDOW])))
  + 0.05
)"

# query PROMQL: the single value, or nothing when Prometheus has no (finite) answer.
query() {
  curl -fsS --max-time 10 --get --data-urlencode "query=$1" "$PROMETHEUS/api/v1/query" \
    | jq -r '.data.result[0].value[1] // empty' | grep -E '^-?[0-9.]+(e[-+]?[0-9]+)?$' || true
}

roll_back() {
  echo "rolling back: $1" >&2
  set_weights "$DYNAMIC_FILE" "stable=100" "canary=0"
  confirm_only "$PROXY" "$STABLE" "${VERIFY_COUNT:-20}" "${VERIFY_TIMEOUT:-60}" || true
  stop_instance canary || true
  echo "rolled back: only $STABLE serves; the canary ($CANARY) is stopped" >&2
}

if ((ROLLBACK)); then
  roll_back "asked for with --rollback"
  exit 0
fi

for weight in ${STEPS:-10 50}; do
  set_weights "$DYNAMIC_FILE" "stable=$((100 - weight))" "canary=$weight"
  echo "canary $CANARY at $weight%; analysing for ${ANALYSIS_WINDOW:-120}s"
  sleep "${ANALYSIS_WINDOW:-120}"
  errors=$(query "$ERROR_QUERY")
  latency=$(query "$LATENCY_QUERY")
  if [[ -z $errors || -z $latency ]]; then
    roll_back "no metrics to judge the canary by at $weight% (Prometheus at $PROMETHEUS: error delta '${errors}', p99 excess '${latency}')"
    exit 1
  fi
  if awk -v d="$errors" -v max="$MAX_ERROR_DELTA" 'BEGIN { exit !(d > max) }'; then
    roll_back "at $weight% the canary's 5xx ratio is $errors above the stable version's (limit $MAX_ERROR_DELTA)"
    exit 1
  fi
  if awk -v d="$latency" 'BEGIN { exit !(d > 0) }'; then
    roll_back "at $weight% the canary's p99 latency is ${latency}s over 1.5 x the stable p99 + 50 ms"
    exit 1
  fi
  echo "at $weight%: 5xx ratio delta $errors, p99 within bounds (margin ${latency}s)"
done

set_weights "$DYNAMIC_FILE" "stable=0" "canary=100"
if ! confirm_only "$PROXY" "$CANARY" "${VERIFY_COUNT:-20}" "${VERIFY_TIMEOUT:-60}"; then
  echo "the weights send everything to the canary, but Traefik did not confirm it; stable is left running" >&2
  exit 1
fi
stop_instance stable
echo "promoted: only $CANARY serves; stable ($STABLE) drained and stopped"
