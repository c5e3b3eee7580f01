#!/usr/bin/env bash
# Builds the library and the C example server (libmicrohttpd), then serves the demo site
# c-examples/site on http://127.0.0.1:8080/ until Ctrl-C. Extra arguments go to the server
# (e.g. --listen 127.0.0.1:9090). Try:  curl localhost:8080/hello
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset luajit >/dev/null
cmake --build --preset luajit --target http-server
exec build/luajit/c-examples/http-server/http-server "$@" c-examples/site/site.json
