#!/usr/bin/env bash
# Start the backing services the tests need: PostgreSQL, Redis, RabbitMQ, a
# MongoDB-compatible server (FerretDB 1.x on SQLite) and an OpenTelemetry collector (Jaeger,
# whose query API the tracing tests read), and print their URLs. Also installs nginx, HAProxy,
# Prometheus and Traefik (built from the Go module proxy) for the zero-downtime harness, which
# runs them itself.
#
#   scripts/services.sh up       install what is missing, start what is not answering, wait
#                                until each one answers, write target/services.env
#   scripts/services.sh env      print `export NAME=URL` lines (eval "$(scripts/services.sh env)")
#   scripts/services.sh status   say which services answer
#   scripts/services.sh down     stop the services this script started
#
# Bring your own servers (containers, a managed database, ...): set DATABASE_URL, REDIS_URL,
# AMQP_URL, MONGODB_URL and/or JAEGER_QUERY_URL (with JAEGER_OTLP_URL) before running it. A
# service whose URL is given is never installed or started here; the script only checks that
# it answers.
#
# Installing needs Debian/Ubuntu and root (apt-get) plus Go for FerretDB and Jaeger.
# Idempotent: a service that already answers is left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${CUTOVER_SERVICES_DIR:-${TMPDIR:-/tmp}/cutover-services}
ENV_FILE=${CUTOVER_SERVICES_ENV:-$ROOT/target/services.env}
FERRETDB_VERSION=v1.24.2
JAEGER_VERSION=v1.76.0
# The newest Traefik v3 whose dependencies the Go module proxy serves (v3.7 needs lego v5
# providers it refuses).
TRAEFIK_VERSION=v3.6.12
WAIT_SECONDS=${CUTOVER_SERVICES_WAIT:-90}

PG_USER=cutover
PG_PASSWORD=cutover
PG_DB=cutover

DEFAULT_DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/$PG_DB"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
DEFAULT_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
DEFAULT_MONGODB_URL="mongodb://127.0.0.1:27017"
DEFAULT_JAEGER_QUERY_URL="http://127.0.0.1:16686"
DEFAULT_JAEGER_OTLP_URL="http://127.0.0.1:4318"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# Print the last lines of a log file, for a service that did not come up.
tail_log() {
  local file=$1
  if [[ -f $file ]]; then
    printf '[services] --- last lines of %s ---\n' "$file" >&2
    tail -n 40 "$file" >&2
    printf '[services] ---\n' >&2
  else
    printf '[services] (no log at %s)\n' "$file" >&2
  fi
}

# host and port of a URL such as scheme://user:pass@host:port/path
url_host() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}; printf '%s' "${rest%:*}"; }
url_port() { local rest=${1#*://}; rest=${rest##*@}; rest=${rest%%/*}; rest=${rest%%\?*}; [[ $rest == *:* ]] && printf '%s' "${rest##*:}" || printf '%s' "$2"; }
# The URL with its password replaced, for messages.
redacted() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# --- real answers, not open ports -------------------------------------------------------

postgres_answers() {
  local url=$1
  command -v psql >/dev/null 2>&1 || { tcp_open "$(url_host "$url")" "$(url_port "$url" 5432)"; return; }
  PGCONNECT_TIMEOUT=3 psql "$url" -XAtqc 'select 1' 2>/dev/null | grep -qx 1
}

redis_answers() {
  local url=$1 host port reply
  host=$(url_host "$url"); port=$(url_port "$url" 6379)
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 3 redis-cli -u "$url" --no-auth-warning ping 2>/dev/null || true)
  else
    reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port; printf 'PING\r\n' >&3; head -c 7 <&3" 2>/dev/null || true)
  fi
  [[ $reply == *PONG* ]]
}

# An AMQP 0-9-1 server answers the protocol header with a Connection.Start method frame
# (frame type 1 on channel 0).
amqp_answers() {
  local url=$1
  python3 - "$(url_host "$url")" "$(url_port "$url" 5672)" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"AMQP\x00\x00\x09\x01")
frame = s.recv(7)
sys.exit(0 if len(frame) == 7 and frame[0] == 1 and frame[1:3] == b"\x00\x00" else 1)
PY
}

