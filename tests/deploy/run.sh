#!/usr/bin/env bash
# Run the deployment tests (tests/deploy): the image from deploy/Dockerfile,
# deploy/compose.yaml, the Kubernetes manifests and the systemd units.
#
#   tests/deploy/run.sh [pytest arguments...]
#
# Docker is needed for the image and compose tests: when no engine answers,
# this script starts dockerd itself (and stops it, by its pid, at the end).
# Only when dockerd is not installed or does not come up do those tests skip,
# with the reason; the Kubernetes and systemd checks run regardless.
# scripts/install-deps.sh installs docker.io, debootstrap and docker-compose.
#
# Environment: RINGMASTER_DEPLOY_PYTHON (default .venv-test/bin/python, with
# tests/requirements.txt), and the knobs of tests/deploy/conftest.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${RINGMASTER_DEPLOY_PYTHON:-.venv-test/bin/python}

dockerd_pid=""
dockerd_log=""
stop_dockerd() {
  if [[ -n $dockerd_pid ]]; then
    kill "$dockerd_pid" 2>/dev/null
    wait "$dockerd_pid" 2>/dev/null
    dockerd_pid=""
  fi
  [[ -n $dockerd_log ]] && rm -f "$dockerd_log"
  dockerd_log=""
}
trap stop_dockerd EXIT

if [[ -z ${RINGMASTER_DEPLOY_SKIP:-} ]] && ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    export RINGMASTER_DEPLOY_SKIP="dockerd is not installed (scripts/install-deps.sh installs docker.io)"
  else
    dockerd_log=$(mktemp "${TMPDIR:-/tmp}/ringmaster-dockerd.XXXXXX")
    echo "run.sh: starting dockerd (log $dockerd_log)"
    dockerd >"$dockerd_log" 2>&1 &
    dockerd_pid=$!
    for ((i = 0; i < 120; i++)); do
      docker info >/dev/null 2>&1 && break
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
      export RINGMASTER_DEPLOY_SKIP="dockerd did not start: $(tail -n 3 "$dockerd_log" | tr '\n' ' ')"
      stop_dockerd
    fi
  fi
fi
if [[ -n ${RINGMASTER_DEPLOY_SKIP:-} ]]; then
  echo "run.sh: the Docker tests are skipped: $RINGMASTER_DEPLOY_SKIP"
fi

"$PYTHON" -m pytest tests/deploy -p no:cacheprovider "$@"
rc=$?
exit $rc
