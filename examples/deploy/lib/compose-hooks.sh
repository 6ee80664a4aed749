# Docker Compose hooks for blue-green/switch.sh and canary/promote.sh: how an instance of the
# API is started, asked whether it is ready, and stopped. The scripts source the file named by
# DEPLOY_HOOKS (this one by default); to deploy another way (systemd units, plain processes,
# another orchestrator), write a file defining the same three functions. `COMPOSE_FILE` is set
# by the calling script.
#
#   start_instance NAME VERSION   start api-NAME running VERSION (returns once it is started)
#   instance_ready NAME           exit 0 when api-NAME answers 200 on /health/ready
#   stop_instance NAME            SIGTERM api-NAME and wait until it has drained and exited

start_instance() {
  local upper
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$1")
  env "${upper}_VERSION=$2" docker compose -f "$COMPOSE_FILE" up -d --no-deps "api-$1"
}

# The container's health check is "started and live" (so that Compose and Swarm never restart
# it for a dependency outage); readiness is asked for explicitly.
instance_ready() {
  docker compose -f "$COMPOSE_FILE" exec -T "api-$1" /usr/local/bin/api-service healthcheck --ready >/dev/null 2>&1
}

stop_instance() {
  docker compose -f "$COMPOSE_FILE" stop "api-$1"
}
