#!/usr/bin/env bash
# Run one migration phase of a release as its own Kubernetes Job and wait for it:
#
#   VERSION=1.4.0 migrate-phase.sh expand|backfill|contract
#
# Renders migrate-job.yaml with the Job's name (api-service-migrate-<version>-<phase>), the
# image tag and the phase replaced, applies it, and waits for it to complete; on failure the
# Job's logs are printed and the exit code is 1. Set DRY_RUN=1 to print the rendered Job
# instead. IMAGE_PREFIX (default ghcr.io/cutover-rs) names the registry, KUBECTL the client.
set -euo pipefail

PHASE=${1:?usage: VERSION=<version> migrate-phase.sh expand|backfill|contract}
VERSION=${VERSION:?set VERSION to the release being deployed}
case $PHASE in expand | backfill | contract) ;; *) echo "unknown phase '$PHASE': expand, backfill or contract" >&2; exit 2 ;; esac
[[ $VERSION =~ ^[0-9A-Za-z][0-9A-Za-z.+-]*$ ]] || { echo "not a version: '$VERSION'" >&2; exit 2; }
DIR=$(cd "$(dirname "$0")" && pwd)
IMAGE_PREFIX=${IMAGE_PREFIX:-ghcr.io/cutover-rs}
KUBECTL=${KUBECTL:-kubectl}
# Job names are DNS labels: lower case, no dots or plus signs.
job=$(printf 'api-service-migrate-%s-%s' "$VERSION" "$PHASE" | tr '[:upper:].+' '[:lower:]--' | cut -c1-63)

rendered=$(sed -e "s|name: api-service-migrate-1-3-0|name: $job|" \
               -e "s|image: ghcr.io/cutover-rs/api-service:1.3.0|image: $IMAGE_PREFIX/api-service:$VERSION|" \
               -e "s|args: \[migrate, --phase, expand\]|args: [migrate, --phase, $PHASE]|" \
               "$DIR/migrate-job.yaml")
for expected in "name: $job" "image: $IMAGE_PREFIX/api-service:$VERSION" "args: [migrate, --phase, $PHASE]"; do
  grep -qF -- "$expected" <<<"$rendered" || { echo "migrate-job.yaml no longer has the fields this script replaces ($expected)" >&2; exit 1; }
done
if [[ ${DRY_RUN:-0} == 1 ]]; then printf '%s\n' "$rendered"; exit 0; fi

echo "migrations, phase $PHASE: job/$job"
"$KUBECTL" apply -f - <<<"$rendered"
if ! "$KUBECTL" wait --for=condition=complete --timeout=30m "job/$job"; then
  echo "phase $PHASE failed: the Job's logs follow" >&2
  "$KUBECTL" logs "job/$job" --tail=50 >&2 || true
  exit 1
fi
echo "phase $PHASE applied"