# A MongoDB server answers OP_MSG {ping: 1, $db: "admin"} with {ok: 1.0}.
mongo_answers() {
  local url=$1
  python3 - "$(url_host "$url")" "$(url_port "$url" 27017)" <<'PY' 2>/dev/null
import socket, struct, sys
def cstring(s): return s.encode() + b"\x00"
body = b"\x10" + cstring("ping") + struct.pack("<i", 1)
body += b"\x02" + cstring("$db") + struct.pack("<i", 6) + cstring("admin")
doc = struct.pack("<i", len(body) + 5) + body + b"\x00"
payload = struct.pack("<I", 0) + b"\x00" + doc
msg = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013) + payload
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(msg)
header = s.recv(16, socket.MSG_WAITALL)
length = struct.unpack("<i", header[:4])[0]
reply = header + s.recv(length - 16, socket.MSG_WAITALL)
ok = b"\x01ok\x00" + struct.pack("<d", 1.0)
sys.exit(0 if ok in reply else 1)
PY
}

# Jaeger's query API answers `GET /api/services` with JSON.
jaeger_answers() {
  local url=$1
  python3 - "$url" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/services", timeout=3) as response:
    sys.exit(0 if "data" in json.load(response) else 1)
PY
}

# wait_for NAME CHECK URL LOG: poll CHECK until it succeeds or WAIT_SECONDS pass.
wait_for() {
  local name=$1 check=$2 url=$3 logfile=$4 deadline=$((SECONDS + WAIT_SECONDS))
  until "$check" "$url"; do
    if ((SECONDS >= deadline)); then
      log "$name did not answer at $(redacted "$url") within ${WAIT_SECONDS}s"
      tail_log "$logfile"
      exit 1
    fi
    sleep 0.5
  done
  log "$name answers at $(redacted "$url")"
}

