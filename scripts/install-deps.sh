#!/usr/bin/env bash
# Install the Debian packages ringmaster needs to build, test and benchmark.
# Idempotent: each package is checked with dpkg-query first, so a machine that
# already has them all does no network work at all.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  liburing-dev libmsgpack-dev libcriterion-dev node-llhttp
  python3-dev python3-venv
  curl wrk nginx-light
  clang clang-format clang-tidy
  docker.io debootstrap docker-compose
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != ii* ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: missing ${missing[*]}, not root and no sudo" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
