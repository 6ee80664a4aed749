# Shared by blue-green/switch.sh and canary/promote.sh (sourced, not run): the weights of a
# Traefik file-provider service, and confirming what answers through Traefik.

# set_weights FILE NAME=WEIGHT...: rewrite the `weight:` under each `- name: api-NAME` of a
# weighted service, atomically (a new file renamed over the old one, so Traefik, which watches
# the directory, never reads half a file); fails, leaving FILE as it was, if a name is missing.
set_weights() {
  local file=$1 pair name weight script=()
  shift
  for pair in "$@"; do
    name=${pair%%=*} weight=${pair#*=}
    script+=(-e "/- name: api-$name\$/{n;s/weight: [0-9]*/weight: $weight/}")
  done
  sed "${script[@]}" "$file" >"$file.new"
  for pair in "$@"; do
    name=${pair%%=*} weight=${pair#*=}
    if ! grep -A1 -- "- name: api-$name\$" "$file.new" | grep -q "weight: $weight\$"; then
      rm -f "$file.new"
      echo "$file has no weighted service api-$name: left unchanged" >&2
      return 1
    fi
  done
  mv "$file.new" "$file"
}

# answered_version URL: the X-Service-Version of a GET, or nothing (and status 1) on failure.
answered_version() {
  curl -fsS --max-time 2 -o /dev/null -D - "$1" | tr -d '\r' \
    | awk -F': ' 'tolower($1) == "x-service-version" { print $2 }'
}

# confirm_only URL VERSION COUNT TIMEOUT: wait until COUNT answers in a row come from VERSION.
# A failed request is a miss, never an abort. Fails with the last thing seen after TIMEOUT s.
confirm_only() {
  local url=$1 version=$2 count=$3 timeout=$4 streak=0 last="" answered
  local deadline=$((SECONDS + timeout))
  while ((streak < count)); do
    if ((SECONDS >= deadline)); then
      echo "not confirmed within ${timeout}s that only $version answers at $url (last: ${last:-nothing})" >&2
      return 1
    fi
    if answered=$(answered_version "$url/" 2>&1) && [[ -n $answered ]]; then
      last="version $answered"
    else
      last="request failed: ${answered:-no version header}"
      answered=""
    fi
    if [[ $answered == "$version" ]]; then streak=$((streak + 1)); else streak=0; sleep 0.1; fi
  done
}

# wait_ready NAME TIMEOUT: poll the hooks' instance_ready until it passes; fails after TIMEOUT s.
wait_ready() {
  local deadline=$((SECONDS + $2))
  until instance_ready "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