# --- installation ----------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]} but apt-get is not available; install them or set the service URLs"
  [[ $(id -u) == 0 ]] || die "need ${missing[*]}: run as root, install them yourself, or set the service URLs"
  log "installing ${missing[*]} (apt-get)"
  if ((APT_UPDATED == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  # Package scripts cannot start services in containers; this script starts them below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# --- the services ----------------------------------------------------------------------

start_postgres() {
  local url=$DEFAULT_DATABASE_URL
  if postgres_answers "$url"; then log "PostgreSQL already answers"; return; fi
  apt_install postgresql postgresql-client
  local version cluster_log
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  [[ -n $version ]] || die "postgresql is installed but no server version was found in /usr/lib/postgresql"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    log "creating PostgreSQL $version cluster"
    pg_createcluster "$version" main >/dev/null
  fi
  cluster_log=/var/log/postgresql/postgresql-$version-main.log
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -qx online; then
    log "starting PostgreSQL $version"
    # Room for tests that each create a database and run several pools at once.
    pg_conftool "$version" main set max_connections 300 >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || { tail_log "$cluster_log"; die "PostgreSQL did not start"; }
  fi
  # The role and database the tests use, created through the local socket as `postgres`.
  su postgres -c "psql -XAtq" >/dev/null <<SQL || { tail_log "$cluster_log"; die "could not create the $PG_USER role"; }
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\gexec
SQL
  wait_for PostgreSQL postgres_answers "$url" "$cluster_log"
}

start_redis() {
  local url=$DEFAULT_REDIS_URL
  if redis_answers "$url"; then log "Redis already answers"; return; fi
  apt_install redis-server redis-tools
  mkdir -p "$STATE_DIR/redis"
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$STATE_DIR/redis" --logfile "$STATE_DIR/redis/redis.log" --pidfile "$STATE_DIR/redis/redis.pid" \
    || { tail_log "$STATE_DIR/redis/redis.log"; die "Redis did not start"; }
  wait_for Redis redis_answers "$url" "$STATE_DIR/redis/redis.log"
}

start_rabbitmq() {
  local url=$DEFAULT_AMQP_URL
  if amqp_answers "$url"; then log "RabbitMQ already answers"; return; fi
  apt_install rabbitmq-server
  mkdir -p "$STATE_DIR/rabbitmq"
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ (takes about 10 s)"
    # -detached returns at once; the node keeps booting in the background.
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >>"$STATE_DIR/rabbitmq/start.log" 2>&1 \
      || { tail_log "$STATE_DIR/rabbitmq/start.log"; die "RabbitMQ did not start"; }
  fi
  local node_log
  node_log=$(ls -t /var/log/rabbitmq/rabbit@*.log 2>/dev/null | head -n 1 || true)
  wait_for RabbitMQ amqp_answers "$url" "${node_log:-$STATE_DIR/rabbitmq/start.log}"
}

FERRETDB_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/cutover/ferretdb-$FERRETDB_VERSION/ferretdb

# build_from_module NAME MODULE@VERSION PACKAGE BINARY LOG_DIR [PREPARE]: fetch a Go module's
# source through the Go module proxy, run PREPARE in it (if given), build PACKAGE into BINARY.
# `go install` cannot build either server here: FerretDB's module zip lacks a generated file,
# and Jaeger's go.mod has replace directives.
build_from_module() {
  local name=$1 module=$2 package=$3 binary=$4 dir=$5 prepare=${6:-} src
  command -v go >/dev/null 2>&1 || die "$name is built with Go, which is not installed; install Go 1.24+ or give its URL"
  log "building $name ($module) from the Go module proxy (a few minutes the first time)"
  mkdir -p "$dir" "$(dirname "$binary")"
  src=$(go mod download -json "$module" 2>"$dir/build.log" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') \
    || { tail_log "$dir/build.log"; die "could not download $module"; }
  rm -rf "$dir/src"
  cp -r "$src" "$dir/src"
  chmod -R u+w "$dir/src"
  if [[ -n $prepare ]]; then "$prepare" "$dir/src"; fi
  (cd "$dir/src" && go build -o "$binary" "$package") >>"$dir/build.log" 2>&1 \
    || { tail_log "$dir/build.log"; die "building $name failed"; }
  rm -rf "$dir/src"
}

FERRETDB_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/cutover/ferretdb-$FERRETDB_VERSION/ferretdb

# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary that panics at
# start-up: the module zip lacks the generated build/version/version.txt, written here.
write_ferretdb_version() { printf '%s\n' "$FERRETDB_VERSION" >"$1/build/version/version.txt"; }

build_ferretdb() {
  build_from_module FerretDB "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" ./cmd/ferretdb "$FERRETDB_BIN" "$1" \
    write_ferretdb_version
}

start_ferretdb() {
  local url=$DEFAULT_MONGODB_URL dir=$STATE_DIR/ferretdb
  if mongo_answers "$url"; then log "MongoDB-compatible server already answers"; return; fi
  if ! "$FERRETDB_BIN" --version 2>/dev/null | grep -q "version: $FERRETDB_VERSION"; then
    build_ferretdb "$dir"
  fi
  mkdir -p "$dir/data" "$dir/state"
  log "starting FerretDB $FERRETDB_VERSION (SQLite backend)"
  nohup setsid "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$dir/data/" --listen-addr=127.0.0.1:27017 \
    --state-dir="$dir/state" --telemetry=disable --debug-addr=- --log-level=warn >"$dir/ferretdb.log" 2>&1 </dev/null &
  echo $! >"$dir/ferretdb.pid"
  wait_for FerretDB mongo_answers "$url" "$dir/ferretdb.log"
}

JAEGER_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/cutover/jaeger-$JAEGER_VERSION/jaeger

# Jaeger's all-in-one binary: an OTLP collector with a query API.
build_jaeger() {
  build_from_module Jaeger "github.com/jaegertracing/jaeger@$JAEGER_VERSION" ./cmd/jaeger "$JAEGER_BIN" "$1"
}

start_jaeger() {
  local url=$DEFAULT_JAEGER_QUERY_URL dir=$STATE_DIR/jaeger
  if jaeger_answers "$url"; then log "Jaeger already answers"; return; fi
  [[ -x $JAEGER_BIN ]] || build_jaeger "$dir"
  mkdir -p "$dir"
  log "starting Jaeger $JAEGER_VERSION (OTLP on :4317/:4318, query API on :16686)"
  # In its own directory (it keeps nothing there today, but a collector may), detached from
  # this script's terminal and pipes.
  (cd "$dir" && exec setsid "$JAEGER_BIN" >"$dir/jaeger.log" 2>&1 </dev/null) &
  echo $! >"$dir/jaeger.pid"
  wait_for Jaeger jaeger_answers "$url" "$dir/jaeger.log"
}

# ensure NAME VAR DEFAULT CHECK START: use the given URL, or start the local service.
ensure() {
  local name=$1 var=$2 default=$3 check=$4 start=$5
  local given=${!var:-}
  if [[ -n $given ]]; then
    wait_for "$name" "$check" "$given" /dev/null
    printf -v "$var" '%s' "$given"
  else
    "$start"
    printf -v "$var" '%s' "$default"
  fi
}

write_env() {
  mkdir -p "$(dirname "$ENV_FILE")"
  {
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
    printf 'export REDIS_URL=%q\n' "$REDIS_URL"
    printf 'export AMQP_URL=%q\n' "$AMQP_URL"
    printf 'export MONGODB_URL=%q\n' "$MONGODB_URL"
    printf 'export JAEGER_QUERY_URL=%q\n' "$JAEGER_QUERY_URL"
    printf 'export JAEGER_OTLP_URL=%q\n' "$JAEGER_OTLP_URL"
    printf 'export TRAEFIK_BIN=%q\n' "$TRAEFIK_BIN"
  } >"$ENV_FILE"
}

TRAEFIK_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/cutover/traefik-$TRAEFIK_VERSION/traefik

# The proxies and the metrics server the zero-downtime harness runs in front of and beside the
# example API (it starts its own instances on loopback ports; nothing is started here), and
# what the shipped deploy scripts call (curl, envsubst).
ensure_proxies() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
  command -v prometheus >/dev/null 2>&1 || [[ -x /usr/bin/prometheus ]] || missing+=(prometheus)
  command -v envsubst >/dev/null 2>&1 || missing+=(gettext-base)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  if [[ ! -x $TRAEFIK_BIN ]]; then
    build_from_module Traefik "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" ./cmd/traefik "$TRAEFIK_BIN" \
      "$STATE_DIR/traefik"
  fi
}

cmd_up() {
  ensure_proxies
  ensure PostgreSQL DATABASE_URL "$DEFAULT_DATABASE_URL" postgres_answers start_postgres
  ensure Redis REDIS_URL "$DEFAULT_REDIS_URL" redis_answers start_redis
  ensure RabbitMQ AMQP_URL "$DEFAULT_AMQP_URL" amqp_answers start_rabbitmq
  ensure MongoDB MONGODB_URL "$DEFAULT_MONGODB_URL" mongo_answers start_ferretdb
  ensure Jaeger JAEGER_QUERY_URL "$DEFAULT_JAEGER_QUERY_URL" jaeger_answers start_jaeger
  JAEGER_OTLP_URL=${JAEGER_OTLP_URL:-$DEFAULT_JAEGER_OTLP_URL}
  write_env
  log "all services answer; URLs written to ${ENV_FILE#$ROOT/}"
}

cmd_env() {
  [[ -f $ENV_FILE ]] || die "no $ENV_FILE yet: run scripts/services.sh up first"
  cat "$ENV_FILE"
}

cmd_status() {
  local rc=0
  for spec in "PostgreSQL DATABASE_URL $DEFAULT_DATABASE_URL postgres_answers" \
              "Redis REDIS_URL $DEFAULT_REDIS_URL redis_answers" \
              "RabbitMQ AMQP_URL $DEFAULT_AMQP_URL amqp_answers" \
              "MongoDB MONGODB_URL $DEFAULT_MONGODB_URL mongo_answers" \
              "Jaeger JAEGER_QUERY_URL $DEFAULT_JAEGER_QUERY_URL jaeger_answers"; do
    read -r name var default check <<<"$spec"
    local url=${!var:-$default}
    if "$check" "$url"; then printf '%-11s up    %s\n' "$name" "$(redacted "$url")"
    else printf '%-11s DOWN  %s\n' "$name" "$(redacted "$url")"; rc=1; fi
  done
  return $rc
}

cmd_down() {
  local dir=$STATE_DIR
  if [[ -f $dir/ferretdb/ferretdb.pid ]]; then kill "$(cat "$dir/ferretdb/ferretdb.pid")" 2>/dev/null || true; rm -f "$dir/ferretdb/ferretdb.pid"; fi
  if [[ -f $dir/jaeger/jaeger.pid ]]; then kill "$(cat "$dir/jaeger/jaeger.pid")" 2>/dev/null || true; rm -f "$dir/jaeger/jaeger.pid"; fi
  if [[ -f $dir/redis/redis.pid ]]; then kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true; fi
  command -v rabbitmqctl >/dev/null 2>&1 && rabbitmqctl -q stop >/dev/null 2>&1 || true
  command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters -h | while read -r version cluster _; do
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop 2>/dev/null || true
  done
  log "stopped"
}

case ${1:-} in
  up) cmd_up ;;
  env) cmd_env ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
