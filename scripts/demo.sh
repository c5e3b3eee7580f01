#!/usr/bin/env bash
# Builds the library and runs the first C example: an engine, two scripts (access + content)
# and one request, printed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset luajit >/dev/null
cmake --build --preset luajit --target run-hello
