#!/usr/bin/env bash
# Install dependencies, build, and serve examples/hello.py on 127.0.0.1:8000.
# Then, from another shell:  curl -s 127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/build.sh build
exec build/ringmaster -b 127.0.0.1:8000 examples/hello.py
