#!/usr/bin/env bash
# Configure and build ringmaster.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# BUILD_DIR defaults to "build"; the embedded interpreter defaults to
# /usr/bin/python3 (pass -DRINGMASTER_PYTHON=... to override).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build}
shift || true

cmake -S . -B "$build_dir" -DRINGMASTER_PYTHON=/usr/bin/python3 "$@"
cmake --build "$build_dir" -j"$(nproc)"
