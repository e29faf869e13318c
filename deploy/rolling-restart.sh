#!/usr/bin/env bash
# Restart the ringmaster replicas of a compose deployment one at a time, with
# no failed request: each replica gets TERM (it finishes what it has in
# flight and exits 0; the balancer's /readyz check and retries move traffic
# to the others), starts again, and the next one waits until it is healthy.
# Run it after `docker-compose pull`/`build` to roll out a new image the same
# way: `docker-compose up -d --no-deps app` then recreates them, so use this
# script for restarts of the same image (configuration, leaks, host
# maintenance).
#
#   deploy/rolling-restart.sh [docker-compose options]
#   e.g. deploy/rolling-restart.sh -p myproject
# The compose file defaults to deploy/compose.yaml (COMPOSE_FILE overrides).
# RINGMASTER_RESTART_TIMEOUT: seconds to wait for a replica to be healthy
# again (default 60).
set -euo pipefail
export COMPOSE_FILE=${COMPOSE_FILE:-$(dirname "$0")/compose.yaml}
timeout=${RINGMASTER_RESTART_TIMEOUT:-60}

ids=$(docker-compose "$@" ps -q app)
if [[ -z $ids ]]; then
  echo "rolling-restart: no running app replicas" >&2
  exit 1
fi
for id in $ids; do
  name=$(docker inspect -f '{{.Name}}' "$id")
  grace=$(docker inspect -f '{{.Config.StopTimeout}}' "$id")
  [[ $grace =~ ^[0-9]+$ ]] || grace=10
  echo "rolling-restart: ${name#/}: stopping (grace ${grace} s)"
  docker stop -t "$grace" "$id" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
  [[ $code == 0 ]] || echo "rolling-restart: ${name#/} exited with $code" >&2
  docker start "$id" >/dev/null
  for ((i = 0; i < timeout * 2; i++)); do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]] && break
    sleep 0.5
  done
  if [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") != healthy ]]; then
    echo "rolling-restart: ${name#/} not healthy after ${timeout} s; stopping here" >&2
    exit 1
  fi
  # One more balancer check interval, so it sends traffic there again before
  # the next replica stops.
  sleep 2
  echo "rolling-restart: ${name#/}: healthy"
done
